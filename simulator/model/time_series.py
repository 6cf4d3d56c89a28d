"""Bucketed series over a whole run, with bounded memory: exact time-averages per bucket, not samples.

Simulated time from 0 is cut into buckets of equal width.  The width starts at :data:`BASE_BUCKET_S`
(15 min) and doubles (neighbouring buckets merge) whenever the run reaches :data:`MAX_BUCKETS`
buckets, so a series never holds more than that however long the run, and the width is a function
of the run's length alone: runs of equal length have equal buckets (``15 min × 2^k``: 15 min,
30 min, 1 h, 2 h … 8 h, 16 h …; 2,000 buckets of 15 min cover 20 days).

- :class:`StepSeries`: a level that holds between changes (lots in progress): its exact running
  area (level × seconds) and the highest level held, both from its ``origin`` (0, or the warm-up:
  :meth:`StepSeries.restart`), for the report's means; and per bucket the exact time-average.
- :class:`QueueSeries`: a queue's length as a step series, plus the lots that entered it and the
  waits of those that left it to start service: per bucket their mean wait.

Every series of a run shares one :class:`Grid`.  A series keeps running totals (cumulative area,
lots, waits), which an update only adds to; when simulated time passes a bucket edge, the grid
writes down every series' totals at that edge (the first update at or after it does this), and a
bucket's value is the difference of its two edges' totals.  So an update costs a few additions
however sparse the series, and merging buckets is keeping every other edge.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

BASE_BUCKET_S = 900.0
MAX_BUCKETS = 2000  # even: merging pairs keeps bucket edges aligned


def bucket_width(duration_s: float) -> float:
    """The bucket width of a run of ``duration_s`` simulated seconds."""
    width = BASE_BUCKET_S
    while duration_s >= MAX_BUCKETS * width:
        width *= 2.0
    return width


def bucket_count(duration_s: float) -> int:
    """How many buckets a run of ``duration_s`` has (the last one may be partial)."""
    if duration_s <= 0:
        return 0
    width = bucket_width(duration_s)
    full = int(duration_s // width)
    return full + (1 if duration_s > full * width else 0)


class Grid:
    """The bucket edges shared by the series of a run, and the series' totals at each edge passed:
    ``rows[k]`` holds them at edge ``(k + 1) × width``: each step series' cumulative area (queues
    included), then each queue's sum of waits, then the lots that left each queue to start service
    (in the order the series were made)."""

    __slots__ = ("edge", "queues", "rows", "steps", "width")

    def __init__(self) -> None:
        self.width = BASE_BUCKET_S
        self.edge = BASE_BUCKET_S  # the next edge
        self.rows: list[list[float]] = []
        self.steps: list[StepSeries] = []
        self.queues: list[QueueSeries] = []

    def step_series(self, name: str) -> StepSeries:
        series = StepSeries(self, len(self.steps), name)
        self.steps.append(series)
        return series

    def queue_series(self, name: str) -> QueueSeries:
        series = QueueSeries(self, len(self.steps), name, len(self.queues))
        self.steps.append(series)
        self.queues.append(series)
        return series

    @property
    def layout(self) -> list[str]:
        """The names of the rows' columns."""
        return ([s.name for s in self.steps] + [f"{q.name}.waits" for q in self.queues]
                + [f"{q.name}.started" for q in self.queues])

    def close(self, t: float) -> None:
        """Simulated time reached ``t`` (at or past the next edge): write down every series' totals at
        each edge up to ``t`` (before anything at ``t`` happens: a value at an edge counts after it)."""
        rows, steps, queues = self.rows, self.steps, self.queues
        while t >= self.edge:
            edge = self.edge
            rows.append([s.cum + s.level * (edge - s.since) for s in steps] + [q.wait_sum for q in queues]
                        + [q.entered - q.level for q in queues])
            if len(rows) >= MAX_BUCKETS:
                rows[:] = rows[1::2]
                self.width *= 2.0
            self.edge = (len(rows) + 1) * self.width

    def column(self, index: int) -> list[float]:
        """The totals at every edge passed of column ``index``."""
        return [row[index] for row in self.rows]

    def restore(self, width: float, rows: list[list[float]]) -> None:
        self.width = width
        self.rows = rows
        self.edge = (len(rows) + 1) * width


