"""Confidence intervals of the Student t kind, without SciPy: the t distribution's quantile is found
by bisection on its CDF, computed through the regularised incomplete beta function (Lentz's
continued fraction).  Accurate to about 1e-10, checked against SciPy in the tests.

Used for a KPI over independent replications (:func:`interval`), the paired difference of two
scenarios run with common random numbers (:func:`paired_difference`) and the difference of two
independent samples (:func:`welch_difference`, Welch–Satterthwaite degrees of freedom).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` (> 0) degrees of freedom."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True, slots=True)
class Interval:
    """Mean, standard deviation and the two-sided confidence interval of a sample of ``n`` values
    (half-width 0 and no interval worth the name when ``n`` < 2: ``defined`` is False)."""

    n: int
    mean: float
    sd: float
    half_width: float
    df: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def defined(self) -> bool:
        return self.n >= 2 and math.isfinite(self.half_width)

    @property
    def relative_half_width(self) -> float:
        """Half-width as a share of the mean's magnitude (inf when the mean is 0 and the width not)."""
        if self.half_width == 0.0:
            return 0.0
        return self.half_width / abs(self.mean) if self.mean else math.inf

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_dict(self, digits: int = 6) -> dict[str, object]:
        return {"n": self.n, "mean": round(self.mean, digits), "sd": round(self.sd, digits),
                "ci95": [round(self.low, digits), round(self.high, digits)] if self.defined else None,
                "half_width": round(self.half_width, digits) if self.defined else None}


@functools.lru_cache(maxsize=4096)  # the same few (df, level) for thousands of intervals (a series' buckets)
def _t(df: float, level: float) -> float:
    return t_quantile(0.5 + level / 2.0, df)


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The Student t interval of the mean of independent, identically distributed ``values``."""
    n = len(values)
    if n == 0:
        raise ValueError("an interval needs at least one value")
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(1, mean, 0.0, math.inf, 0.0)
    sd = statistics.stdev(values)
    return Interval(n, mean, sd, _t(n - 1, level) * sd / math.sqrt(n), float(n - 1))


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """The interval of mean(b − a) from pairs (a[i], b[i]) that share their random numbers."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same count, got {len(a)} and {len(b)}")
    return interval([y - x for x, y in zip(a, b, strict=True)], level)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """The interval of mean(b) − mean(a) from two independent samples (Welch's t)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's interval needs at least two values on each side")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    mean = statistics.fmean(b) - statistics.fmean(a)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(len(a) + len(b), mean, 0.0, 0.0, float(len(a) + len(b) - 2))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return Interval(len(a) + len(b), mean, se * math.sqrt(len(a) + len(b)), _t(df, level) * se, df)
