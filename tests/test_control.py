"""Runtime control of the model (block, repair, anomalies): a real Simulation with a list sink."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.errors import CommandRejected
from simulator.model.control import (
    anomaly_view,
    block_machine,
    block_view,
    clear_anomaly,
    plant_anomaly,
    repair_machine,
    set_anomaly,
)
from simulator.model.order import Order
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample
from simulator.model.simulation import Simulation

from plants import plant

ONE = "A-milling-01"
TWO = "A-milling-02"


def order(code: str, quantity: int = 10) -> Order:
    return Order(code, "cliente", quantity, "A", "normale")


def events(sink: ListSink, event_type: str | None = None) -> list[LotEvent]:
    return [r for r in sink.records if isinstance(r, LotEvent)
            and (event_type is None or r.event_type == event_type)]


def cycles(sink: ListSink) -> list[CycleTelemetry]:
    return [r for r in sink.records if isinstance(r, CycleTelemetry)]


def run_until(sim: Simulation, condition: Callable[[], bool], limit: float = 1e7) -> None:
    """Step until ``condition`` holds (between two steps, where commands apply)."""
    while not condition():
        assert sim.env.peek() <= limit, "the condition never held"
        sim.env.step()


def two_millers(**sections: Any) -> Simulation:
    return Simulation(plant(**sections), ListSink())


def sink_of(sim: Simulation) -> ListSink:
    sink = sim.recorder.sink
    assert isinstance(sink, ListSink)
    return sink


# -- blocks ---------------------------------------------------------------------------------------------
def test_block_command_interrupts_the_lot_until_a_repair_command() -> None:
    sim = two_millers()
    sink = sink_of(sim)
    sim.admit(order("L1"))
    sim.env.run(until=30)
    result = block_machine(sim, ONE, reason="jam by hand")
    assert result == {"machine_id": ONE, "state": "blocked", "lot": "L1",
                      "block": {"reason": "jam by hand", "cause": "command", "since_s": 30, "until_s": None}}
    blocked = events(sink)[-1]
    assert (blocked.event_type, blocked.cause, blocked.reason) == ("machine.blocked", "command", "jam by hand")
    assert (blocked.lot_code, blocked.lot_state, blocked.machine_id) == ("L1", "BLOCKED", ONE)
    sim.env.run(until=80)
    assert sim.plant.machines[ONE].state == "blocked"
    assert sim.lots["L1"].state == "BLOCKED"
    assert not events(sink, "machine.repaired")
    repaired = repair_machine(sim, ONE)
    assert repaired == {"machine_id": ONE, "state": "running", "repaired": "command", "reason": "jam by hand",
                        "lot": "L1"}
    sim.env.run()
    back = events(sink, "machine.repaired")
    assert [(e.sim_time, e.cause, e.reason, e.lot_code) for e in back] == [(80, "command", "jam by hand", "L1")]
    assert events(sink, "lot.completed")[0].lead_time_s == 150  # 100 s of work + 50 s blocked
    cycle = cycles(sink)[0]
    assert (cycle.blocked, cycle.block_reason, cycle.blocked_s) == (True, "jam by hand", 50)
    assert (cycle.cycle_time_s, cycle.processed_s) == (150, 100)
    assert "jam by hand" in cycle.alarms
    assert sim.plant.machines[ONE].time_in("blocked", sim.now) == 50


def test_block_with_a_duration_ends_by_itself() -> None:
    sim = two_millers()
    sink = sink_of(sim)
    sim.admit(order("L1"))
    sim.env.run(until=30)
    assert block_machine(sim, ONE, duration_s=20)["block"]["until_s"] == 50
    sim.env.run()
    assert [(e.event_type, e.sim_time, e.cause, e.reason) for e in events(sink) if e.machine_id == ONE
            and e.event_type.startswith("machine.")] == [("machine.blocked", 30, "command", "manual"),
                                                          ("machine.repaired", 50, "command", "manual")]
    assert events(sink, "lot.completed")[0].lead_time_s == 120


def test_blocked_idle_machine_leaves_its_pool_until_repaired() -> None:
    sim = two_millers()
    sink = sink_of(sim)
    result = block_machine(sim, TWO, reason="guard open")
    assert result["lot"] is None
    assert events(sink, "machine.blocked")[0].lot_code is None
    sim.admit(order("L1"))
    sim.admit(order("L2"))
    sim.env.run(until=40)
    assert sim.plant.machines[ONE].current_lot is not None
    assert sim.lots["L2"].state == "QUEUED"  # the only free machine is blocked
    assert repair_machine(sim, TWO)["state"] == "running"  # it takes the waiting lot at once
    sim.env.run()
    started = {e.lot_code: (e.sim_time, e.machine_id) for e in events(sink, "stage.started")}
    assert started == {"L1": (0, ONE), "L2": (40, TWO)}


def test_block_at_the_instant_a_lot_starts_stops_that_lot() -> None:
    sim = Simulation(plant(locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}}), ListSink())
    sink = sink_of(sim)
    sim.admit(order("L1"))  # the lot gets the idle machine and starts at once, at this instant
    assert sim.plant.machines[ONE].current_lot is not None
    assert sim.plant.machines[ONE].in_work
    block_machine(sim, ONE, duration_s=50)
    sim.env.run(until=10)
    assert sim.lots["L1"].state == "BLOCKED"
    sim.env.run()
    assert events(sink, "lot.completed")[0].lead_time_s == 150
    assert cycles(sink)[0].blocked_s == 50


def test_repair_ends_a_per_cycle_block_early() -> None:
    sim = two_millers(disruptions={"block_probability": 1.0, "block_reasons": [{"reason": "jam"}],
                                   "repair_time": {"distribution": "constant", "value": 1000}})
    sink = sink_of(sim)
    sim.admit(order("L1"))
    run_until(sim, lambda: bool(events(sink, "machine.blocked")))
    blocked = events(sink, "machine.blocked")[0]
    assert block_view(sim.plant.machines[ONE]) == {
        "reason": "jam", "cause": "cycle_block", "since_s": pytest.approx(blocked.sim_time, abs=1e-3),
        "until_s": pytest.approx(blocked.sim_time + 1000, abs=1e-3)}
    sim.env.run(until=blocked.sim_time + 10)
    assert repair_machine(sim, ONE)["repaired"] == "cycle_block"
    with pytest.raises(CommandRejected) as again:
        repair_machine(sim, ONE)
    assert again.value.reason == "not_blocked"
    sim.env.run()
    repaired = events(sink, "machine.repaired")
    assert [(e.sim_time, e.cause) for e in repaired] == [(blocked.sim_time + 10, "cycle_block")]
    assert events(sink, "lot.completed")[0].lead_time_s == pytest.approx(110)
    assert cycles(sink)[0].blocked_s == pytest.approx(10)


def test_repair_ends_failure_repairs_early_and_failures_go_on() -> None:
    sim = Simulation(plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "constant", "value": 3600}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}},
        disruptions={"failures": {"mtbf_h": 0.5, "repair_time": {"distribution": "constant", "value": 50_000}}},
    ), ListSink())
    sink = sink_of(sim)
    machine = sim.plant.machines[ONE]
    sim.admit(order("L1"))
    results = []
    while not events(sink, "lot.completed"):
        run_until(sim, lambda: machine.state == "blocked" or bool(events(sink, "lot.completed")))
        if machine.state == "blocked":
            results.append(repair_machine(sim, ONE))
    assert len(results) >= 2, "a 1-hour job with MTBF 30 min fails more than once"
    assert {(r["repaired"], r["reason"], r["state"], r["lot"]) for r in results} == {
        ("failure", "guasto", "running", "L1")}
    blocked, repaired = events(sink, "machine.blocked"), events(sink, "machine.repaired")
    assert [e.sim_time for e in blocked] == [e.sim_time for e in repaired]
    assert {e.cause for e in repaired} == {"failure"}
    assert events(sink, "lot.completed")[0].lead_time_s == pytest.approx(3600)  # no 50,000 s repair waited


def test_repair_then_block_in_the_same_instant() -> None:
    sim = two_millers(disruptions={"block_probability": 1.0, "block_reasons": [{"reason": "jam"}],
                                   "repair_time": {"distribution": "constant", "value": 1000}})
    sink = sink_of(sim)
    sim.admit(order("L1"))
    run_until(sim, lambda: bool(events(sink, "machine.blocked")))
    repair_machine(sim, ONE)
    block_machine(sim, ONE, reason="again", duration_s=30)
    sim.env.run()
    kinds = [(e.event_type, e.cause) for e in events(sink) if e.event_type.startswith("machine.")]
    assert kinds == [("machine.blocked", "cycle_block"), ("machine.repaired", "cycle_block"),
                     ("machine.blocked", "command"), ("machine.repaired", "command")]
    assert cycles(sink)[0].blocked_s == pytest.approx(30)


@pytest.mark.parametrize(("setup", "command", "reason"), [
    ("none", lambda sim: block_machine(sim, "nope"), "unknown_machine"),
    ("none", lambda sim: repair_machine(sim, "nope"), "unknown_machine"),
    ("none", lambda sim: set_anomaly(sim, "nope", "bearing_fault"), "unknown_machine"),
    ("none", lambda sim: repair_machine(sim, ONE), "not_blocked"),
    ("none", lambda sim: block_machine(sim, ONE, duration_s=-5), "invalid_duration"),
    ("none", lambda sim: block_machine(sim, ONE, duration_s=0), "invalid_duration"),
    ("none", lambda sim: block_machine(sim, ONE, duration_s=float("nan")), "invalid_duration"),
    ("none", lambda sim: block_machine(sim, ONE, reason=""), "invalid_field"),
    ("blocked", lambda sim: block_machine(sim, ONE), "already_blocked"),
    ("maintenance", lambda sim: block_machine(sim, ONE), "in_maintenance"),
    ("off_shift", lambda sim: block_machine(sim, ONE), "off_shift"),
    ("none", lambda sim: set_anomaly(sim, ONE, "leak"), "unknown_anomaly"),
    ("none", lambda sim: set_anomaly(sim, ONE, "bearing_fault", severity=0), "invalid_severity"),
    ("none", lambda sim: set_anomaly(sim, ONE, "bearing_fault", severity=5.5), "invalid_severity"),
    ("none", lambda sim: set_anomaly(sim, ONE, "energy_spike", duration_s=-1), "invalid_duration"),
    ("none", lambda sim: plant_anomaly(sim, "leak", True), "unknown_anomaly"),
])
def test_commands_that_cannot_apply_are_rejected_with_a_reason(
        setup: str, command: Callable[[Simulation], Any], reason: str) -> None:
    sections: dict[str, Any] = {"locations": {"A": {"timezone": "UTC", "machines": {"milling": 1}}}}
    if setup == "maintenance":
        sections["disruptions"] = {"maintenance": {"every_cycles": 1,
                                                   "duration": {"distribution": "constant", "value": 500}}}
    if setup == "off_shift":
        sections["locations"]["A"]["shift_calendar"] = "day"
        sections["shift_calendars"] = {"day": {"shifts": [{"name": "d", "start": "10:00", "end": "16:00"}]}}
    sim = Simulation(plant(**sections), ListSink())
    if setup == "blocked":
        block_machine(sim, ONE)
    if setup == "maintenance":
        sim.admit(order("L1"))
        sim.env.run(until=150)
    if setup == "off_shift":
        sim.env.run(until=10)  # the run starts at 06:00 UTC, before the shift
    before = [(m.state, m.anomaly) for m in sim.plant.machines.values()]
    with pytest.raises(CommandRejected) as rejected:
        command(sim)
    assert rejected.value.reason == reason
    assert rejected.value.detail
    assert [(m.state, m.anomaly) for m in sim.plant.machines.values()] == before


def test_unknown_anomaly_names_the_allowed_ones() -> None:
    sim = Simulation(plant(stages=[{"name": "air", "machine_type": "compressor",
                                    "processing_time": {"distribution": "constant", "value": 100}}]), ListSink())
    with pytest.raises(CommandRejected, match="allowed: leak, efficiency_loss, bearing_fault, energy_spike"):
        set_anomaly(sim, "A-compressor-01", "belt_slip")


# -- anomalies ----------------------------------------------------------------------------------------
def test_anomaly_lasts_its_duration_and_can_be_cleared() -> None:
    sim = two_millers(telemetry={"sample_interval_s": 10})
    sink = sink_of(sim)
    sim.env.run(until=100)
    result = set_anomaly(sim, ONE, "bearing_fault", severity=2.0, duration_s=300)
    assert result == {"machine_id": ONE, "anomaly": {"type": "bearing_fault", "severity": 2.0, "until_s": 400}}
    sim.env.run(until=1000)
    samples = [r for r in sink.records if isinstance(r, MachineSample) and r.machine_id == ONE]
    assert {r.anomaly for r in samples if 100 <= r.sim_time < 400} == {"bearing_fault"}
    assert {r.anomaly for r in samples if r.sim_time < 100 or r.sim_time >= 400} == {None}
    assert anomaly_view(sim.plant.machines[ONE], sim.now) is None
    set_anomaly(sim, TWO, "energy_spike")
    assert anomaly_view(sim.plant.machines[TWO], sim.now) == {"type": "energy_spike", "severity": 1.0,
                                                              "until_s": None}
    assert clear_anomaly(sim, TWO, "bearing_fault")["cleared"] is None  # only that type is cleared
    assert clear_anomaly(sim, TWO)["cleared"] == "energy_spike"
    assert clear_anomaly(sim, TWO) == {"machine_id": TWO, "cleared": None, "anomaly": None}


def test_plant_wide_switch_reaches_every_machine_and_clears_only_its_type() -> None:
    sim = two_millers()
    set_anomaly(sim, TWO, "energy_spike")
    assert plant_anomaly(sim, "bearing_fault", True, machine_id=ONE)["machines"] == [ONE]
    assert plant_anomaly(sim, "energy_spike", True)["machines"] == [ONE, TWO]
    assert plant_anomaly(sim, "bearing_fault", False)["machines"] == []  # replaced by energy_spike
    assert plant_anomaly(sim, "energy_spike", False) == {"anomaly": "energy_spike", "value": False,
                                                         "machines": [ONE, TWO]}
    assert all(m.anomaly is None for m in sim.plant.machines.values())


def test_pieces_finished_while_a_bearing_fault_is_in_force_are_bad() -> None:
    sim = Simulation(plant(locations={"A": {"timezone": "UTC", "machines": {"milling": 1}}}), ListSink())
    sink = sink_of(sim)
    machine = sim.plant.machines[ONE]
    sim.admit(order("L1", quantity=10))  # 0 s to 100 s: good
    sim.env.run(until=150)
    assert (machine.good_pieces, machine.bad_pieces) == (10, 0)
    sim.admit(order("L2", quantity=7))  # 150 s to 250 s, the fault from 200 s on
    sim.env.run(until=200)
    plant_anomaly(sim, "bearing_fault", True)
    sim.env.run(until=300)
    assert (machine.good_pieces, machine.bad_pieces, machine.cycles, machine.good_cycles) == (10, 7, 2, 1)
    plant_anomaly(sim, "bearing_fault", False)
    sim.admit(order("L3", quantity=5))
    sim.env.run(until=500)
    assert (machine.good_pieces, machine.bad_pieces) == (15, 7)
    last = [r for r in cycles(sink) if r.machine_id == ONE]
    assert [(r.lot_code, r.anomaly, r.counters.bad_pieces if r.counters else None) for r in last] == [
        ("L1", None, 0), ("L2", "bearing_fault", 7), ("L3", None, 7)]


def test_a_bearing_fault_shows_on_a_machine_that_is_switched_on_whatever_it_does() -> None:
    sim = two_millers(telemetry={"sample_interval_s": 10})
    sink = sink_of(sim)
    sim.admit(order("L1", quantity=10))  # ONE works 0..100 s, TWO stands idle
    block_machine(sim, TWO, reason="jam", duration_s=40)
    sim.env.run(until=5)
    plant_anomaly(sim, "bearing_fault", True)
    sim.env.run(until=95)
    shown = {(r.machine_id, r.state) for r in sink.records if isinstance(r, MachineSample)
             and r.anomaly == "bearing_fault" and r.signals["vibration_mm_s"] >= 5.0}  # type: ignore[operator]
    assert shown == {(ONE, "running"), (TWO, "blocked"), (TWO, "idle")}


Direction = Callable[[float, float], bool]
UP: Direction = lambda normal, faulty: faulty > normal * 1.05 + 0.01  # noqa: E731
DOWN: Direction = lambda normal, faulty: faulty < normal * 0.95  # noqa: E731
SAME: Direction = lambda normal, faulty: abs(faulty - normal) <= 0.03 * normal  # noqa: E731
EFFECTS = [
    ("compressor", "leak", "pressure_bar", DOWN), ("compressor", "leak", "power_kw", UP),
    ("compressor", "efficiency_loss", "flow_m3_min", DOWN), ("compressor", "efficiency_loss", "power_kw", UP),
    ("compressor", "bearing_fault", "vibration_mm_s", UP), ("compressor", "bearing_fault", "discharge_temp_c", UP),
    ("hvac", "refrigerant_leak", "cop", DOWN), ("hvac", "refrigerant_leak", "power_kw", UP),
    ("hvac", "dirty_coils", "cop", DOWN), ("hvac", "dirty_coils", "power_kw", UP),
    ("hvac", "compressor_fault", "supply_temp_c", UP), ("hvac", "compressor_fault", "stages_active", DOWN),
    ("conveyor", "bearing_wear", "vibration_mm_s", UP), ("conveyor", "bearing_wear", "motor_temp_c", UP),
    ("conveyor", "belt_slip", "speed_rpm", DOWN), ("conveyor", "belt_slip", "power_kw", SAME),
    ("conveyor", "overload", "current_a", UP), ("conveyor", "overload", "power_kw", UP),
    ("conveyor", "overload", "motor_temp_c", UP),
    ("hydraulic_pump", "seal_leak", "pressure_bar", DOWN), ("hydraulic_pump", "seal_leak", "power_kw", UP),
    ("hydraulic_pump", "pump_wear", "flow_l_min", DOWN), ("hydraulic_pump", "valve_fault", "pressure_bar", UP),
    ("injection_moulding", "heater_fault", "barrel_temp_c", DOWN),
    ("injection_moulding", "cooling_insufficient", "mould_temp_c", UP),
    ("injection_moulding", "hydraulic_leak", "injection_pressure_bar", DOWN),
    ("injection_moulding", "hydraulic_leak", "power_kw", UP),
    ("milling", "bearing_fault", "spindle_temp_c", UP), ("milling", "bearing_fault", "vibration_mm_s", UP),
    ("milling", "bearing_fault", "power_kw", UP), ("lathe", "bearing_fault", "vibration_mm_s", UP),
    ("hydraulic_pump", "bearing_fault", "oil_temp_c", UP),
    ("milling", "energy_spike", "power_kw", UP), ("milling", "energy_spike", "energy_kwh", UP),
    ("milling", "energy_spike", "current_a", UP), ("welding", "energy_spike", "power_kw", UP),
]
START, LENGTH = 1000.0, 2000.0


def working_machine_samples(kind: str, anomaly: str | None) -> list[MachineSample]:
    """One ``kind`` machine working one long lot, sampled every 5 s; with ``anomaly`` from START for LENGTH."""
    cfg = plant(stages=[{"name": "work", "machine_type": kind,
                         "processing_time": {"distribution": "constant", "value": 100_000}}],
                locations={"A": {"timezone": "UTC", "machines": {kind: 1}}},
                telemetry={"sample_interval_s": 5, "cycle_records": False, "lot_events": False})
    sink = ListSink()
    sim = Simulation(cfg, sink, seed=3)
    sim.admit(order("L1", quantity=250))
    sim.env.run(until=START)
    if anomaly is not None:
        set_anomaly(sim, f"A-{kind}-01", anomaly, severity=1.0, duration_s=LENGTH)
    sim.env.run(until=START + 2 * LENGTH)
    return [r for r in sink.records if isinstance(r, MachineSample)]


def window_mean(samples: list[MachineSample], signal: str, start: float, end: float) -> float:
    return statistics.fmean(float(r.signals[signal]) for r in samples  # type: ignore[arg-type]
                            if start <= r.sim_time < end)


@pytest.mark.parametrize(("kind", "anomaly", "signal", "direction"), EFFECTS,
                         ids=[f"{k}-{a}-{s}" for k, a, s, _ in EFFECTS])
def test_each_anomaly_moves_its_signal_the_physical_way_for_its_duration(
        kind: str, anomaly: str, signal: str, direction: Direction) -> None:
    normal = working_machine_samples(kind, None)
    faulty = working_machine_samples(kind, anomaly)
    end = START + LENGTH
    assert {r.anomaly for r in faulty if START <= r.sim_time < end} == {anomaly}
    assert {r.anomaly for r in faulty if r.sim_time < START or r.sim_time >= end} == {None}
    during = window_mean(normal, signal, START, end), window_mean(faulty, signal, START, end)
    assert direction(*during), during
    if direction is not SAME:  # over when the duration is: back to what the healthy machine shows
        after = window_mean(normal, signal, end, end + LENGTH), window_mean(faulty, signal, end, end + LENGTH)
        assert abs(after[1] - after[0]) < abs(during[1] - during[0]) / 2, (during, after)


def test_block_command_stops_a_continuous_duty_utility_until_repaired() -> None:
    sim = Simulation(plant(locations={"A": {"timezone": "UTC", "machines": {"milling": 1, "compressor": 1}}},
                           machine_types={"compressor": {"duty": "continuous"}}), ListSink())
    sink = sink_of(sim)
    utility = sim.plant.machines["A-compressor-01"]
    sim.env.run(until=100)
    assert utility.state == "running"
    assert block_machine(sim, utility.id, reason="pressure switch", duration_s=50)["lot"] is None
    sim.env.run(until=120)
    assert utility.state == "blocked"
    sim.env.run(until=1000)
    assert utility.state == "running"
    assert [(e.event_type, e.sim_time, e.cause) for e in events(sink) if e.machine_id == utility.id] == [
        ("machine.blocked", 100, "command"), ("machine.repaired", 150, "command")]
    assert utility.time_in("blocked", sim.now) == 50
    assert utility.time_in("running", sim.now) == 950


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), restart=st.booleans(), cycle_blocks=st.booleans())
def test_commands_at_any_step_keep_the_model_consistent(seed: int, restart: bool, cycle_blocks: bool) -> None:
    """Blocks, repairs and anomalies at random step boundaries (also inside one instant), on a plant
    with per-cycle blocks, failures, maintenance, shifts and a continuous utility: nothing breaks,
    a machine works one lot at a time, and once the command blocks are repaired every lot finishes."""
    rng = random.Random(seed)
    sim = Simulation(plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "exponential", "mean": 300}},
                {"name": "turn", "machine_type": "lathe",
                 "processing_time": {"distribution": "constant", "value": 200}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": 2, "lathe": 1, "compressor": 1},
                         "shift_calendar": "two"}},
        shift_calendars={"two": {"shifts": [{"name": "a", "start": "06:00", "end": "14:00"},
                                            {"name": "b", "start": "14:00", "end": "22:00", "capacity": 0.5}]}},
        machine_types={"compressor": {"duty": "continuous"}},
        disruptions={"block_probability": 0.3 if cycle_blocks else 0.0,
                     "repair_time": {"distribution": "constant", "value": 100},
                     "failures": {"mtbf_h": 0.5, "repair_time": {"distribution": "constant", "value": 300},
                                  "on_interrupt": "restart" if restart else "resume"},
                     "maintenance": {"every_cycles": 3, "every_hours": 2,
                                     "duration": {"distribution": "constant", "value": 200}}},
        telemetry={"sample_interval_s": 50},
    ), ListSink(), seed=seed % 1000)
    sink = sink_of(sim)
    ids = sorted(sim.plant.machines)
    lots = 0
    for _ in range(3000):
        if rng.random() < 0.05 and lots < 15:
            sim.admit(order(f"L{lots}"))
            lots += 1
        if rng.random() < 0.05:
            machine_id, what = rng.choice(ids), rng.random()
            try:
                if what < 0.45:
                    block_machine(sim, machine_id, duration_s=rng.choice([None, 1.0, 50.0, 500.0]))
                elif what < 0.9:
                    repair_machine(sim, machine_id)
                else:
                    set_anomaly(sim, machine_id, "energy_spike", duration_s=100)
            except CommandRejected:
                pass
        sim.env.step()
    while sim.lots:
        for machine in sim.plant.machines.values():
            if machine.stoppage is not None and machine.stoppage.cause == "command":
                repair_machine(sim, machine.id)
        assert sim.now < 60 * 86400, f"lots never finished: {sim.lots}"
        sim.env.step()
    working: dict[str | None, str | None] = {}
    for e in events(sink):
        if e.event_type == "stage.started":
            assert working.get(e.machine_id) is None, e
            working[e.machine_id] = e.lot_code
        elif e.event_type == "stage.completed":
            assert working.get(e.machine_id) == e.lot_code, e
            working[e.machine_id] = None
    assert sim.stats.completed + sim.stats.scrapped == lots
