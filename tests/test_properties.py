"""Property tests of the model's invariants (README, "The model") over random small plants and seeds."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config.loader import parse
from simulator.config.plant import DEFAULT_PRIORITY, PRIORITY_RANK
from simulator.config.schema import Config
from simulator.model.records import ListSink, LotEvent
from simulator.model.simulation import Simulation
from simulator.reporting.summary import build_report

TYPES = ["milling", "lathe", "assembly", "test_rig"]

distributions = st.one_of(
    st.builds(lambda v: {"distribution": "constant", "value": v}, st.integers(1, 500)),
    st.builds(lambda a, b: {"distribution": "uniform", "low": min(a, b), "high": max(a, b)},
              st.integers(0, 400), st.integers(1, 400)),
    st.builds(lambda m: {"distribution": "exponential", "mean": m}, st.integers(1, 300)),
    st.builds(lambda m, s: {"distribution": "normal", "mean": m, "std": s}, st.integers(1, 300), st.integers(0, 200)),
    st.builds(lambda m, s: {"distribution": "lognormal", "mean": m, "std": s}, st.integers(1, 300),
              st.integers(0, 200)),
    st.builds(lambda a, b, c: dict(zip(("low", "mode", "high"), sorted((a, b, c)), strict=True),
                                   distribution="triangular"),
              st.integers(0, 300), st.integers(0, 300), st.integers(0, 300)),
)


@st.composite
def plants(draw: st.DrawFn) -> Config:
    n_stages = draw(st.integers(1, 3))
    types = draw(st.lists(st.sampled_from(TYPES), min_size=n_stages, max_size=n_stages))
    stages: list[dict[str, Any]] = []
    for i, mtype in enumerate(types):
        stage: dict[str, Any] = {"name": f"s{i}", "machine_type": mtype}
        if draw(st.booleans()):
            stage["processing_time"] = draw(distributions)
        else:
            stage["per_unit_time"] = {"distribution": "uniform", "low": 0, "high": 2}
            stage["setup_time"] = draw(distributions)
        if i == n_stages - 1 and i > 0 and draw(st.booleans()):
            stage["quality"] = {"rework_probability": draw(st.floats(0, 0.4)),
                                "scrap_probability": draw(st.floats(0, 0.2)), "max_reworks": draw(st.integers(0, 2))}
        stages.append(stage)
    n_locations = draw(st.integers(1, 2))
    zones = ["Europe/Rome", "America/Sao_Paulo"]
    locations = {
        f"L{k}": {"timezone": zones[k], "machines": {t: draw(st.integers(1, 3)) for t in set(types)}}
        for k in range(n_locations)
    }
    disruptions: dict[str, Any] = {
        "block_probability": draw(st.sampled_from([0.0, 0.1, 0.5])),
        "repair_time": {"distribution": "uniform", "low": 10, "high": 200},
    }
    if draw(st.booleans()):
        disruptions["failures"] = {"mtbf_h": draw(st.sampled_from([0.2, 1.0, 5.0])),
                                   "repair_time": {"distribution": "exponential", "mean": 120},
                                   "on_interrupt": draw(st.sampled_from(["resume", "restart"]))}
    if draw(st.booleans()):
        disruptions["maintenance"] = {"every_cycles": draw(st.integers(1, 5)),
                                      "duration": {"distribution": "constant", "value": 60}}
    data: dict[str, Any] = {
        "simulation": {"seed": draw(st.integers(0, 2**32))},
        "locations": locations, "route": stages, "disruptions": disruptions,
        "arrivals": {"rate_per_hour": draw(st.sampled_from([5.0, 30.0, 120.0])),
                     "process": draw(st.sampled_from(["poisson", "fixed"])), "quantity_min": 1, "quantity_max": 20},
    }
    if draw(st.booleans()):
        data["shift_calendars"] = {"day": {"shifts": [{"name": "d", "start": "06:00", "end": "14:00"},
                                                      {"name": "n", "start": "22:00", "end": "02:00",
                                                       "capacity": 0.5}],
                                           "weekend_factor": 0.5}}
        for loc in locations.values():
            loc["shift_calendar"] = "day"
    return parse(data, environ={})


def simulate(cfg: Config, lots: int) -> tuple[Simulation, ListSink]:
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.start_arrivals(limit=lots)
    sim.env.run(until=30 * 86400)
    return sim, sink


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=plants(), lots=st.integers(1, 25))
def test_model_invariants(cfg: Config, lots: int) -> None:
    sim, sink = simulate(cfg, lots)
    records = sink.records
    lot_events = [r for r in records if isinstance(r, LotEvent)]
    stages = [s.name for s in cfg.route]

    # sim time never goes backwards; each plant's records are numbered in emission order
    assert all(a.sim_time <= b.sim_time for a, b in itertools.pairwise(records))
    for location in cfg.locations:
        numbers = [r.seq for r in records if r.location == location]
        assert numbers == list(range(1, len(numbers) + 1))

    # lots are conserved
    stats = sim.stats
    assert stats.received == lots
    assert stats.completed + stats.scrapped + stats.in_progress == stats.received
    assert len(sim.lots) == stats.in_progress

    # each lot visits its stages in order, once per pass (a rework goes back to an earlier stage)
    by_lot: dict[str, list[LotEvent]] = defaultdict(list)
    for e in lot_events:
        if e.lot_code is not None and e.event_type.startswith(("lot.", "stage.")):
            by_lot[e.lot_code].append(e)
    for code, evs in by_lot.items():
        completed = [e.stage for e in evs if e.event_type == "stage.completed"]
        expected_next = 0
        for e in evs:
            if e.event_type == "stage.completed":
                assert e.stage == stages[expected_next], f"{code}: {completed}"
                expected_next += 1
            elif e.event_type == "lot.reworked":
                expected_next = stages.index(e.stage or "")
        final = evs[-1].event_type
        if final == "lot.completed":
            assert completed[-1] == stages[-1]
        assert [e.event_type for e in evs].count("lot.received") == 1

    # one lot per machine at a time, and never while blocked/in maintenance
    busy: dict[str, str | None] = defaultdict(lambda: None)
    for e in lot_events:
        if e.machine_id is None:
            continue
        if e.event_type == "stage.started":
            assert busy[e.machine_id] is None, f"{e.machine_id} already has {busy[e.machine_id]}"
            busy[e.machine_id] = e.lot_code
        elif e.event_type == "stage.completed":
            assert busy[e.machine_id] == e.lot_code
            busy[e.machine_id] = None
        elif e.event_type == "maintenance.started":
            assert busy[e.machine_id] is None

    # priorities: when a machine starts a lot, no lot of better priority has been waiting longer
    waiting: dict[tuple[str, str], dict[str, tuple[float, int]]] = defaultdict(dict)
    for e in lot_events:
        if e.lot_code is None or e.stage is None:
            continue
        pool = (e.location, e.stage)
        if e.event_type == "lot.queued":
            waiting[pool][e.lot_code] = (e.sim_time, PRIORITY_RANK[e.priority or DEFAULT_PRIORITY])
        elif e.event_type == "stage.started":
            rank = PRIORITY_RANK[e.priority or DEFAULT_PRIORITY]
            del waiting[pool][e.lot_code]
            better = [c for c, (t, r) in waiting[pool].items() if r < rank and t < e.sim_time]
            assert not better, f"{e.lot_code} ({e.priority}) started before {better}"

    # utilisation and OEE factors are ratios
    report = build_report(sim)
    for kpis in report["machines"].values():
        for key in ("utilization", "availability", "performance", "quality", "oee"):
            assert 0.0 <= kpis[key] <= 1.0 + 1e-9, (key, kpis)
    for machine in sim.plant.machines.values():
        total = sum(machine.time_in(s, sim.now) for s in machine.state_time)
        assert abs(total - sim.now) < 1e-6 * max(1.0, sim.now)
