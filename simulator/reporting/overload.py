"""Overload: a pool that gets more work than it can do has a queue that grows without bound, and then
the run's means of lead time and WIP say how long the run was, not how the plant behaves.

Rule: a pool is overloaded when its ``load`` (see :mod:`simulator.reporting.pools`) is at least 1, or at
least 0.95 while its queue grows: the mean queue length over the last quarter of the observed period
exceeds that over the second quarter by more than 10 lots and by more than 50 % (from the bucketed
series; the first quarter is left out as the queue may still be filling).  The growth per hour is that
difference over the time between the two quarters' middles.
"""

from __future__ import annotations

import math
from typing import Any

from simulator.reporting.pools import PoolFigures

LOAD_LIMIT = 1.0
GROWING_LOAD = 0.95
GROWTH_LOTS = 10.0
GROWTH_SHARE = 0.5
MIN_BUCKETS = 8  # fewer observed buckets: the queue's growth is not judged


def queue_growth(lengths: list[float], bucket_s: float, first: int) -> tuple[float, float] | None:
    """(mean queue length of the second quarter, of the last) of the buckets from ``first`` on (the
    observed ones), or None when they are too few."""
    observed = lengths[first:]
    n = len(observed)
    if n < MIN_BUCKETS:
        return None
    second, last = observed[n // 4: n // 2], observed[3 * n // 4:]
    return sum(second) / len(second), sum(last) / len(last)


def growth_per_hour(lengths: list[float], bucket_s: float, first: int) -> float | None:
    quarters = queue_growth(lengths, bucket_s, first)
    if quarters is None:
        return None
    n = len(lengths) - first
    middles_apart_h = ((3 * n // 4 + n) / 2 - (n // 4 + n // 2) / 2) * bucket_s / 3600.0
    return (quarters[1] - quarters[0]) / middles_apart_h


def grows(lengths: list[float], bucket_s: float, first: int) -> bool:
    quarters = queue_growth(lengths, bucket_s, first)
    if quarters is None:
        return False
    second, last = quarters
    return last - second > GROWTH_LOTS and last > second * (1 + GROWTH_SHARE)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def overload(figures: list[PoolFigures], series: dict[str, Any], warm_up_s: float) -> list[dict[str, Any]]:
    """The overloaded pools (empty when every pool keeps up), each with the numbers and one sentence."""
    bucket_s = series["bucket_s"]
    first = math.ceil(warm_up_s / bucket_s) if bucket_s > 0 else 0
    found = []
    for f in figures:
        lengths = series["pools"][f.location][f.machine_type]["queue_length"]
        load = f.load
        growing = grows(lengths, bucket_s, first)
        if not (load is None or load >= LOAD_LIMIT or (load >= GROWING_LOAD and growing)):
            continue
        growth = growth_per_hour(lengths, bucket_s, first)
        found.append({
            "location": f.location, "machine_type": f.machine_type, "stages": f.stages, "machines": f.machines,
            "arrivals_per_hour": round(f.arrivals_per_hour, 4), "mean_process_s": round(f.process_mean, 3),
            "available_share": round(f.available_share, 4), "offered_load": round(f.offered_load, 4),
            "load": None if load is None else round(load, 4),
            "queue_growth_per_hour": None if growth is None else round(growth, 3),
            "message": _message(f, load, growth),
        })
    return found


def _message(f: PoolFigures, load: float | None, growth: float | None) -> str:
    work = (f"{f.location} {f.machine_type}: {f.arrivals_per_hour:.2f} lots/h × {_duration(f.process_mean)} = "
            f"{f.offered_load:.2f} machines of work for {f.machines} machine{'s' if f.machines != 1 else ''}")
    if load is None:
        head = f"{work} that cannot work at all"
    else:
        head = f"{work} ({f.available_share:.0%} available): load {load:.2f}"
    trend = (f"the queue grows by {growth:.1f} lots/h and never settles" if growth is not None and growth > 0
             else "more work comes than the pool can do, so its queue grows without bound")
    return f"{head} — {trend}; lead time and WIP means depend on the run length, not the plant"
