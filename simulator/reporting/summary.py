"""The run report: a stable, documented JSON structure built from a finished (or paused) run.

Schema version 1 (README "Report schema").  Times are seconds of simulated time; ratios are
0..1.  Machine KPIs:

- ``utilization`` = running time / scheduled time (observed time minus off-shift time);
- ``availability`` = running time / planned production time (scheduled minus planned
  maintenance); blocked (breakdown) and idle (starved) time are availability losses;
- ``performance`` = sum of ideal cycle times / running time (capped at 1);
- ``quality`` = good cycles / cycles (a test that sends a lot to rework or scrap is not good);
- ``oee`` = availability × performance × quality.
"""

from __future__ import annotations

from typing import Any

from simulator.model.machine import Machine, MachineState
from simulator.model.simulation import Simulation
from simulator.model.statistics import SampleSet

SCHEMA_VERSION = 1


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _r(value: float, digits: int = 4) -> float:
    return round(value, digits)


def _summary(samples: SampleSet) -> dict[str, float]:
    return {k: _r(v, 3) for k, v in samples.summary().items()}


def machine_kpis(machine: Machine, now: float) -> dict[str, Any]:
    running = machine.time_in(MachineState.RUNNING, now)
    blocked = machine.time_in(MachineState.BLOCKED, now)
    maintenance = machine.time_in(MachineState.MAINTENANCE, now)
    off_shift = machine.time_in(MachineState.OFF_SHIFT, now)
    scheduled = now - off_shift
    planned = scheduled - maintenance
    availability = _ratio(running, planned)
    performance = min(1.0, _ratio(machine.ideal_time_s, running))
    quality = _ratio(machine.good_cycles, machine.cycles) if machine.cycles else 0.0
    return {
        "location": machine.location,
        "type": machine.machine_type,
        "state": machine.state,
        "utilization": _r(_ratio(running, scheduled)),
        "availability": _r(availability),
        "performance": _r(performance),
        "quality": _r(quality),
        "oee": _r(availability * performance * quality),
        "cycles": machine.cycles,
        "good_cycles": machine.good_cycles,
        "running_s": _r(running, 1),
        "idle_s": _r(machine.time_in(MachineState.IDLE, now), 1),
        "blocked_s": _r(blocked, 1),
        "maintenance_s": _r(maintenance, 1),
        "off_shift_s": _r(off_shift, 1),
        "maintenances": len(machine.maintenance_log),
    }


def pool_utilization(machines: list[Machine], now: float) -> tuple[float, float]:
    """(running share, running+blocked share) of the pool's scheduled time."""
    scheduled = sum(now - m.time_in(MachineState.OFF_SHIFT, now) for m in machines)
    running = sum(m.time_in(MachineState.RUNNING, now) for m in machines)
    busy = running + sum(m.time_in(MachineState.BLOCKED, now) for m in machines)
    return _ratio(running, scheduled), _ratio(busy, scheduled)


def build_report(sim: Simulation) -> dict[str, Any]:
    now = sim.now
    stats = sim.stats
    plant = sim.plant
    stages: dict[str, Any] = {}
    candidates: list[tuple[float, float, str, str]] = []
    for plan in plant.stages:
        st = stats.stages[plan.name]
        by_location: dict[str, Any] = {}
        for loc in sim.config.locations:
            pool = plant.pool(loc, plan.machine_type)
            running_share, busy_share = pool_utilization(pool.machines, now)
            waits, processing = st.by_location[loc]
            by_location[loc] = {
                "machines": len(pool.machines),
                "cycles": processing.count,
                "wait_s": _summary(waits),
                "process_s": {"mean": _r(processing.mean, 3)},
                "utilization": _r(running_share),
                "busy": _r(busy_share),
                "queue_length": pool.queue_length,
            }
            candidates.append((busy_share, waits.mean, plan.name, loc))
        all_machines = [m for loc in sim.config.locations for m in plant.pool(loc, plan.machine_type).machines]
        running_share, busy_share = pool_utilization(all_machines, now)
        stages[plan.name] = {
            "machine_type": plan.machine_type,
            "cycles": st.process.count,
            "wait_s": _summary(st.wait),
            "process_s": {"mean": _r(st.process.mean, 3)},
            "utilization": _r(running_share),
            "busy": _r(busy_share),
            "by_location": by_location,
        }
    bottleneck: dict[str, Any] | None = None
    if candidates and now > 0:
        busy, wait, stage, loc = max(candidates)
        stage_name = max(stages, key=lambda s: (stages[s]["busy"], stages[s]["wait_s"]["mean"]))
        bottleneck = {
            "stage": stage_name,
            "stage_busy": stages[stage_name]["busy"],
            "pool": {"stage": stage, "location": loc, "busy": _r(busy), "mean_wait_s": _r(wait, 3)},
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "seed": sim.seed,
        "start_utc": sim.start.isoformat().replace("+00:00", "Z"),
        "sim_duration_s": _r(now, 3),
        "lots": {
            "received": stats.received,
            "completed": stats.completed,
            "scrapped": stats.scrapped,
            "in_progress": stats.in_progress,
            "reworks": stats.reworks,
            "by_location": stats.by_location,
        },
        "throughput_per_hour": _r(_ratio(stats.completed, now / 3600.0)),
        "lead_time_s": _summary(stats.lead_time),
        "lead_time_by_location_s": {k: _summary(v) for k, v in stats.lead_time_by_location.items()},
        "lead_time_by_priority_s": {k: _summary(v) for k, v in stats.lead_time_by_priority.items()},
        "wip": {"mean": _r(stats.wip.mean(now), 3), "max": int(stats.wip.maximum(now))},
        "stages": stages,
        "machines": {m.id: machine_kpis(m, now) for m in plant.machines.values()},
        "bottleneck": bottleneck,
        "series": {**stats.series.as_dict(now, [(loc, stage.machine_type) for loc in sim.config.locations
                                                for stage in plant.stages]),
                   "warm_up_s": stats.observed_from},
    }

