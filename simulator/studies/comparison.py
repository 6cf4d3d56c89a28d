"""Scenarios compared pairwise: the 95 % interval of the difference of each KPI (b − a).

With common random numbers, replication i of every scenario ran on the same seed, so the pairs
(a[i], b[i]) share their arrivals and processing times and the difference is estimated from the
per-replication differences (a paired t interval): what the two plants have in common cancels
out, and the interval is much narrower than two independent samples would give.  Without them
the samples are independent and the interval is Welch's.  When two scenarios ran different
numbers of replications (precision mode), a paired interval uses the replications both have (the
same seeds).  A difference is *significant* when its interval excludes 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from simulator.studies.confidence import Interval, interval, paired_difference, welch_difference

ALL_PAIRS_UP_TO = 4  # with this many scenarios or fewer, every pair is compared, else each against the first


def pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every scenario against the first; every pair as well when there are at most four."""
    if len(names) <= ALL_PAIRS_UP_TO:
        return list(itertools.combinations(names, 2))
    return [(names[0], other) for other in names[1:]]


def difference(a: Sequence[float], b: Sequence[float], *, paired: bool) -> Interval:
    """The interval of mean(b) − mean(a)."""
    if paired:
        common = min(len(a), len(b))
        return paired_difference(a[:common], b[:common])
    if len(a) < 2 or len(b) < 2:  # no interval: the difference of the means alone
        return interval([sum(b) / len(b) - sum(a) / len(a)])
    return welch_difference(a, b)


def compare(results: Mapping[str, Mapping[str, Any]], kpis: Sequence[str], *, paired: bool) -> list[dict[str, Any]]:
    """The comparisons of the study JSON: for each pair of scenarios (in ``results`` order: name ->
    replicated summary) and each KPI, the difference b − a with its interval."""
    found: list[dict[str, Any]] = []
    for a, b in pairs(list(results)):
        for kpi in kpis:
            left, right = results[a]["kpis"].get(kpi), results[b]["kpis"].get(kpi)
            if left is None or right is None:
                continue
            diff = difference(left["values"], right["values"], paired=paired)
            mean_a = float(left["mean"])
            found.append({
                "a": a, "b": b, "kpi": kpi,
                "a_mean": left["mean"], "b_mean": right["mean"],
                "difference": diff.as_dict(),
                "paired": paired,
                "significant": diff.defined and (diff.low > 0 or diff.high < 0),
                "relative": round((float(right["mean"]) - mean_a) / mean_a, 6) if mean_a else None,
            })
    return found
