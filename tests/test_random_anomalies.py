"""Random anomalies (``disruptions.anomalies``): machines start anomalies of their own types at the
configured rate, deterministically per seed, through the same machinery as anomaly commands (so
telemetry, /machines and snapshots show them alike); off unless configured."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

import machines
from simulator.config.loader import load
from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.model import control, snapshot
from simulator.model.disruptions import anomaly_due
from simulator.model.records import ListSink, LotEvent, MachineSample
from simulator.model.simulation import Simulation

from plants import plant

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
Onset = tuple[float, str, str, float, float]  # (sim time, machine, type, severity, until)


def uniform(low: float, high: float) -> dict[str, Any]:
    return {"distribution": "uniform", "low": low, "high": high}


def anomalous_plant(*, samples_s: float = 0.0, **anomalies: Any) -> Config:
    settings = {"probability_per_hour": 0.3, "duration": uniform(600, 1800), **anomalies}
    return plant(
        stages=[{"name": "moulding", "machine_type": "injection_moulding", "processing_time": uniform(900, 1800)},
                {"name": "conveying", "machine_type": "conveyor", "processing_time": uniform(120, 300)}],
        locations={"Italia": {"timezone": "Europe/Rome",
                              "machines": {"injection_moulding": 2, "conveyor": 1, "compressor": 1, "hvac": 1}}},
        machine_types={"compressor": {"duty": "continuous"}, "hvac": {"duty": "continuous"}},
        disruptions={"block_probability": 0.1, "repair_time": uniform(300, 900),
                     "failures": {"mtbf_h": 20, "repair_time": uniform(600, 1800)}, "anomalies": settings},
        telemetry={"sample_interval_s": samples_s},
        arrivals={"rate_per_hour": 1.5},
    )


def run_onsets(config: Config, until_s: float, seed: int = 5,
               before: Any = None) -> tuple[Simulation, ListSink, list[Onset]]:
    """Run ``config`` step by step and note every anomaly that starts (a new type or a new end)."""
    sink = ListSink()
    sim = Simulation(config, sink, seed=seed)
    if before is not None:
        before(sim)
    sim.start_arrivals()
    onsets: list[Onset] = []
    seen = {mid: (m.anomaly, m.anomaly_until) for mid, m in sim.plant.machines.items()}
    while sim.env.peek() < until_s:
        sim.env.step()
        for mid, m in sim.plant.machines.items():
            now = (m.anomaly, m.anomaly_until)
            if now != seen[mid] and m.anomaly is not None:
                onsets.append((sim.now, mid, m.anomaly, m.anomaly_severity, m.anomaly_until))
            seen[mid] = now
    return sim, sink, onsets


def test_off_unless_configured_the_reference_plant_has_no_anomaly_clock(default_config: Config) -> None:
    assert default_config.disruptions.anomalies is None
    sim = Simulation(default_config, ListSink())
    assert not [e for e in sim.env.pending() if e[2] is anomaly_due]


def test_anomalies_start_at_the_configured_rate_with_the_drawn_types_durations_and_severities() -> None:
    days = 40
    config = anomalous_plant(probability_per_hour=0.3, duration=uniform(600, 1800),
                             severity=uniform(0.5, 2.5))
    sim, _, onsets = run_onsets(config, days * 86400.0)
    rate_h = -math.log(1 - 0.3)  # onsets per hour of a machine without an anomaly
    cycle_h = 1 / rate_h + 1200 / 3600  # the gap, then the anomaly's mean duration
    expected = len(sim.plant.machines) * days * 24 / cycle_h
    # a renewal process: the count's variance is about n × var(cycle) / mean(cycle)²
    sd = math.sqrt(expected * ((1 / rate_h) ** 2 + (1200 / 3600) ** 2 / 27) / cycle_h ** 2)
    assert abs(len(onsets) - expected) < 4 * sd, (len(onsets), expected, sd)
    for at, mid, kind, severity, until in onsets:
        machine = sim.plant.machines[mid]
        assert kind in control.allowed_anomalies(machine)
        assert 0.5 <= severity <= 2.5
        assert 600 <= until - at <= 1800
    per_machine = {mid: sorted(k for _, m, k, _, _ in onsets if m == mid) for mid in sim.plant.machines}
    assert all(len(set(kinds)) >= 3 for kinds in per_machine.values())  # drawn among the type's anomalies
    hvac_kinds = set(per_machine["Italia-hvac-01"])
    assert hvac_kinds <= {*machines.get("hvac").anomalies, *machines.PLANT_WIDE_ANOMALIES}
    # one at a time: the next starts after the last has ended
    for mid in sim.plant.machines:
        mine = [(at, until) for at, m, _, _, until in onsets if m == mid]
        assert all(later >= until for (_, until), (later, _) in itertools.pairwise(mine))


def test_per_day_probability_is_the_seed_s_and_types_restrict_the_choice() -> None:
    config = anomalous_plant(probability_per_hour=None, probability_per_day=0.9, types=["leak", "energy_spike"])
    sim, _, onsets = run_onsets(config, 30 * 86400.0)
    assert onsets
    for _, mid, kind, _, _ in onsets:
        assert kind == "energy_spike" or (kind == "leak" and mid == "Italia-compressor-01")
    rate_day = -math.log(1 - 0.9)
    expected = len(sim.plant.machines) * 30 / (1 / rate_day + 1200 / 86400)
    assert abs(len(onsets) - expected) < 4 * math.sqrt(expected)


def test_deterministic_per_seed_and_independent_of_every_other_draw() -> None:
    config = anomalous_plant()
    _, sink_a, onsets_a = run_onsets(config, 5 * 86400.0, seed=11)
    _, sink_b, onsets_b = run_onsets(config, 5 * 86400.0, seed=11)
    _, _, onsets_c = run_onsets(config, 5 * 86400.0, seed=12)
    assert onsets_a == onsets_b and len(onsets_a) > 10
    assert onsets_a != onsets_c
    assert sink_a.records == sink_b.records
    # anomalies change signals only: lots, blocks, failures and their events are those of a plant without them
    quiet = config.model_copy(update={"disruptions": config.disruptions.model_copy(update={"anomalies": None})})
    _, sink_quiet, none = run_onsets(quiet, 5 * 86400.0, seed=11)
    assert none == []

    def events(sink: ListSink) -> list[LotEvent]:
        return [r for r in sink.records if isinstance(r, LotEvent)]

    assert events(sink_a) == events(sink_quiet)


def test_a_random_anomaly_shows_as_an_injected_one_and_leaves_a_command_s_alone() -> None:
    config = anomalous_plant(samples_s=60.0)
    commanded = "Italia-conveyor-01"

    def inject(sim: Simulation) -> None:
        control.set_anomaly(sim, commanded, "overload", 2.0, None)  # until cleared

    sim, sink, onsets = run_onsets(config, 2 * 86400.0, before=inject)
    assert {mid for _, mid, _, _, _ in onsets} == set(sim.plant.machines) - {commanded}
    assert sim.plant.machines[commanded].anomaly == "overload"
    samples = [r for r in sink.records if isinstance(r, MachineSample)]
    for at, mid, kind, _, until in onsets:
        during = [s for s in samples if s.machine_id == mid and at <= s.sim_time < until]
        assert during, (mid, at, until)
        assert all(s.anomaly == kind for s in during)
        assert all(s.alarms == f"ANOMALY: {kind}" for s in during if s.state != "blocked")
    # once over, the machine's samples show none until its next one
    for (_, mid, _, _, until), (later, _, _, _, _) in itertools.pairwise(onsets):
        gap = [s for s in samples if s.machine_id == mid and until <= s.sim_time < later]
        assert all(s.anomaly is None for s in gap)
    # what GET /machines/{id} shows (control.anomaly_view) while one is on
    at, mid, kind, severity, until = onsets[-1]
    sim2, _, _ = run_onsets(config, (at + until) / 2, before=inject)
    assert control.anomaly_view(sim2.plant.machines[mid], sim2.now) == {
        "type": kind, "severity": severity, "until_s": round(until, 3)}


def test_a_snapshot_carries_the_anomaly_clock_and_a_warm_start_can_turn_anomalies_on() -> None:
    config = anomalous_plant(samples_s=300.0)
    sim, _, _ = run_onsets(config, 86400.0)
    document = snapshot.take(sim)
    assert all("anomalies" in m["rng"] for m in document["machines"].values())
    restored = snapshot.restore(config, ListSink(), document)
    original_rest, restored_rest = ListSink(), ListSink()
    sim.replace_sink(original_rest)
    sim.env.run(until=3 * 86400.0)
    restored.replace_sink(restored_rest)
    restored.env.run(until=3 * 86400.0)
    assert original_rest.records == restored_rest.records
    assert any(isinstance(r, MachineSample) and r.anomaly for r in restored_rest.records)

    # a snapshot of a plant without them, warm-started under a config with them: the clocks start
    quiet = config.model_copy(update={"disruptions": config.disruptions.model_copy(update={"anomalies": None})})
    plain, _, _ = run_onsets(quiet, 86400.0)
    warm = snapshot.restore(config, ListSink(), snapshot.take(plain), warm=True)
    assert {e[3][1].id for e in warm.env.pending() if e[2] is anomaly_due} == set(warm.plant.machines)


@pytest.mark.parametrize(("anomalies", "message"), [
    ({"probability_per_day": 0.1, "probability_per_hour": 0.1}, "set probability_per_day or probability_per_hour"),
    ({"duration": uniform(1, 2)}, "set probability_per_day or probability_per_hour"),
    ({"probability_per_day": 1.0}, "disruptions.anomalies.probability_per_day"),
    ({"probability_per_hour": -0.1}, "disruptions.anomalies.probability_per_hour"),
    ({"probability_per_day": 0.1, "types": ["leak", "gremlins"]}, "unknown anomaly type 'gremlins'; allowed: "),
])
def test_bad_settings_are_one_clear_error(anomalies: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(PROFILES / "enms.yaml", environ={}, overrides={"disruptions.anomalies": anomalies})
    assert "disruptions.anomalies" in str(info.value)


def test_the_enms_profile_has_the_seed_s_anomaly_probability() -> None:
    config = load(PROFILES / "enms.yaml", environ={})
    anomalies = config.disruptions.anomalies
    assert anomalies is not None
    assert anomalies.probability_per_day == 0.1  # ANOMALY_PROBABILITY=0.10, a 10 % chance per day
    assert anomalies.rate_per_s == pytest.approx(-math.log(0.9) / 86400)
    assert control.PLANT_WIDE_ANOMALIES == machines.PLANT_WIDE_ANOMALIES