class StepSeries:
    """A level over time (see the module's docstring).  The highest level is that of the levels held
    for some positive time (a level that changes again at the same instant was never held)."""

    __slots__ = ("column", "cum", "grid", "level", "max", "name", "origin", "origin_cum", "since")

    def __init__(self, grid: Grid, column: int, name: str) -> None:
        self.grid = grid
        self.column = column  # in the grid's rows
        self.name = name
        self.level = 0.0
        self.since = 0.0  # when the level was set
        self.cum = 0.0  # level × seconds from 0 to since
        self.origin = 0.0  # the running statistics count from here
        self.origin_cum = 0.0  # cum at the origin
        self.max = 0.0  # the highest level held since the origin (before since)

    def set(self, t: float, level: float) -> None:
        """The level is ``level`` from ``t`` on (``t`` not before the last change)."""
        if t >= self.grid.edge:
            self.grid.close(t)
        held = t - self.since
        if held > 0.0:
            prev = self.level
            self.cum += prev * held
            if prev > self.max:
                self.max = prev
            self.since = t
        self.level = level

    def restart(self, t: float) -> None:
        """The running statistics count from ``t`` on (the buckets go on)."""
        self.set(t, self.level)
        self.origin = t
        self.origin_cum = self.cum
        self.max = 0.0

    # -- views at ``now`` (nothing changes) ---------------------------------------------------------
    def total_area(self, now: float) -> float:
        """Level × seconds from the origin to ``now``."""
        return self.cum + self.level * (now - self.since) - self.origin_cum

    def mean(self, now: float) -> float:
        """Time-average from the origin to ``now`` (0 over no time)."""
        span = now - self.origin
        return self.total_area(now) / span if span > 0 else 0.0

    def maximum(self, now: float) -> float:
        return max(self.max, self.level) if now > self.since else self.max

    def averages(self, now: float) -> list[float]:
        """The time-average of every bucket from 0 to ``now`` (the last one over its covered part)."""
        edges, width = _edges_to(now, self.grid, self.grid.column(self.column),
                                 lambda edge: self.cum + self.level * (edge - self.since))
        result = [area / width for area in _differences(edges)]
        start = len(edges) * width
        if now > start:
            result.append((self.cum + self.level * (now - self.since) - (edges[-1] if edges else 0.0))
                          / (now - start))
        return result


class QueueSeries(StepSeries):
    """A queue: its length (the level), the lots that entered it (served at once or queued) and the
    waits of those that left it to start service; the lots that started service are those that
    entered less those still queued.  Its owner updates it (:class:`simulator.model.pool.MachinePool`,
    inline, as this runs for every lot and stage): as a lot comes, the grid is brought up to now and
    ``entered`` counts it, and when it queues ``set`` gives the new length; as a queued lot leaves,
    ``set`` gives the length and ``wait_sum`` takes its wait (a lot served at once waited 0)."""

    __slots__ = ("entered", "index", "origin_entered", "wait_sum")

    def __init__(self, grid: Grid, column: int, name: str, index: int) -> None:
        super().__init__(grid, column, name)
        self.index = index  # among the grid's queues
        self.entered = 0  # lots that entered, from 0
        self.origin_entered = 0  # at the origin
        self.wait_sum = 0.0  # of the lots that left it

    def restart(self, t: float) -> None:
        super().restart(t)
        self.origin_entered = self.entered

    def entered_since_origin(self) -> int:
        return self.entered - self.origin_entered

    def waits(self, now: float) -> list[float | None]:
        """The mean wait of the lots that started service in every bucket from 0 to ``now`` (None:
        none started in it)."""
        grid = self.grid
        first = len(grid.steps) + self.index
        sums, width = _edges_to(now, grid, grid.column(first), lambda _: self.wait_sum)
        started, _ = _edges_to(now, grid, grid.column(first + len(grid.queues)),
                               lambda _: self.entered - self.level)
        result: list[float | None] = [
            s / n if n else None for s, n in zip(_differences(sums), _differences(started), strict=True)]
        if now > len(sums) * width:
            n = self.entered - self.level - (started[-1] if started else 0)
            result.append((self.wait_sum - (sums[-1] if sums else 0.0)) / n if n else None)
        return result


def _edges_to(now: float, grid: Grid, edges: list[float],
              at: Callable[[float], float]) -> tuple[list[float], float]:
    """``edges`` (a copy of a series' totals at the edges passed) carried on to every edge up to ``now``,
    with ``at(edge)`` the totals at the edges the grid has not passed yet; and the bucket width then."""
    width = grid.width
    edge = grid.edge
    while now >= edge:
        edges.append(at(edge))
        if len(edges) >= MAX_BUCKETS:
            edges[:] = edges[1::2]
            width *= 2.0
        edge = (len(edges) + 1) * width
    return edges, width


def _differences(totals: list[float]) -> list[float]:
    """Per bucket: the totals at its end minus those at its start (0 at time 0)."""
    return totals[:1] + [b - a for a, b in pairwise(totals)]
