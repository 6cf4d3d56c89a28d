"""Exact running statistics and bucketed series: checked against what the lots did, on real runs."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from simulator.config.schema import Config
from simulator.model import snapshot
from simulator.model.records import ListSink, LotEvent, NullSink
from simulator.model.simulation import Simulation
from simulator.model.time_series import MAX_BUCKETS, bucket_count, bucket_width
from simulator.programs.offline import run_offline
from simulator.reporting.summary import build_report

from plants import plant

LOTS = 100_000


def mm2() -> Config:
    return plant(
        stages=[{"name": "s", "machine_type": "milling",
                 "processing_time": {"distribution": "exponential", "mean": 100.0}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": 2}}},
        arrivals={"rate_per_hour": 60.0, "process": "poisson", "priority_mix": {"normale": 1}},
        telemetry={"cycle_records": False, "lot_events": False},
        simulation={"seed": 20260101},
    )


def tandem(*, lot_events: bool = False) -> Config:
    """Two plants, two stages each, priorities: several pools and queues that jump the line."""
    return plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "exponential", "mean": 600.0}},
                {"name": "turn", "machine_type": "lathe",
                 "processing_time": {"distribution": "uniform", "low": 300, "high": 900}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": 2, "lathe": 2}},
                   "B": {"timezone": "UTC", "machines": {"milling": 1, "lathe": 1}}},
        arrivals={"rate_per_hour": 8.0, "process": "poisson", "location_mix": {"A": 2, "B": 1},
                  "priority_mix": {"alta": 1, "normale": 8, "bassa": 1}},
        telemetry={"cycle_records": False, "lot_events": lot_events},
        simulation={"seed": 7},
    )


def run_all(config: Config, lots: int) -> tuple[Simulation, list[tuple[float, float]]]:
    """Run until every lot is finished; the (arrival, finish) of each lot."""
    sim = Simulation(config, NullSink())
    intervals: list[tuple[float, float]] = []
    sim.on_lot_finished(lambda lot: intervals.append((lot.arrived_at, sim.now)))
    sim.start_arrivals(limit=lots)
    sim.env.run()
    return sim, intervals


def highest_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals [arrival, finish) holding at once, by brute force over the sorted ends."""
    ends = sorted([(a, 1) for a, _ in intervals] + [(f, -1) for _, f in intervals])  # a finish before an arrival
    level = peak = 0
    for _, step in ends:
        level += step
        peak = max(peak, level)
    return peak


@pytest.fixture(scope="module", params=["mm2", "tandem"])
def finished_run(request: pytest.FixtureRequest) -> tuple[Simulation, list[tuple[float, float]]]:
    return run_all(mm2() if request.param == "mm2" else tandem(), LOTS)


def test_wip_mean_is_the_lead_times_over_the_duration_and_its_max_is_exact(
        finished_run: tuple[Simulation, list[tuple[float, float]]]) -> None:
    sim, intervals = finished_run
    assert len(intervals) == LOTS and sim.stats.scrapped == 0 and sim.stats.in_progress == 0
    lead_sum = math.fsum(f - a for a, f in intervals)
    report = build_report(sim)
    assert sim.stats.wip.mean(sim.now) == pytest.approx(lead_sum / sim.now, rel=1e-9)
    assert report["wip"]["mean"] == pytest.approx(lead_sum / sim.now, abs=1e-3)  # (rounded to 3 digits)
    assert report["wip"]["max"] == highest_overlap(intervals)
    assert report["wip"]["final"] == 0


def test_bucket_averages_agree_with_the_exact_means(finished_run: tuple[Simulation, list[tuple[float, float]]]) -> None:
    sim, _ = finished_run
    now = sim.now
    width = bucket_width(now)
    spans = [min(width, now - i * width) for i in range(bucket_count(now))]
    assert MAX_BUCKETS // 2 <= len(spans) <= MAX_BUCKETS
    wip = sim.stats.wip.averages(now)
    assert len(wip) == len(spans)
    assert math.fsum(a * s for a, s in zip(wip, spans, strict=True)) / now == \
        pytest.approx(sim.stats.wip.mean(now), rel=1e-9)
    for (loc, mtype), queue in sim.stats.pools.items():
        lengths = queue.averages(now)
        assert math.fsum(a * s for a, s in zip(lengths, spans, strict=True)) / now == \
            pytest.approx(queue.mean(now), rel=1e-9, abs=1e-12)
        types = {plan.name: plan.machine_type for plan in sim.plant.stages}
        waits = [st.by_location[loc][0] for name, st in sim.stats.stages.items() if types[name] == mtype]
        total_wait = math.fsum(w.total for w in waits)
        assert queue.entered == sum(w.count for w in waits)  # every lot that entered the pool started there
        assert queue.wait_sum == pytest.approx(total_wait, rel=1e-9, abs=1e-9)
        # the time-averaged queue length is the total waiting time over the duration (Little), exactly
        assert queue.mean(now) == pytest.approx(total_wait / now, rel=1e-9, abs=1e-12)
    report = build_report(sim)
    assert report["series"]["bucket_s"] == width
    assert report["series"]["wip"] == [round(v, 4) for v in wip]


