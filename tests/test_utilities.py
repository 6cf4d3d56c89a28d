"""Continuous-duty machines: no lots, running at the shift factor, off shift at 0, 24/7 at load 1
without a calendar; failures and maintenance; time accounting and OEE; the config check."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.model.machine import MachineState
from simulator.model.order import Order
from simulator.model.records import ListSink, LotEvent, MachineSample
from simulator.model.simulation import Simulation
from simulator.reporting.summary import machine_kpis

from plants import plant

MILL = {"name": "mill", "machine_type": "milling", "processing_time": {"distribution": "constant", "value": 1800}}
DAY_AND_NIGHT = {"shifts": [{"name": "day", "start": "08:00", "end": "16:00", "capacity": 1.0},
                            {"name": "night", "start": "22:00", "end": "06:00", "capacity": 0.5}],
                 "weekend_factor": 0.25}


def utility_plant(calendar: dict[str, Any] | None = None, **sections: Any) -> Config:
    location: dict[str, Any] = {"timezone": "Europe/Rome", "machines": {"milling": 2, "compressor": 2}}
    extra: dict[str, Any] = {}
    if calendar is not None:
        location["shift_calendar"] = "c"
        extra["shift_calendars"] = {"c": calendar}
    sections.setdefault("machine_types", {"compressor": {"duty": "continuous", "sample_interval_s": 300}})
    sections.setdefault("simulation", {"start": "2025-06-20T00:00:00Z"})  # Friday, 02:00 in Rome
    return plant(stages=[MILL], locations={"A": location}, **extra, **sections)


def samples(sink: ListSink, machine_type: str = "compressor") -> list[MachineSample]:
    return [r for r in sink.records if isinstance(r, MachineSample) and r.machine_type == machine_type]


def hour(sample: MachineSample) -> float:
    return (sample.sim_time % 86400) / 3600.0


def test_a_continuous_type_on_a_route_stage_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        plant(stages=[{"name": "air", "machine_type": "compressor",
                       "processing_time": {"distribution": "constant", "value": 10}}],
              machine_types={"compressor": {"duty": "continuous"}})
    assert any(p.startswith("route[0].machine_type:") and "continuous" in p for p in info.value.problems)


def test_without_a_calendar_utilities_run_around_the_clock_at_full_load() -> None:
    sink = ListSink()
    sim = Simulation(utility_plant(), sink)
    sim.env.run(until=2 * 86400)
    compressors = [m for m in sim.plant.machines.values() if m.machine_type == "compressor"]
    for machine in compressors:
        assert machine.state == MachineState.RUNNING
        assert machine.load == 1.0
        assert machine.current_lot is None
        kpis = machine_kpis(machine, sim.now)
        assert kpis["running_s"] == 2 * 86400
        assert kpis["utilization"] == kpis["availability"] == kpis["oee"] == 1.0
    assert {s.state for s in samples(sink)} == {MachineState.RUNNING}
    assert all(s.lot_code is None and s.stage is None for s in samples(sink))
    assert not [r for r in sink.records if isinstance(r, LotEvent)]  # no lots, no events


def test_load_follows_the_shift_factor_and_power_follows_the_load() -> None:
    sink = ListSink()
    sim = Simulation(utility_plant(DAY_AND_NIGHT), sink)
    for i in range(6):  # production keeps its own machines busy meanwhile
        sim.admit(Order(f"L{i}", "c", 10, "A", "normale"))
    sim.env.run(until=4 * 86400)  # Friday 02:00 .. Tuesday 02:00 in Rome (UTC+2)
    by_factor: dict[float, list[float]] = {}
    for s in samples(sink):
        local_hour = (hour(s) + 2) % 24
        weekday = (4 + int((s.sim_time + 2 * 3600) // 86400)) % 7  # 4 = Friday
        night = local_hour >= 22 or local_hour < 6
        day = 8 <= local_hour < 16
        if not (night or day):
            assert s.state == MachineState.OFF_SHIFT, (local_hour, s)
            by_factor.setdefault(0.0, []).append(float(s.signals["power_kw"]))  # type: ignore[arg-type]
            continue
        # a night shift belongs to the day it starts on
        starts = weekday if not (night and local_hour < 6) else (weekday - 1) % 7
        factor = (1.0 if day else 0.5) * (0.25 if starts >= 5 else 1.0)
        assert s.state == MachineState.RUNNING, (local_hour, s)
        by_factor.setdefault(factor, []).append(float(s.signals["power_kw"]))  # type: ignore[arg-type]
    assert set(by_factor) == {0.0, 0.125, 0.25, 0.5, 1.0}
    means = [statistics.fmean(by_factor[f]) for f in sorted(by_factor)]
    assert means == sorted(means)
    assert means[0] < 2.0  # off shift: standby power only
    # the pool's shift limit (half the machines at night) does not apply: both compressors run
    assert {s.machine_id for s in samples(sink) if s.state == MachineState.RUNNING and (hour(s) + 2) % 24 < 5} == \
        {"A-compressor-01", "A-compressor-02"}
    for machine in sim.plant.machines.values():
        if machine.machine_type == "compressor":
            kpis = machine_kpis(machine, sim.now)
            assert kpis["off_shift_s"] > 0
            assert kpis["running_s"] + kpis["off_shift_s"] == pytest.approx(sim.now)
            assert kpis["utilization"] == pytest.approx(1.0, abs=1e-3)


def test_failures_interrupt_a_utility_and_maintenance_takes_it_out_and_back() -> None:
    config = utility_plant(
        DAY_AND_NIGHT,
        disruptions={"block_probability": 0.0,
                     "failures": {"mtbf_h": 12, "repair_time": {"distribution": "constant", "value": 3600}},
                     "maintenance": {"every_hours": 48, "duration": {"distribution": "constant", "value": 7200}}},
    )
    sink = ListSink()
    sim = Simulation(config, sink)
    sim.env.run(until=10 * 86400)
    events = [r for r in sink.records if isinstance(r, LotEvent) and r.machine_id == "A-compressor-01"]
    kinds = [e.event_type for e in events]
    assert kinds.count("machine.repaired") > 0
    assert kinds.count("machine.blocked") - kinds.count("machine.repaired") in (0, 1)  # may end blocked
    assert kinds.count("maintenance.started") >= 4
    machine = sim.plant.machines["A-compressor-01"]
    assert machine.state in (MachineState.RUNNING, MachineState.OFF_SHIFT, MachineState.BLOCKED,
                             MachineState.MAINTENANCE)
    assert machine not in sim.plant.pool("A", "compressor").idle  # never left idle in its pool
    kpis = machine_kpis(machine, sim.now)
    assert kpis["blocked_s"] > 0
    assert kpis["maintenance_s"] >= 4 * 7200
    assert 0.5 < kpis["availability"] < 1.0
    assert kpis["oee"] == pytest.approx(kpis["availability"], abs=0.01)  # performance and quality are 1
    total = sum(kpis[k] for k in ("running_s", "idle_s", "blocked_s", "maintenance_s", "off_shift_s"))
    assert total == pytest.approx(sim.now)
    assert kpis["idle_s"] == 0.0
