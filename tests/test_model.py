"""Model unit tests: a real Simulation with a list sink, no mocks."""

from __future__ import annotations

import itertools

import pytest

from simulator.errors import IllegalTransition, OrderRejected
from simulator.model.lot import Lot, LotState
from simulator.model.order import Order
from simulator.model.randomness import stream
from simulator.model.records import CycleTelemetry, ListSink, LotEvent
from simulator.model.simulation import Simulation

from plants import plant


def order(code: str, location: str = "A", priority: str = "normale", quantity: int = 10) -> Order:
    return Order(code, "cliente", quantity, location, priority)


def events(sink: ListSink, event_type: str | None = None) -> list[LotEvent]:
    return [r for r in sink.records if isinstance(r, LotEvent)
            and (event_type is None or r.event_type == event_type)]


def run_all(sim: Simulation) -> None:
    sim.env.run()


def test_lot_state_machine_rejects_illegal_transitions() -> None:
    lot = Lot("L1", "c", 1, "A", "normale", 0.0, stream(1, "lot", "L1"))
    with pytest.raises(IllegalTransition, match="RECEIVED -> PROCESSING"):
        lot.to(LotState.PROCESSING)
    lot.to(LotState.QUEUED, "mill")
    lot.to(LotState.PROCESSING)
    lot.to(LotState.COMPLETED)
    with pytest.raises(IllegalTransition):
        lot.to(LotState.QUEUED)


def test_single_lot_flows_through_every_stage_in_order() -> None:
    cfg = plant(stages=[
        {"name": "mill", "machine_type": "milling", "processing_time": {"distribution": "constant", "value": 60}},
        {"name": "turn", "machine_type": "lathe", "processing_time": {"distribution": "constant", "value": 30}},
    ])
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.admit(order("L1"))
    run_all(sim)
    kinds = [(e.event_type, e.stage) for e in events(sink)]
    assert kinds == [
        ("lot.received", None), ("lot.queued", "mill"), ("stage.started", "mill"), ("stage.completed", "mill"),
        ("lot.queued", "turn"), ("stage.started", "turn"), ("stage.completed", "turn"), ("lot.completed", "turn"),
    ]
    done = events(sink, "lot.completed")[0]
    assert done.lead_time_s == 90
    cycles = [r for r in sink.records if isinstance(r, CycleTelemetry)]
    assert [(c.stage, c.cycle_time_s) for c in cycles] == [("mill", 60), ("turn", 30)]
    assert sim.stats.completed == 1 and sim.stats.in_progress == 0


def test_priority_alta_before_normale_before_bassa_fifo_within() -> None:
    cfg = plant(locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}})
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.admit(order("first"))  # takes the only machine
    for code, prio in [("b1", "bassa"), ("n1", "normale"), ("a1", "alta"), ("n2", "normale"), ("a2", "alta")]:
        sim.admit(order(code, priority=prio))
    run_all(sim)
    started = [e.lot_code for e in events(sink, "stage.started")]
    assert started == ["first", "a1", "a2", "n1", "n2", "b1"]


def test_priority_processing_off_is_plain_fifo() -> None:
    cfg = plant(locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}},
                simulation={"priority_processing": False})
    sink = ListSink()
    sim = Simulation(cfg, sink)
    for code, prio in [("x", "normale"), ("b", "bassa"), ("a", "alta")]:
        sim.admit(order(code, priority=prio))
    run_all(sim)
    assert [e.lot_code for e in events(sink, "stage.started")] == ["x", "b", "a"]


def test_duplicate_in_progress_lot_and_unknown_location_are_rejected() -> None:
    sim = Simulation(plant(), ListSink())
    sim.admit(order("L1"))
    with pytest.raises(OrderRejected) as dup:
        sim.admit(order("L1"))
    assert dup.value.reason == "duplicate_lot"
    with pytest.raises(OrderRejected) as loc:
        sim.admit(order("L2", location="Atlantis"))
    assert loc.value.reason == "unknown_location"


def test_cycle_block_stops_the_machine_and_the_lot_then_resumes() -> None:
    cfg = plant(disruptions={"block_probability": 1.0, "block_reasons": [{"reason": "jam"}],
                             "repair_time": {"distribution": "constant", "value": 40}})
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.admit(order("L1"))
    run_all(sim)
    blocked = events(sink, "machine.blocked")
    repaired = events(sink, "machine.repaired")
    assert len(blocked) == len(repaired) == 1
    assert blocked[0].reason == "jam" and blocked[0].cause == "cycle_block"
    assert blocked[0].lot_code == "L1" and blocked[0].lot_state == "BLOCKED"
    assert repaired[0].sim_time - blocked[0].sim_time == 40
    assert 0 <= blocked[0].sim_time <= 100
    cycle = next(r for r in sink.records if isinstance(r, CycleTelemetry))
    assert cycle.blocked and cycle.block_reason == "jam"
    assert cycle.cycle_time_s == 140 and cycle.processed_s == 100 and cycle.blocked_s == 40
    assert "jam" in cycle.alarms
    machine = sim.plant.machines[cycle.machine_id]
    assert machine.time_in("blocked", sim.now) == 40


