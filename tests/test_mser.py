"""MSER-5: it finds a planted initial transient, leaves a stationary series alone and says when a
series is too short to tell."""

from __future__ import annotations

import math
import random
import statistics

from simulator.studies.mser import batch_means, mser5, mser_statistic


def _transient(seed: int, length: int = 2000, tau: float = 40.0) -> list[float]:
    """Starts at 0 and approaches 10 (time constant ``tau``), with standard normal noise."""
    rng = random.Random(seed)
    return [10.0 * (1.0 - math.exp(-t / tau)) + rng.gauss(0.0, 1.0) for t in range(length)]


def _stationary(seed: int, length: int = 2000) -> list[float]:
    """An autocorrelated (AR(1), phi 0.5) series around 5, started in its stationary distribution."""
    rng = random.Random(seed)
    x = rng.gauss(0.0, 1.0 / math.sqrt(1 - 0.25))
    out = []
    for _ in range(length):
        x = 0.5 * x + rng.gauss(0.0, 1.0)
        out.append(5.0 + x)
    return out


def test_the_statistic_is_the_standard_error_rule() -> None:
    rng = random.Random(3)
    values = [rng.random() for _ in range(40)]
    fast = mser_statistic(values)
    for d in range(len(values)):
        kept = values[d:]
        mean = statistics.fmean(kept)
        assert math.isclose(fast[d], sum((v - mean) ** 2 for v in kept) / len(kept) ** 2, rel_tol=1e-9, abs_tol=1e-15)
    assert batch_means([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 5) == [3.0, 8.0]  # the incomplete batch left out


def test_a_planted_transient_is_cut_where_it_ends() -> None:
    for seed in range(50):
        cut = mser5(_transient(seed))
        assert cut.reliable
        # 10·exp(-t/40) falls below the noise (sd 1) around t = 90 and below a tenth of it around t = 180
        assert 60 <= cut.points <= 300, (seed, cut)
        assert cut.points % 5 == 0 and cut.points == cut.batches * 5


def test_a_stationary_series_is_not_truncated() -> None:
    cuts = [mser5(_stationary(seed)) for seed in range(100)]
    assert all(c.reliable for c in cuts)
    assert sum(c.points == 0 for c in cuts) >= 60  # mostly nothing at all
    assert max(c.points for c in cuts) <= 100  # and never more than 5% of the series
    assert mser5([7.0] * 500).points == 0  # a constant series: nothing to remove


def test_a_run_too_short_for_a_steady_state_is_flagged() -> None:
    trend = [t / 10 + random.Random(t).random() for t in range(1000)]  # grows without end (an overloaded queue)
    cut = mser5(trend)
    assert not cut.reliable
    assert cut.batches < cut.batch_count // 2  # the truncation stays in the first half
    short = mser5(_transient(1, length=45))  # 9 batches
    assert not short.reliable
    assert mser5([1.0, 2.0]).batch_count == 0 and mser5([1.0, 2.0]).points == 0
