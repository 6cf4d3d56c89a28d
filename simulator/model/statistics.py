"""KPI collection during a run: counts, sample sets, WIP over time, machine timeline.

Sample sets keep every value by default (offline runs); a long-running service bounds them
with a deterministic reservoir so memory stays flat.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from simulator.config.plant import PRIORITIES


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
        ordered = sorted(self.values)
        pos = q * (len(ordered) - 1)
        low = math.floor(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    def summary(self) -> dict[str, float]:
        return {"mean": self.mean, "p50": self.quantile(0.5), "p95": self.quantile(0.95), "max": self.max}


@dataclass(slots=True)
class StageStats:
    wait: SampleSet
    process: SampleSet
    by_location: dict[str, tuple[SampleSet, SampleSet]] = field(default_factory=dict)


class Statistics:
    """Everything the reports need, updated by the model's processes."""

    def __init__(self, stages: list[str], locations: list[str], *, sample_limit: int | None,
                 rng: random.Random, max_wip_points: int = 20_000) -> None:
        def samples() -> SampleSet:
            return SampleSet(sample_limit, rng)

        self.received = 0
        self.completed = 0
        self.scrapped = 0
        self.reworks = 0
        self.by_location = {loc: {"received": 0, "completed": 0, "scrapped": 0} for loc in locations}
        self.lead_time = samples()
        self.lead_time_by_location = {loc: samples() for loc in locations}
        self.lead_time_by_priority = {p: samples() for p in PRIORITIES}
        self.stages = {
            name: StageStats(samples(), samples(), {loc: (samples(), samples()) for loc in locations})
            for name in stages
        }
        self.wip: list[tuple[float, int]] = [(0.0, 0)]
        self.max_wip_points = max_wip_points
        self._wip_stride = 1
        self._wip_skipped = 0
        self.last_event_time = 0.0

    @property
    def in_progress(self) -> int:
        return self.received - self.completed - self.scrapped

    def lot_received(self, now: float, location: str) -> None:
        self.received += 1
        self.by_location[location]["received"] += 1
        self._record_wip(now)

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
        self._record_wip(now)

    def stage_done(self, stage: str, location: str, waited: float, processed: float) -> None:
        stats = self.stages[stage]
        stats.wait.add(waited)
        stats.process.add(processed)
        wait_loc, process_loc = stats.by_location[location]
        wait_loc.add(waited)
        process_loc.add(processed)

    def _record_wip(self, now: float) -> None:
        self._wip_skipped += 1
        if self._wip_skipped < self._wip_stride:
            return
        self._wip_skipped = 0
        self.wip.append((now, self.in_progress))
        if len(self.wip) > self.max_wip_points:  # thin out: keep every other point, sample half as often
            self.wip = self.wip[::2]
            self._wip_stride *= 2
