"""The run report, schema version 2: its keys, overload detection, pools, one machine order, OEE."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import pytest

from simulator.config.schema import Config
from simulator.programs.offline import OfflineResult, run_offline
from simulator.reporting.summary import SCHEMA_VERSION, build_report
from simulator.reporting.summary_text import summary_text

from plants import plant

TOP_LEVEL = {"schema_version", "seed", "start_utc", "sim_duration_s", "config_fingerprint", "warm_up_s", "observed_s",
             "lots", "throughput_per_hour", "lead_time_s", "lead_time_by_location_s", "lead_time_by_priority_s", "wip",
             "stages", "pools", "machines", "bottleneck", "overload", "steady", "assumptions", "series"}
POOL = {"stages", "machines", "utilization", "busy", "states", "state_hours", "queue_length_mean", "queue_length_max",
        "queue_length_final", "wait_s", "arrivals_per_hour", "mean_process_s", "available_share", "offered_load",
        "load"}
STATES = {"running", "blocked", "maintenance", "idle", "off_shift"}


def mm1(rho: float, *, distribution: dict[str, Any] | None = None) -> Config:
    """One machine, Poisson arrivals, service times of mean 100 s: utilisation ``rho``."""
    return plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": distribution or {"distribution": "exponential", "mean": 100.0}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}},
        arrivals={"rate_per_hour": rho * 36.0, "process": "poisson", "priority_mix": {"normale": 1}},
        telemetry={"cycle_records": False, "lot_events": False},
        simulation={"seed": 5},
    )


def run(config: Config, **kwargs: Any) -> tuple[dict[str, Any], OfflineResult]:
    result = asyncio.run(run_offline(config, timeline=None, **kwargs))
    return build_report(result.sim), result


@pytest.fixture(scope="module")
def reference(default_config: Config) -> dict[str, Any]:
    return run(default_config, lots=400, warm_up_s=2 * 86400.0)[0]


def test_the_report_has_the_keys_of_schema_2(reference: dict[str, Any], default_config: Config) -> None:
    assert SCHEMA_VERSION == 2 and reference["schema_version"] == 2
    assert set(reference) == TOP_LEVEL
    assert reference["config_fingerprint"] == default_config.model_fingerprint
    assert reference["warm_up_s"] == 2 * 86400 and reference["observed_s"] == \
        pytest.approx(reference["sim_duration_s"] - 2 * 86400, abs=1e-3)
    assert set(reference["wip"]) == {"mean", "max", "final"}
    for loc, types in reference["pools"].items():
        for mtype, pool in types.items():
            assert set(pool) == POOL, (loc, mtype)
            assert set(pool["states"]) == set(pool["state_hours"]) == STATES
            assert pool["stages"] == [s.name for s in default_config.route if s.machine_type == mtype]
    by_location = reference["stages"]["tornio"]["by_location"]["Vietnam"]
    assert {"queue_length", "queue_length_mean", "machines", "cycles", "wait_s", "process_s", "utilization",
            "busy"} <= set(by_location)
    assert set(reference["bottleneck"]["pool"]) == {"stage", "location", "machine_type", "busy", "utilization",
                                                    "mean_wait_s", "queue_share"}
    assumptions = reference["assumptions"]
    assert assumptions["seed"] == reference["seed"] and assumptions["warm_up_s"] == 2 * 86400
    assert assumptions["config_fingerprint"] == reference["config_fingerprint"]
    assert assumptions["length"] == {"lots": None, "until_s": None}
    assert assumptions["arrivals"]["rate_per_hour"] == default_config.arrivals.rate_per_hour
    assert [r["stage"] for r in assumptions["route"]] == [s.name for s in default_config.route]
    assert assumptions["route"][0]["processing"] == "uniform 1,200–3,600 s"
    assert assumptions["route"][0]["mean_s"] == 2400.0
    assert assumptions["machines"]["Vietnam"]["tornio"] == default_config.locations["Vietnam"].machines["tornio"]
    series = reference["series"]
    assert set(series) == {"bucket_s", "wip", "warm_up_s", "pools"} and series["warm_up_s"] == 2 * 86400
    assert len(series["wip"]) == len(series["pools"]["Italia"]["tornio"]["queue_length"]) == \
        len(series["pools"]["Italia"]["tornio"]["wait_s"])


def test_state_shares_of_every_pool_sum_to_one(reference: dict[str, Any]) -> None:
    maintenance = 0.0
    for types in reference["pools"].values():
        for pool in types.values():
            assert sum(pool["states"].values()) == pytest.approx(1.0, abs=1e-3)
            hours = sum(pool["state_hours"].values())
            assert hours == pytest.approx(pool["machines"] * reference["observed_s"] / 3600, rel=1e-3)
            maintenance += pool["states"]["maintenance"]
    assert maintenance > 0  # (the reference plant maintains its machines: every state is counted)


def test_one_machine_order_everywhere(reference: dict[str, Any], default_config: Config) -> None:
    route_types = list(dict.fromkeys(s.machine_type for s in default_config.route))
    expected = [slot.id for loc in default_config.locations for mtype in route_types
                for slot in default_config.machine_slots if slot.location == loc and slot.machine_type == mtype]
    assert list(reference["machines"]) == expected
    assert list(reference["pools"]) == list(default_config.locations)
    for loc in default_config.locations:
        assert list(reference["pools"][loc]) == route_types
        assert list(reference["series"]["pools"][loc]) == route_types
    for stage in reference["stages"].values():
        assert list(stage["by_location"]) == list(default_config.locations)


def test_the_bottleneck_pool_has_its_share_of_all_the_waiting(reference: dict[str, Any]) -> None:
    pool = reference["bottleneck"]["pool"]
    means = {(loc, t): p["queue_length_mean"] for loc, ts in reference["pools"].items() for t, p in ts.items()}
    share = means[(pool["location"], pool["machine_type"])] / sum(means.values())
    assert pool["queue_share"] == pytest.approx(share, abs=2e-3)
    busiest = max(p["busy"] for ts in reference["pools"].values() for p in ts.values())
    assert pool["busy"] == busiest


def test_an_overloaded_pool_is_named_with_its_load() -> None:
    report, result = run(mm1(1.3), until_s=200 * 3600.0)
    assert report["steady"] is False
    [pool] = report["overload"]
    assert (pool["location"], pool["machine_type"], pool["stages"], pool["machines"]) == ("A", "milling", ["mill"], 1)
    assert pool["load"] == pytest.approx(1.3, rel=0.05)
    assert pool["queue_growth_per_hour"] == pytest.approx(0.3 * 36, rel=0.35)  # λ − μ lots an hour
    assert pool["message"].startswith("A milling: ")
    assert f"load {pool['load']:.2f}" in pool["message"] and "depend on the run length" in pool["message"]
    assert report["pools"]["A"]["milling"]["load"] == pool["load"]
    text = summary_text(report, result)
    assert f"OVERLOADED: {pool['message']}" in text
    assert "not steady" in text


def test_a_stable_pool_is_not_overloaded() -> None:
    report, result = run(mm1(0.7), until_s=200 * 3600.0)
    assert report["overload"] == [] and report["steady"] is True
    assert report["pools"]["A"]["milling"]["load"] == pytest.approx(0.7, rel=0.05)
    assert "OVERLOADED" not in summary_text(report, result)


def test_the_summary_says_which_warm_up_was_used() -> None:
    report, result = run(mm1(0.5), until_s=10 * 3600.0, warm_up_s=3600.0)
    assert "warm-up: 1h 00m: statistics cover the 9h 00m after it" in summary_text(report, result)
    report, result = run(mm1(0.5), lots=3, warm_up_s=30 * 86400.0)
    assert report["warm_up_s"] == 0
    assert "warm-up: 30d 00h asked for, but the run ended before it" in summary_text(report, result)


@pytest.mark.parametrize(("distribution", "exactly_one"), [
    ({"distribution": "constant", "value": 100}, True),
    ({"distribution": "exponential", "mean": 100}, False),
    ({"distribution": "normal", "mean": 50, "std": 100}, False),  # truncated at 0: its mean is about 93 s
])
def test_oee_performance_is_one_at_the_mean_pace(distribution: dict[str, Any], exactly_one: bool) -> None:
    report, _ = run(mm1(0.5, distribution=distribution), lots=4000)
    machine = report["machines"]["A-milling-01"]
    assert machine["cycles"] == 4000
    if exactly_one:
        assert machine["performance"] == 1.0
    else:
        assert machine["performance"] == pytest.approx(1.0, abs=0.04)
    assert machine["oee"] == pytest.approx(machine["availability"] * machine["performance"] * machine["quality"],
                                           abs=1e-3)


def test_the_truncated_normal_ideal_is_the_mean_of_its_draws() -> None:
    config = mm1(0.5, distribution={"distribution": "normal", "mean": 50, "std": 100})
    result = asyncio.run(run_offline(config, timeline=None, lots=20_000))
    draws = result.sim.stats.stages["mill"].process.values
    ideal = config.ideal_cycle_time_of(config.route[0], 1)
    assert ideal == pytest.approx(statistics.fmean(draws), rel=0.02)
    assert ideal > 90  # (the untruncated mean is 50 s)