@pytest.mark.parametrize("on_interrupt", ["resume", "restart"])
def test_failure_interrupts_work_and_resumes_or_restarts(on_interrupt: str) -> None:
    cfg = plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "constant", "value": 3600}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}},
        disruptions={"failures": {"mtbf_h": 0.5, "on_interrupt": on_interrupt,
                                  "repair_time": {"distribution": "constant", "value": 600}}},
    )
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.admit(order("L1"))
    sim.env.run(until=20 * 3600)
    failures = [e for e in events(sink, "machine.blocked") if e.cause == "failure"]
    with_lot = [e for e in failures if e.lot_code == "L1"]
    assert with_lot, "a 1-hour job with MTBF 30 min must be interrupted"
    done = events(sink, "lot.completed")[0]
    interrupted = sum(1 for e in with_lot if e.sim_time < done.sim_time)
    cycle = next(r for r in sink.records if isinstance(r, CycleTelemetry))
    assert cycle.blocked_s == pytest.approx(600 * interrupted)
    if on_interrupt == "resume":
        assert done.lead_time_s == pytest.approx(3600 + 600 * interrupted)
    else:
        assert done.lead_time_s > 3600 + 600 * interrupted


def test_maintenance_every_n_cycles_resets_the_counters() -> None:
    cfg = plant(
        locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}},
        disruptions={"maintenance": {"every_cycles": 3,
                                     "duration": {"distribution": "constant", "value": 500}}},
    )
    sink = ListSink()
    sim = Simulation(cfg, sink)
    for i in range(10):
        sim.admit(order(f"L{i}"))
    run_all(sim)
    machine = next(iter(sim.plant.machines.values()))
    started = events(sink, "maintenance.started")
    assert 3 <= len(started) <= 4  # first one depends on the machine's random history
    assert all(end - start == 500 for start, end in machine.maintenance_log)
    assert machine.cycles_since_maintenance < 3
    assert machine.last_maintenance == machine.maintenance_log[-1][1]
    assert sim.stats.completed == 10


def test_maintenance_every_hours_takes_an_idle_machine() -> None:
    cfg = plant(
        locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}},
        disruptions={"maintenance": {"every_hours": 24, "duration": {"distribution": "constant", "value": 3600}}},
    )
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.env.run(until=10 * 86400)
    log = next(iter(sim.plant.machines.values())).maintenance_log
    assert 9 <= len(log) <= 11
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(log)]
    assert all(g == pytest.approx(86400) for g in gaps)


def test_test_stage_rework_goes_back_and_scrap_ends_the_lot() -> None:
    stages = [
        {"name": "asm", "machine_type": "assembly", "processing_time": {"distribution": "constant", "value": 50}},
        {"name": "qa", "machine_type": "test_rig", "processing_time": {"distribution": "constant", "value": 10},
         "quality": {"rework_probability": 0.5, "scrap_probability": 0.1, "max_reworks": 1}},
    ]
    sink = ListSink()
    sim = Simulation(plant(stages=stages), sink)
    for i in range(300):
        sim.admit(order(f"L{i}"))
    run_all(sim)
    stats = sim.stats
    assert stats.completed + stats.scrapped == 300
    assert stats.reworks > 50 and stats.scrapped > 30
    for e in events(sink, "lot.reworked"):
        assert e.stage == "asm" and e.rework_count == 1
    per_lot: dict[str, list[str]] = {}
    for e in events(sink, "stage.completed"):
        per_lot.setdefault(e.lot_code or "", []).append(e.stage or "")
    for stages_seen in per_lot.values():
        assert stages_seen in (["asm", "qa"], ["asm", "qa", "asm", "qa"])
    qa = [m for m in sim.plant.machines.values() if m.machine_type == "test_rig"]
    assert sum(m.cycles - m.good_cycles for m in qa) == stats.reworks + stats.scrapped


def test_a_stage_may_rework_at_itself_even_the_first_one() -> None:
    stages = [
        {"name": "cut", "machine_type": "cnc", "processing_time": {"distribution": "constant", "value": 30},
         "quality": {"rework_probability": 0.4, "rework_stage": "cut", "max_reworks": 2}},
        {"name": "paint", "machine_type": "painting", "processing_time": {"distribution": "constant", "value": 20}},
    ]
    sink = ListSink()
    sim = Simulation(plant(stages=stages), sink)
    for i in range(200):
        sim.admit(order(f"L{i}"))
    run_all(sim)
    assert sim.stats.completed + sim.stats.scrapped == 200
    assert sim.stats.reworks > 40
    assert {e.stage for e in events(sink, "lot.reworked")} == {"cut"}
    for code in {e.lot_code for e in events(sink, "lot.completed")}:
        seen = [e.stage for e in events(sink, "stage.completed") if e.lot_code == code]
        assert seen[-1] == "paint" and set(seen[:-1]) == {"cut"} and len(seen) <= 4  # cut once, twice or thrice


def test_streams_are_per_entity_adding_a_lot_keeps_other_lots_times() -> None:
    cfg = plant(stages=[{"name": "mill", "machine_type": "milling",
                         "processing_time": {"distribution": "exponential", "mean": 100}}],
                locations={"A": {"timezone": "UTC", "machines": {"milling": 50}}})

    def times(codes: list[str]) -> dict[str, float]:
        sink = ListSink()
        sim = Simulation(cfg, sink)
        for code in codes:
            sim.admit(order(code))
        run_all(sim)
        return {e.lot_code or "": e.processed_s or 0.0 for e in events(sink, "stage.completed")}

    base = times(["L1", "L2", "L3"])
    more = times(["L0", "L1", "L2", "L3", "L9"])
    assert all(base[c] == more[c] for c in base)


def test_same_seed_same_records_different_seed_differs(default_config) -> None:  # type: ignore[no-untyped-def]
    def run(seed: int) -> list[object]:
        sink = ListSink()
        sim = Simulation(default_config, sink, seed=seed)
        sim.start_arrivals(limit=40)
        sim.env.run(until=5 * 86400)
        return sink.records

    assert run(3) == run(3)
    assert run(3) != run(4)
