"""The run report: a stable, documented JSON structure built from a finished (or paused) run.

Schema version 2 (README "Report schema").  Times are seconds of simulated time; ratios are 0..1.
Statistics cover the observed period, from the warm-up (``warm_up_s``, 0 without one) to the end;
the bucketed ``series`` cover the whole run.  Machine KPIs:

- ``utilization`` = running time / scheduled time (observed time minus off-shift time);
- ``availability`` = running time / planned production time (scheduled minus planned
  maintenance); blocked (breakdown) and idle (starved) time are availability losses;
- ``performance`` = sum of ideal cycle times / running time (capped at 1), the ideal cycle time
  being the stage's ``ideal_cycle_time_s`` or else its mean processing time: a machine working at
  the planned pace scores 1 on average (a constant time exactly 1);
- ``quality`` = good cycles / cycles (a test that sends a lot to rework or scrap is not good);
- ``oee`` = availability × performance × quality.

``steady`` is false when a pool is overloaded (``overload``, :mod:`simulator.reporting.overload`):
then means of lead time and WIP grow with the run's length.
"""

from __future__ import annotations

from typing import Any

from simulator.model.machine import Machine
from simulator.model.simulation import Simulation
from simulator.model.statistics import MachineBaseline, SampleSet
from simulator.reporting.assumptions import assumptions, config_fingerprint
from simulator.reporting.machine_time import machine_time
from simulator.reporting.overload import overload
from simulator.reporting.pools import PoolFigures, ordered_machines, ordered_pools, pool_figures, pools_report

SCHEMA_VERSION = 2


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _r(value: float, digits: int = 4) -> float:
    return round(value, digits)


def _summary(samples: SampleSet) -> dict[str, float]:
    return {k: _r(v, 3) for k, v in samples.summary().items()}


def machine_kpis(machine: Machine, now: float, baseline: MachineBaseline | None = None) -> dict[str, Any]:
    """The machine's KPIs from ``baseline`` (its state at the warm-up; None: from 0) to ``now``."""
    t = machine_time(machine, now, baseline)
    availability = _ratio(t.running, t.planned)
    performance = min(1.0, _ratio(t.ideal, t.running))
    quality = _ratio(t.good_cycles, t.cycles) if t.cycles else 0.0
    return {
        "location": machine.location,
        "type": machine.machine_type,
        "state": machine.state,
        "utilization": _r(_ratio(t.running, t.scheduled)),
        "availability": _r(availability),
        "performance": _r(performance),
        "quality": _r(quality),
        "oee": _r(availability * performance * quality),
        "cycles": t.cycles,
        "good_cycles": t.good_cycles,
        "running_s": _r(t.running, 1),
        "idle_s": _r(t.idle, 1),
        "blocked_s": _r(t.blocked, 1),
        "maintenance_s": _r(t.maintenance, 1),
        "off_shift_s": _r(t.off_shift, 1),
        "maintenances": t.maintenances,
    }


def pool_utilization(machines: list[Machine], now: float,
                     baselines: dict[str, MachineBaseline] | None = None) -> tuple[float, float]:
    """(running share, running+blocked share) of the machines' scheduled time (from the warm-up when
    ``baselines`` has their states then)."""
    times = [machine_time(m, now, (baselines or {}).get(m.id)) for m in machines]
    scheduled = sum(t.scheduled for t in times)
    running = sum(t.running for t in times)
    busy = running + sum(t.blocked for t in times)
    return _ratio(running, scheduled), _ratio(busy, scheduled)


