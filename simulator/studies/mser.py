"""MSER-5: where the initial transient of an output series ends.

The Marginal Standard Error Rule (White, 1997, "An effective truncation heuristic for bias reduction
in simulation output", Simulation 69(6); the batched variant MSER-5 from White, Cobb & Spratt, 2000,
recommended by Hoad, Robinson & Davies, 2010, "Automating warm-up length estimation", JORS 61(9))
picks the truncation point that minimises the standard error of the mean of what is kept:
the series is averaged in batches of 5, and for every candidate truncation d (batches dropped)

    MSER(d) = sum_{j > d} (b_j - mean_{j > d} b)^2 / (k - d)^2

where b_1..b_k are the batch means.  Dropping the transient removes values far from the
steady-state mean faster than it shrinks the sample, so MSER falls until the transient is gone.
The statistic turns unreliable towards the end of the series (few batches left), so the truncation
is looked for in the first half only; when the overall minimum lies in the second half the run is
too short to say where the transient ends (:attr:`Truncation.reliable` is False).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BATCH = 5
MIN_BATCHES = 10  # below this the rule has too little to go on
TAIL_BATCHES = 5  # the statistic is not looked at with fewer batches left


@dataclass(frozen=True, slots=True)
class Truncation:
    """``batches`` dropped (of ``batch_count``), i.e. ``points`` values of the series; ``reliable``
    is False when the series is too short (fewer than :data:`MIN_BATCHES` batches) or the MSER
    minimum lies in its second half."""

    batches: int
    batch_count: int
    points: int
    reliable: bool


def batch_means(series: Sequence[float], size: int = BATCH) -> list[float]:
    """Means of consecutive batches of ``size`` values (an incomplete last batch is left out)."""
    count = len(series) // size
    return [sum(series[i * size:(i + 1) * size]) / size for i in range(count)]


def mser_statistic(values: Sequence[float]) -> list[float]:
    """MSER(d) for d = 0 .. len(values) - 1 (computed from the end in one pass)."""
    n = len(values)
    result = [0.0] * n
    total = square = 0.0
    for d in range(n - 1, -1, -1):
        total += values[d]
        square += values[d] * values[d]
        kept = n - d
        result[d] = max(0.0, square - total * total / kept) / (kept * kept)
    return result


def mser5(series: Sequence[float], batch: int = BATCH) -> Truncation:
    """The MSER-5 truncation of ``series`` (e.g. the WIP averaged over equal time buckets)."""
    means = batch_means(series, batch)
    k = len(means)
    if k < 2:
        return Truncation(0, k, 0, False)
    stat = mser_statistic(means)
    last = max(0, k - TAIL_BATCHES) if k > TAIL_BATCHES else k - 2
    best = min(range(last + 1), key=lambda d: (stat[d], d))
    half = max(1, k // 2)
    chosen = best if best < half else min(range(half), key=lambda d: (stat[d], d))
    return Truncation(chosen, k, chosen * batch, reliable=k >= MIN_BATCHES and best < half)
