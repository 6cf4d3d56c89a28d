"""Statistical validation: an M/M/c station's simulated mean wait agrees with Erlang C."""

from __future__ import annotations

import math
import statistics

from scipy import stats as scipy_stats

from simulator.model.records import NullSink
from simulator.model.simulation import Simulation

from plants import plant


def erlang_c_wait(arrival_rate: float, service_mean: float, servers: int) -> float:
    """Mean time in queue of an M/M/c queue."""
    a = arrival_rate * service_mean
    rho = a / servers
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / (math.factorial(servers) * (1 - rho))
    p_wait = tail / (head + tail)
    return p_wait / (servers / service_mean - arrival_rate)


def test_mmc_mean_wait_matches_erlang_c() -> None:
    servers, service_mean, per_hour = 2, 100.0, 60.0
    cfg = plant(
        stages=[{"name": "s", "machine_type": "milling",
                 "processing_time": {"distribution": "exponential", "mean": service_mean}}],
        locations={"A": {"timezone": "UTC", "machines": {"milling": servers}}},
        arrivals={"rate_per_hour": per_hour, "process": "poisson", "priority_mix": {"normale": 1}},
        telemetry={"cycle_records": False, "lot_events": False},
        simulation={"seed": 20260101},
    )
    lots = 120_000
    sim = Simulation(cfg, NullSink())
    sim.start_arrivals(limit=lots)
    sim.env.run()
    waits = sim.stats.stages["s"].wait.values
    assert len(waits) == lots
    warmup, batches = 5_000, 30
    size = (len(waits) - warmup) // batches
    means = [statistics.fmean(waits[warmup + b * size: warmup + (b + 1) * size]) for b in range(batches)]
    centre = statistics.fmean(means)
    half_width = scipy_stats.t.ppf(0.995, batches - 1) * statistics.stdev(means) / math.sqrt(batches)
    theory = erlang_c_wait(per_hour / 3600.0, service_mean, servers)
    assert abs(centre - theory) <= half_width, (centre, theory, half_width)
    assert half_width < 0.1 * theory  # the interval is tight enough to mean something
    # the utilisation agrees too: rho = lambda * E[S] / c
    busy = sum(m.time_in("running", sim.now) for m in sim.plant.machines.values()) / (servers * sim.now)
    assert abs(busy - per_hour / 3600.0 * service_mean / servers) < 0.01
