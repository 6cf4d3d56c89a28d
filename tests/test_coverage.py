"""The confidence intervals of replications mean what they say.

On queueing networks whose mean lead time is known exactly (an M/M/2 station, and a tandem of an
M/M/2 and an M/M/1 station: by Burke's theorem the second sees Poisson arrivals, so the mean lead time
is the sum of the stations' Erlang C waits and service means), many independent studies are run
through the replications API, and the share of their 95% intervals that cover the theoretical mean
must be consistent with 95% (a two-sided 99.9% binomial acceptance region).  And the warm-up matters:
on a loaded plant started empty and run briefly, the estimates without warm-up are biased low
(significantly), with ``auto`` (MSER-5) the bias is not significant any more.

Sizes are chosen to keep each test within about a minute on one core (the studies run with one job:
the test runner already uses the cores).
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Literal

import pytest
from scipy import stats as scipy_stats

from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.studies.confidence import interval, welch_difference
from simulator.studies.replications import RunLength, WarmUp, run_replications
from simulator.studies.runs import Runner

HOUR = 3600.0


def erlang_c_wait(arrival_rate: float, service_mean: float, servers: int) -> float:
    """Mean time in queue of an M/M/c queue."""
    a = arrival_rate * service_mean
    rho = a / servers
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / (math.factorial(servers) * (1 - rho))
    return tail / (head + tail) / (servers / service_mean - arrival_rate)


def network(per_hour: float, stations: list[tuple[str, float, int]]) -> tuple[Config, float]:
    """A tandem of exponential stations (machine type, service mean in s, machines), Poisson arrivals,
    first come first served, no disruptions; and its theoretical mean lead time."""
    config = parse({
        "locations": {"A": {"timezone": "UTC", "machines": {t: c for t, _, c in stations}}},
        "route": [{"name": f"s{i}", "machine_type": t, "processing_time": {"distribution": "exponential", "mean": m}}
                  for i, (t, m, _) in enumerate(stations)],
        "arrivals": {"rate_per_hour": per_hour, "process": "poisson", "priority_mix": {"normale": 1}},
        "telemetry": {"cycle_records": False, "lot_events": False},
        "disruptions": {"block_probability": 0.0},
    }, environ={})
    rate = per_hour / HOUR
    return config, sum(erlang_c_wait(rate, mean, servers) + mean for _, mean, servers in stations)


def lead_time_means(config: Config, *, studies: int, replications: int, until_s: float,
                    warm_up: WarmUp, seed: int) -> list[list[float]]:
    """The replications' mean lead times of each of ``studies`` independent studies."""
    out = []
    with Runner(1) as runner:
        for k in range(studies):
            replicated = run_replications(config, seed=seed + k, count=replications, length=RunLength(until_s=until_s),
                                          warm_up=warm_up, runner=runner)
            out.append([r["lead_time_s"]["mean"] for r in replicated.reports])
    return out


def acceptance(studies: int, level: float = 0.95, confidence: float = 0.999) -> tuple[int, int]:
    """The two-sided ``confidence`` acceptance region of the number of intervals that cover."""
    tail = (1 - confidence) / 2
    return int(scipy_stats.binom.ppf(tail, studies, level)), int(scipy_stats.binom.isf(tail, studies, level))


def check_coverage(config: Config, theory: float, seed: int, studies: int) -> None:
    """``studies`` studies of 10 replications of 8 h (about 350 lots each) after a warm-up of 1 h:
    the t intervals of such short runs cover a little less than 95% (a replication's mean lead time
    is skewed to the right), well inside the acceptance region."""
    samples = lead_time_means(config, studies=studies, replications=10, until_s=8 * HOUR,
                              warm_up=WarmUp("fixed", HOUR), seed=seed)
    covered = sum(interval(values).covers(theory) for values in samples)
    low, high = acceptance(studies)
    assert low <= covered <= high, (covered, (low, high), theory)


@pytest.mark.timeout(600)  # many studies: about a minute on a quiet core, several under load
def test_intervals_cover_the_mean_lead_time_of_an_mmc_station() -> None:
    config, theory = network(43.2, [("milling", 100.0, 2)])  # rho 0.6
    assert theory == pytest.approx(156.25, abs=0.01)  # Erlang C: P(wait) = 0.45, mean wait 56.25 s
    check_coverage(config, theory, seed=1_000, studies=100)


@pytest.mark.timeout(600)  # many studies: about a minute on a quiet core, several under load
def test_intervals_cover_the_mean_lead_time_of_a_tandem_network() -> None:
    config, theory = network(43.2, [("milling", 100.0, 2), ("lathe", 40.0, 1)])  # rho 0.6 and 0.48
    check_coverage(config, theory, seed=2_000, studies=80)  # (two stations: twice the work per lot)


def _study_means(config: Config, *, studies: int, until_s: float, warm_up: WarmUp | Literal["auto"],
                 seed: int) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    """Per study of 10 replications: the mean WIP, the mean lead time and the warm-up section."""
    wip, lead, warm_ups = [], [], []
    with Runner(1) as runner:
        for k in range(studies):
            replicated = run_replications(config, seed=seed + k, count=10, length=RunLength(until_s=until_s),
                                          warm_up=warm_up, runner=runner)
            wip.append(statistics.fmean(r["wip"]["mean"] for r in replicated.reports))
            lead.append(statistics.fmean(r["lead_time_s"]["mean"] for r in replicated.reports))
            warm_ups.append(replicated.warm_up)
    return wip, lead, warm_ups


@pytest.mark.timeout(600)  # many studies: about a minute on a quiet core, several under load
def test_the_automatic_warm_up_removes_the_empty_start_bias() -> None:
    """An M/M/2 station at utilisation 0.8 with 1,000 s jobs, started empty and run for 31 h (about 180
    lots): its queue needs hours to build up, so without warm-up the means are biased low.  The studies
    with and without warm-up run on seeds of their own (independent samples); the WIP's theory is
    Little's law, L = lambda W."""
    config, lead_theory = network(5.76, [("milling", 1000.0, 2)])
    wip_theory = 5.76 / HOUR * lead_theory
    until = 31.25 * HOUR
    cold_wip, cold_lead, _ = _study_means(config, studies=50, until_s=until, warm_up=WarmUp("none"), seed=10_000)
    warm_wip, warm_lead, warm_ups = _study_means(config, studies=60, until_s=until, warm_up="auto", seed=20_000)
    assert all(w["method"] == "mser-5" and 0 <= w["warm_up_s"] < until / 2 for w in warm_ups)
    assert sum(w["warm_up_s"] > 0 for w in warm_ups) > len(warm_ups) / 2
    for cold, warm, theory in ((cold_wip, warm_wip, wip_theory), (cold_lead, warm_lead, lead_theory)):
        cold_bias = interval([v - theory for v in cold])
        warm_bias = interval([v - theory for v in warm])
        assert cold_bias.high < 0, cold_bias  # without warm-up: significantly below the steady state
        assert warm_bias.covers(0.0), warm_bias  # with MSER-5: no significant bias left
        assert welch_difference(cold, warm).low > 0  # and the warm-up's correction is a real one
