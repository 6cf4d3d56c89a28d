"""KPI collection during a run: counts, sample sets, exact running statistics and bucketed series.

Sample sets keep every value by default (offline runs); a long-running service bounds them
with a deterministic reservoir so memory stays flat.  Work in progress and every pool's queue are
:class:`~simulator.model.time_series.StepSeries`: exact time-weighted running statistics (area and
maximum, updated at every change) and, separately, bucketed time-averages for charts.

A warm-up (:meth:`Statistics.restart`) makes the statistics count from that instant: sample sets
and running statistics start again, and the counters and machine KPIs are read as differences from
a baseline taken then (the counters themselves keep counting the whole run: the driver and the
progress bar count lots with them).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from machines.base import MachineState
from simulator.config.plant import PRIORITIES
from simulator.model.time_series import Grid, QueueSeries, StepSeries, bucket_width

if TYPE_CHECKING:
    from collections.abc import Iterable

    from simulator.model.machine import Machine


class SampleSet:
    """Count, mean and max of every value, plus the values (or a reservoir of them)."""

    __slots__ = ("count", "limit", "max", "rng", "total", "values")

    def __init__(self, limit: int | None = None, rng: random.Random | None = None) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.values: list[float] = []
        self.limit = limit
        self.rng = rng

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if self.limit is None or len(self.values) < self.limit:
            self.values.append(value)
        else:
            assert self.rng is not None
            slot = self.rng.randrange(self.count)
            if slot < self.limit:
                self.values[slot] = value

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """Linear-interpolated quantile of the kept values (0 when empty)."""
        if not self.values:
            return 0.0
        return quantile(sorted(self.values), q)

    def summary(self) -> dict[str, float]:
        return {"mean": self.mean, "p50": self.quantile(0.5), "p95": self.quantile(0.95), "max": self.max}


def quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (0 when empty)."""
    if not ordered:
        return 0.0
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(slots=True)
class StageStats:
    wait: SampleSet
    process: SampleSet
    by_location: dict[str, tuple[SampleSet, SampleSet]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunSeries:
    """The bucketed series of a run, from time 0 (the warm-up included): work in progress, and per pool
    (location, machine type) its queue length and the waits of lots as they started service."""

    wip: StepSeries
    pools: dict[tuple[str, str], QueueSeries]

    def as_dict(self, now: float, pools: Iterable[tuple[str, str]], digits: int = 4) -> dict[str, Any]:
        """``{bucket_s, wip, pools: {location: {machine_type: {queue_length, wait_s}}}}`` up to ``now``,
        for the pools ``pools`` in that order (values rounded to ``digits``)."""
        out: dict[str, dict[str, Any]] = {}
        for loc, mtype in pools:
            queue = self.pools[(loc, mtype)]
            out.setdefault(loc, {})[mtype] = {
                "queue_length": [round(v, digits) for v in queue.averages(now)],
                "wait_s": [None if v is None else round(v, digits) for v in queue.waits(now)],
            }
        return {"bucket_s": bucket_width(now), "wip": [round(v, digits) for v in self.wip.averages(now)],
                "pools": out}


@dataclass(slots=True)
class MachineBaseline:
    """A machine's time accounting and counters at the warm-up: its KPIs are the differences."""

    at: float
    times: dict[str, float]  # seconds spent in each state up to ``at``
    cycles: int
    good_cycles: int
    good_pieces: int
    bad_pieces: int
    ideal_s: float
    maintenances: int

    @classmethod
    def of(cls, machine: Machine, now: float) -> MachineBaseline:
        return cls(now, {state.value: machine.time_in(state, now) for state in MachineState},
                   machine.cycles, machine.good_cycles, machine.good_pieces, machine.bad_pieces,
                   machine.ideal_time_s, len(machine.maintenance_log))


@dataclass(slots=True)
class Counts:
    """Lot counters: those at the warm-up (the baseline), or those since it (:meth:`Statistics.observed`)."""

    received: int = 0
    completed: int = 0
    scrapped: int = 0
    reworks: int = 0
    by_location: dict[str, dict[str, int]] = field(default_factory=dict)


class Statistics:
    """Everything the reports need, updated by the model's processes."""

    def __init__(self, stages: list[str], locations: list[str], *, sample_limit: int | None,
                 rng: random.Random, pools: Iterable[tuple[str, str]] = ()) -> None:
        """``pools``: the (location, machine type) of every pool: each gets its queue's series."""
        self._sample_limit = sample_limit
        self._rng = rng
        self._stage_names = stages
        self._locations = locations
        # counters over the whole run (the report subtracts ``base``, the counts at the warm-up)
        self.received = 0
        self.completed = 0
        self.scrapped = 0
        self.reworks = 0
        self.by_location = {loc: {"received": 0, "completed": 0, "scrapped": 0} for loc in locations}
        self.base = Counts(by_location={loc: dict(counts) for loc, counts in self.by_location.items()})
        self._new_samples()
        self.grid = Grid()  # the buckets of every series
        self.wip = self.grid.step_series("wip")  # lots in progress
        self.pools = {key: self.grid.queue_series(f"queue {' '.join(key)}") for key in pools}
        self.series = RunSeries(self.wip, self.pools)
        self.warm_up_s = 0.0  # requested: statistics count from this instant once it comes
        self.observed_from = 0.0  # when they count from (the warm-up, once it came)
        self.machine_baseline: dict[str, MachineBaseline] = {}
        self.last_event_time = 0.0

    def _new_samples(self) -> None:
        limit, rng, locations = self._sample_limit, self._rng, self._locations

        def samples() -> SampleSet:
            return SampleSet(limit, rng)

        self.lead_time = samples()
        self.lead_time_by_location = {loc: samples() for loc in locations}
        self.lead_time_by_priority = {p: samples() for p in PRIORITIES}
        self.stages = {
            name: StageStats(samples(), samples(), {loc: (samples(), samples()) for loc in locations})
            for name in self._stage_names
        }

    @property
    def in_progress(self) -> int:
        return self.received - self.completed - self.scrapped

    def lot_received(self, now: float, location: str) -> None:
        self.received += 1
        self.by_location[location]["received"] += 1
        self.wip.set(now, self.received - self.completed - self.scrapped)

    def lot_finished(self, now: float, location: str, priority: str, lead_time: float, *,
                     scrapped: bool) -> None:
        if scrapped:
            self.scrapped += 1
            self.by_location[location]["scrapped"] += 1
        else:
            self.completed += 1
            self.by_location[location]["completed"] += 1
            self.lead_time.add(lead_time)
            self.lead_time_by_location[location].add(lead_time)
            self.lead_time_by_priority[priority].add(lead_time)
        self.last_event_time = now
        self.wip.set(now, self.received - self.completed - self.scrapped)

    def stage_done(self, stage: str, location: str, waited: float, processed: float) -> None:
        stats = self.stages[stage]
        stats.wait.add(waited)
        stats.process.add(processed)
        wait_loc, process_loc = stats.by_location[location]
        wait_loc.add(waited)
        process_loc.add(processed)

    # -- warm-up ----------------------------------------------------------------------------------
    def restart(self, now: float, machines: Iterable[Machine]) -> None:
        """Count from ``now`` on: what happened before is the warm-up (the series keep it)."""
        self.observed_from = now
        self.base = Counts(self.received, self.completed, self.scrapped, self.reworks,
                           {loc: dict(counts) for loc, counts in self.by_location.items()})
        self._new_samples()
        self.wip.restart(now)
        for queue in self.pools.values():
            queue.restart(now)
        self.machine_baseline = {m.id: MachineBaseline.of(m, now) for m in machines}

    def observed(self) -> Counts:
        """The lot counters since the warm-up."""
        base = self.base
        return Counts(self.received - base.received, self.completed - base.completed,
                      self.scrapped - base.scrapped, self.reworks - base.reworks,
                      {loc: {key: n - base.by_location.get(loc, {}).get(key, 0) for key, n in counts.items()}
                       for loc, counts in self.by_location.items()})