def test_each_bucket_has_the_mean_wait_of_the_lots_that_started_in_it() -> None:
    sink = ListSink()
    sim = Simulation(tandem(lot_events=True), sink)
    sim.start_arrivals(limit=20_000)
    sim.env.run()
    now = sim.now
    width = bucket_width(now)
    started: dict[tuple[str, str], list[list[float]]] = {key: [[] for _ in range(bucket_count(now))]
                                                         for key in sim.stats.pools}
    types = {plan.name: plan.machine_type for plan in sim.plant.stages}
    for record in sink.records:
        if isinstance(record, LotEvent) and record.event_type == "stage.started":
            assert record.stage is not None and record.waited_s is not None
            key = (record.location, types[record.stage])
            started[key][int(record.sim_time // width)].append(record.waited_s)
    checked = 0
    for key, queue in sim.stats.pools.items():
        means = queue.waits(now)
        for bucket, waits in enumerate(started[key]):
            if waits:
                assert means[bucket] == pytest.approx(math.fsum(waits) / len(waits), rel=1e-9, abs=1e-9)
                checked += 1
            else:
                assert means[bucket] is None
    assert checked > 1000


# -- warm-up --------------------------------------------------------------------------------------------
def steady_line(**sections: Any) -> Config:
    """One machine, a lot every 100 s taking exactly 60 s: by hand, the machine runs 60 % of the time, one
    lot is in progress 60 % of it, every lead time is 60 s."""
    return plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "constant", "value": 60}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}},
        arrivals={"rate_per_hour": 36.0, "process": "fixed", "priority_mix": {"normale": 1}},
        **sections,
    )


def test_a_warm_up_makes_the_statistics_count_from_its_end() -> None:
    config = steady_line()
    # arrivals at 0, 100 … 2000; the warm-up ends at 1050, inside the lot of 1000 (done at 1060)
    report = build_report(asyncio.run(run_offline(config, until_s=2050, warm_up_s=1050)).sim)
    assert (report["sim_duration_s"], report["warm_up_s"], report["observed_s"]) == (2050, 1050, 1000)
    lots = report["lots"]
    assert (lots["received"], lots["completed"], lots["scrapped"], lots["in_progress"]) == (10, 10, 0, 1)
    assert lots["by_location"]["A"] == {"received": 10, "completed": 10, "scrapped": 0}
    assert report["throughput_per_hour"] == 36.0
    assert report["lead_time_s"] == {"mean": 60.0, "p50": 60.0, "p95": 60.0, "max": 60.0}
    assert report["wip"] == {"mean": 0.6, "max": 1, "final": 1}  # (10 + 9 × 60 + 50) lot-seconds over 1000 s
    machine = report["machines"]["A-milling-01"]
    assert (machine["cycles"], machine["running_s"], machine["idle_s"]) == (10, 600.0, 400.0)
    assert machine["utilization"] == 0.6
    assert report["stages"]["mill"]["cycles"] == 10
    assert report["stages"]["mill"]["utilization"] == 0.6

    whole = build_report(asyncio.run(run_offline(config, until_s=2050)).sim)
    assert (whole["warm_up_s"], whole["observed_s"]) == (0, 2050)
    assert (whole["lots"]["received"], whole["lots"]["completed"]) == (21, 20)
    assert whole["wip"]["mean"] == round((20 * 60 + 50) / 2050, 3)
    assert whole["machines"]["A-milling-01"]["cycles"] == 20


def test_a_lot_count_counts_lots_from_the_start_and_statistics_from_the_warm_up() -> None:
    result = asyncio.run(run_offline(steady_line(), lots=30, warm_up_s=1050))
    report = build_report(result.sim)
    assert result.sim.stats.completed == 30 and result.sim.now == 2960  # the 30th lot: in at 2900, done at 2960
    assert (report["lots"]["received"], report["lots"]["completed"]) == (19, 20)
    assert report["observed_s"] == 2960 - 1050


def test_records_do_not_change_with_a_warm_up() -> None:
    config = steady_line(telemetry={"lot_events": True})
    runs = []
    for warm_up in (0.0, 1050.0):
        sink = ListSink()
        sim = Simulation(config, sink, warm_up_s=warm_up)
        sim.start_arrivals(limit=30)
        sim.env.run()
        runs.append(sink.records)
    assert runs[0] == runs[1] and len(runs[0]) > 100


@pytest.mark.parametrize("cut", [500.0, 1500.0])  # before the warm-up ends, and after
def test_a_snapshot_keeps_the_warm_up_and_the_series(cut: float) -> None:
    config = tandem()
    whole = Simulation(config, NullSink(), warm_up_s=20_000.0)
    whole.start_arrivals(limit=400)
    whole.settle(cut)
    document = json.loads(json.dumps(snapshot.take(whole)))
    whole.env.run()
    restored = snapshot.restore(config, NullSink(), document)
    assert snapshot.take(restored) == document
    restored.env.run()
    assert build_report(restored) == build_report(whole)
    assert build_report(whole)["warm_up_s"] == 20_000


def test_a_document_of_before_the_running_statistics_still_restores() -> None:
    config = tandem(lot_events=True)
    sink = ListSink()
    whole = Simulation(config, sink)
    whole.start_arrivals(limit=300)
    whole.settle(30_000.0)
    document = json.loads(json.dumps(snapshot.take(whole)))
    statistics = document["statistics"]
    for key in ("series", "wip_series", "pools", "warm_up"):
        del statistics[key]
    statistics.update({"wip": [[0.0, 0], [10_000.0, 3], [20_000.0, whole.stats.in_progress]], "wip_stride": 2,
                       "wip_skipped": 1})
    before = len(sink.records)
    whole.env.run()
    continued = ListSink()
    restored = snapshot.restore(config, continued, document)
    restored.env.run()
    assert continued.records == sink.records[before:]
    report = build_report(restored)
    assert report["lots"]["completed"] == 300
    assert report["wip"]["mean"] > 0
