"""The report's pools (one per location and machine type a route stage uses): how their machines spent
the observed time, their queues, and the load the lots put on them.

``load`` is the work that came (lots that entered × their mean processing time, in machines kept
busy) over the machines' capacity (machines × the share of time they could work: not off shift, in
maintenance or blocked).  At 1 or more the pool cannot keep up: see :mod:`simulator.reporting.overload`.

One machine order everywhere in the report (:func:`ordered_pools`): locations in config order, then
machine types in route order (types no stage uses after them), then the machines of a pool by number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.model.machine import Machine
from simulator.model.simulation import Simulation
from simulator.model.statistics import SampleSet, quantile
from simulator.reporting.machine_time import MachineTime, machine_time

STATES = ("running", "blocked", "maintenance", "idle", "off_shift")


def type_order(sim: Simulation, location: str) -> list[str]:
    """The machine types of ``location``: those of the route in route order, then the others in config order."""
    route = list(dict.fromkeys(plan.machine_type for plan in sim.plant.stages))
    present = sim.config.locations[location].machines
    return [t for t in route if t in present] + [t for t in present if t not in route]


def ordered_machines(sim: Simulation) -> list[Machine]:
    """Every machine in the report's order."""
    return [m for loc in sim.config.locations for mtype in type_order(sim, loc)
            for m in sim.plant.pool(loc, mtype).machines]


def ordered_pools(sim: Simulation) -> list[tuple[str, str]]:
    """The pools lots go through, (location, machine type), in the report's order."""
    route = {plan.machine_type for plan in sim.plant.stages}
    return [(loc, mtype) for loc in sim.config.locations for mtype in type_order(sim, loc) if mtype in route]


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """One pool over the observed period (times in machine-seconds)."""

    location: str
    machine_type: str
    stages: list[str]
    machines: int
    observed: float
    times: dict[str, float]  # machine-seconds in each of STATES
    entered: int
    process_mean: float
    wait_mean: float
    wait_p95: float
    queue_mean: float
    queue_max: float
    queue_final: int
    queue_area: float  # lot-seconds waited in the queue (the sum of the waits) over the observed period

    @property
    def scheduled(self) -> float:
        return sum(self.times.values()) - self.times["off_shift"]

    @property
    def utilization(self) -> float:
        return _ratio(self.times["running"], self.scheduled)

    @property
    def busy(self) -> float:
        return _ratio(self.times["running"] + self.times["blocked"], self.scheduled)

    @property
    def available_share(self) -> float:
        """The share of the observed time a machine could work, on average."""
        total = sum(self.times.values())
        lost = self.times["off_shift"] + self.times["maintenance"] + self.times["blocked"]
        return _ratio(total - lost, total)

    @property
    def arrivals_per_hour(self) -> float:
        return _ratio(self.entered, self.observed / 3600.0)

    @property
    def offered_load(self) -> float:
        """Machines kept busy on average by the work that came."""
        return self.arrivals_per_hour * self.process_mean / 3600.0

    @property
    def load(self) -> float | None:
        """Offered load over capacity (None: no capacity at all)."""
        capacity = self.machines * self.available_share
        if capacity <= 0:
            return None if self.offered_load > 0 else 0.0
        return self.offered_load / capacity


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _waits(samples: list[SampleSet]) -> tuple[float, float]:
    """Mean and p95 of the waits of several sample sets together."""
    count = sum(s.count for s in samples)
    mean = _ratio(sum(s.total for s in samples), count)
    if len(samples) == 1:
        return mean, samples[0].quantile(0.95)
    return mean, quantile(sorted(v for s in samples for v in s.values), 0.95)


def pool_figures(sim: Simulation) -> list[PoolFigures]:
    """Every pool lots go through, in the report's order."""
    now, stats = sim.now, sim.stats
    observed = max(0.0, now - stats.observed_from)
    figures = []
    for loc, mtype in ordered_pools(sim):
        pool = sim.plant.pool(loc, mtype)
        stages = [plan.name for plan in sim.plant.stages if plan.machine_type == mtype]
        times = dict.fromkeys(STATES, 0.0)
        for machine in pool.machines:
            t: MachineTime = machine_time(machine, now, stats.machine_baseline.get(machine.id))
            for state in STATES:
                times[state] += getattr(t, state)
        waits = [stats.stages[s].by_location[loc][0] for s in stages]
        processes = [stats.stages[s].by_location[loc][1] for s in stages]
        cycles = sum(p.count for p in processes)
        process_mean = _ratio(sum(p.total for p in processes), cycles) if cycles else \
            _configured_mean(sim, stages)
        wait_mean, wait_p95 = _waits(waits)
        queue = stats.pools[(loc, mtype)]
        figures.append(PoolFigures(
            location=loc, machine_type=mtype, stages=stages, machines=len(pool.machines), observed=observed,
            times=times, entered=queue.entered - queue.origin_entered, process_mean=process_mean,
            wait_mean=wait_mean, wait_p95=wait_p95, queue_mean=queue.mean(now), queue_max=queue.maximum(now),
            queue_final=pool.queue_length, queue_area=queue.total_area(now),
        ))
    return figures


def _configured_mean(sim: Simulation, stages: list[str]) -> float:
    """The configured mean processing time of the pool's stages (before any cycle was done)."""
    arrivals = sim.config.arrivals
    quantity = (arrivals.quantity_min + arrivals.quantity_max) / 2
    means = [sim.config.mean_process_time_of(stage, quantity) for stage in sim.config.route if stage.name in stages]
    return sum(means) / len(means) if means else 0.0


def pools_report(figures: list[PoolFigures]) -> dict[str, dict[str, Any]]:
    """``pools``: {location: {machine type: {...}}}."""
    out: dict[str, dict[str, Any]] = {}
    for f in figures:
        total = sum(f.times.values())
        load = f.load
        out.setdefault(f.location, {})[f.machine_type] = {
            "stages": f.stages,
            "machines": f.machines,
            "utilization": round(f.utilization, 4),
            "busy": round(f.busy, 4),
            "states": {state: round(_ratio(f.times[state], total), 4) for state in STATES},
            "state_hours": {state: round(f.times[state] / 3600.0, 3) for state in STATES},
            "queue_length_mean": round(f.queue_mean, 3),
            "queue_length_max": int(f.queue_max),
            "queue_length_final": f.queue_final,
            "wait_s": {"mean": round(f.wait_mean, 3), "p95": round(f.wait_p95, 3)},
            "arrivals_per_hour": round(f.arrivals_per_hour, 4),
            "mean_process_s": round(f.process_mean, 3),
            "available_share": round(f.available_share, 4),
            "offered_load": round(f.offered_load, 4),
            "load": None if load is None else round(load, 4),
        }
    return out