def _stages(sim: Simulation, figures: dict[tuple[str, str], PoolFigures]) -> dict[str, Any]:
    now, stats, plant = sim.now, sim.stats, sim.plant
    base = stats.machine_baseline
    stages: dict[str, Any] = {}
    for plan in plant.stages:
        st = stats.stages[plan.name]
        by_location: dict[str, Any] = {}
        for loc in sim.config.locations:
            pool = plant.pool(loc, plan.machine_type)
            running_share, busy_share = pool_utilization(pool.machines, now, base)
            waits, processing = st.by_location[loc]
            by_location[loc] = {
                "machines": len(pool.machines),
                "cycles": processing.count,
                "wait_s": _summary(waits),
                "process_s": {"mean": _r(processing.mean, 3)},
                "utilization": _r(running_share),
                "busy": _r(busy_share),
                "queue_length": pool.queue_length,
                "queue_length_mean": _r(figures[(loc, plan.machine_type)].queue_mean, 3),
            }
        all_machines = [m for loc in sim.config.locations for m in plant.pool(loc, plan.machine_type).machines]
        running_share, busy_share = pool_utilization(all_machines, now, base)
        stages[plan.name] = {
            "machine_type": plan.machine_type,
            "cycles": st.process.count,
            "wait_s": _summary(st.wait),
            "process_s": {"mean": _r(st.process.mean, 3)},
            "utilization": _r(running_share),
            "busy": _r(busy_share),
            "by_location": by_location,
        }
    return stages


def _bottleneck(stages: dict[str, Any], figures: list[PoolFigures], observed: float) -> dict[str, Any] | None:
    """The busiest pool (ties: the longer mean wait), with its share of all the waiting, and the stage
    whose pools are busiest overall."""
    if not figures or observed <= 0:
        return None
    pool = max(figures, key=lambda f: (f.busy, f.wait_mean))
    waited = sum(f.queue_area for f in figures)
    stage = max(stages, key=lambda s: (stages[s]["busy"], stages[s]["wait_s"]["mean"]))
    return {
        "stage": stage,
        "stage_busy": stages[stage]["busy"],
        "pool": {"stage": pool.stages[0], "location": pool.location, "machine_type": pool.machine_type,
                 "busy": _r(pool.busy), "utilization": _r(pool.utilization), "mean_wait_s": _r(pool.wait_mean, 3),
                 "queue_share": _r(_ratio(pool.queue_area, waited))},
    }


def build_report(sim: Simulation) -> dict[str, Any]:
    now = sim.now
    stats = sim.stats
    base = stats.machine_baseline
    warm_up = stats.observed_from
    observed = max(0.0, now - warm_up)
    counts = stats.observed()
    figures = pool_figures(sim)
    stages = _stages(sim, {(f.location, f.machine_type): f for f in figures})
    series = {**stats.series.as_dict(now, ordered_pools(sim)), "warm_up_s": _r(warm_up, 3)}
    overloaded = overload(figures, series, warm_up)
    return {
        "schema_version": SCHEMA_VERSION,
        "seed": sim.seed,
        "start_utc": sim.start.isoformat().replace("+00:00", "Z"),
        "sim_duration_s": _r(now, 3),
        "config_fingerprint": config_fingerprint(sim.config),
        "warm_up_s": _r(warm_up, 3),
        "observed_s": _r(observed, 3),
        "lots": {
            "received": counts.received,
            "completed": counts.completed,
            "scrapped": counts.scrapped,
            "in_progress": stats.in_progress,
            "reworks": counts.reworks,
            "by_location": counts.by_location,
        },
        "throughput_per_hour": _r(_ratio(counts.completed, observed / 3600.0)),
        "lead_time_s": _summary(stats.lead_time),
        "lead_time_by_location_s": {k: _summary(v) for k, v in stats.lead_time_by_location.items()},
        "lead_time_by_priority_s": {k: _summary(v) for k, v in stats.lead_time_by_priority.items()},
        "wip": {"mean": _r(stats.wip.mean(now), 3), "max": int(stats.wip.maximum(now)), "final": stats.in_progress},
        "stages": stages,
        "pools": pools_report(figures),
        "machines": {m.id: machine_kpis(m, now, base.get(m.id)) for m in ordered_machines(sim)},
        "bottleneck": _bottleneck(stages, figures, observed),
        "overload": overloaded,
        "steady": not overloaded,
        "assumptions": assumptions(sim),
        "series": series,
    }
