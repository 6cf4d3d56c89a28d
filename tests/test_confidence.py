"""Student t intervals without SciPy agree with SciPy, and cover as they should."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as scipy_stats

from simulator.studies.confidence import interval, paired_difference, t_quantile, welch_difference


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 19, 29, 49, 99, 1000, 2.5, 17.3])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.025, 0.001])
def test_t_quantile_matches_scipy(df: float, p: float) -> None:
    assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-8, abs=1e-10)


def test_interval_matches_the_textbook_formula() -> None:
    values = [3.1, 2.7, 3.9, 3.3, 2.8, 3.6]
    got = interval(values)
    mean, sem = scipy_stats.tmean(values), scipy_stats.sem(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    assert (got.low, got.high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert got.as_dict()["ci95"] == [round(low, 6), round(high, 6)]


def test_one_value_has_no_interval() -> None:
    got = interval([4.0])
    assert not got.defined and got.as_dict()["ci95"] is None and got.mean == 4.0


def test_intervals_cover_a_known_mean_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    trials = 2000
    covered = sum(interval([rng.gauss(10.0, 3.0) for _ in range(8)]).covers(10.0) for _ in range(trials))
    # 99.9 % binomial bounds around 0.95 * 2000
    low, high = scipy_stats.binom.ppf([0.0005, 0.9995], trials, 0.95)
    assert low <= covered <= high


def test_welch_matches_scipy_and_pairing_removes_shared_noise() -> None:
    rng = random.Random(3)
    shared = [rng.gauss(0, 5) for _ in range(10)]
    a = [100 + s + rng.gauss(0, 0.5) for s in shared]
    b = [101 + s + rng.gauss(0, 0.5) for s in shared]
    welch = welch_difference(a, b)
    result = scipy_stats.ttest_ind(b, a, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert (welch.low, welch.high) == (pytest.approx(ci.low, rel=1e-8), pytest.approx(ci.high, rel=1e-8))
    paired = paired_difference(a, b)
    assert paired.half_width < welch.half_width / 3
    assert paired.covers(1.0)
    assert math.isclose(paired.mean, welch.mean)
