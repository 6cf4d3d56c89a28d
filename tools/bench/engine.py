"""Engine speed: lot-stage passes per wall second, factorysim's model vs a bare SimPy model of the
same network (the reference route with exponential times, telemetry off, as fast as possible).

When Ciw is installed the same network also runs in Ciw for comparison: one node per (location,
stage) pool with the pool's number of servers, exponential service times with the same means,
Poisson arrivals split by the location mix and the priorities as Ciw priority classes.  Ciw is
much slower, so it simulates fewer lots; passes per second are a rate, so the figures compare.

Prints a table and returns the figures; `run_all.py` writes them into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import random
import time
from pathlib import Path
from typing import Any

import simpy
import yaml

from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.model.records import NullSink
from simulator.model.simulation import Simulation

ROOT = Path(__file__).resolve().parents[2]
MEANS = {"fresa_cnc": 2400.0, "tornio": 1800.0, "assemblaggio": 3600.0, "test": 1200.0}


def benchmark_config(rate_per_hour: float) -> Config:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    for stage in data["route"]:
        stage["processing_time"] = {"distribution": "exponential", "mean": MEANS[stage["name"]]}
        stage.pop("quality", None)
    data["disruptions"] = {"block_probability": 0.0}
    data["telemetry"] = {"cycle_records": False, "lot_events": False, "sample_interval_s": 0}
    data["arrivals"].update({"rate_per_hour": rate_per_hour, "process": "poisson"})
    return parse(data, environ={})


def run_factorysim(cfg: Config, lots: int) -> tuple[float, int]:
    sim = Simulation(cfg, NullSink(), sample_limit=None)
    sim.start_arrivals(limit=lots)
    started = time.perf_counter()
    sim.env.run()
    elapsed = time.perf_counter() - started
    passes = sum(s.process.count for s in sim.stats.stages.values())
    return elapsed, passes


def run_bare_simpy(cfg: Config, lots: int, seed: int = 1) -> tuple[float, int]:
    """The same network in plain SimPy: PriorityResource pools, one process per lot."""
    env = simpy.Environment()
    rng = random.Random(seed)
    pools = {(loc, mtype): simpy.PriorityResource(env, capacity=n)
             for loc, spec in cfg.locations.items() for mtype, n in spec.machines.items()}
    stages = [(s.machine_type, 1.0 / MEANS[s.name]) for s in cfg.route]
    mix = cfg.arrivals.location_mix or dict.fromkeys(cfg.locations, 1.0)
    locations, weights = list(mix), list(mix.values())
    passes = 0

    def lot(location: str, priority: int) -> Any:
        nonlocal passes
        for mtype, rate in stages:
            with pools[(location, mtype)].request(priority=priority) as req:
                yield req
                yield env.timeout(rng.expovariate(rate))
            passes += 1

    def arrivals() -> Any:
        gap = 3600.0 / cfg.arrivals.rate_per_hour
        for _ in range(lots):
            env.process(lot(rng.choices(locations, weights)[0], rng.choice((0, 1, 1, 1, 1, 1, 1, 1, 2))))
            yield env.timeout(rng.expovariate(1.0 / gap))

    env.process(arrivals())
    started = time.perf_counter()
    env.run()
    return time.perf_counter() - started, passes


def ciw_available() -> bool:
    return importlib.util.find_spec("ciw") is not None


def run_ciw(cfg: Config, lots: int, seed: int = 1) -> tuple[float, int]:
    """The same network in Ciw: nodes = (location, stage) pools in route order per location,
    arrivals at each location's first stage, priorities as priority classes (non-preemptive).
    Runs for the simulated time in which ``lots`` lots arrive on average; counts completed
    services (lot-stage passes)."""
    import ciw

    mix = cfg.arrivals.location_mix or dict.fromkeys(cfg.locations, 1.0)
    mix_total = sum(mix.values())
    priorities = cfg.arrivals.priority_mix
    priority_total = sum(priorities.values())
    rate_s = cfg.arrivals.rate_per_hour / 3600.0
    locations = list(cfg.locations)
    stages = list(cfg.route)
    nodes = [(loc, stage) for loc in locations for stage in stages]
    n = len(nodes)
    arrivals: dict[str, list[Any]] = {}
    services: dict[str, list[Any]] = {}
    for priority, p_weight in priorities.items():
        arrivals[priority] = [
            ciw.dists.Exponential(rate_s * mix.get(loc, 0.0) / mix_total * p_weight / priority_total)
            if k == 0 and mix.get(loc, 0.0) > 0 else None
            for loc in locations for k in range(len(stages))]
        services[priority] = [ciw.dists.Exponential(1.0 / MEANS[stage.name]) for _, stage in nodes]
    routing = [[0.0] * n for _ in range(n)]
    for i in range(n):
        if (i + 1) % len(stages):  # not the last stage of its location: on to the next
            routing[i][i + 1] = 1.0
    network = ciw.create_network(
        arrival_distributions=arrivals,
        service_distributions=services,
        number_of_servers=[cfg.locations[loc].machines[stage.machine_type] for loc, stage in nodes],
        routing={priority: copy.deepcopy(routing) for priority in priorities},
        priority_classes={priority: rank for rank, priority in enumerate(priorities)},
    )
    ciw.seed(seed)
    simulation = ciw.Simulation(network)
    started = time.perf_counter()
    simulation.simulate_until_max_time(lots / rate_s)
    elapsed = time.perf_counter() - started
    passes = len(simulation.get_all_records(only=["service"]))
    return elapsed, passes


def measure(lots: int = 40_000, repeats: int = 3, rate_per_hour: float = 2.0,
            ciw_lots: int = 10_000) -> dict[str, float]:
    """Best of ``repeats`` interleaved runs of each engine (Ciw only when it is installed)."""
    cfg = benchmark_config(rate_per_hour)
    with_ciw = ciw_available() and ciw_lots > 0
    ours, bare, ciw_rates = [], [], []
    for _ in range(repeats):  # interleaved, best of N: the machine is noisy
        elapsed, passes = run_bare_simpy(cfg, lots)
        bare.append(passes / elapsed)
        elapsed, passes = run_factorysim(cfg, lots)
        ours.append(passes / elapsed)
        if with_ciw:
            elapsed, passes = run_ciw(cfg, ciw_lots)
            ciw_rates.append(passes / elapsed)
    result = {"bare_simpy_passes_s": max(bare), "factorysim_passes_s": max(ours)}
    result["ratio"] = result["factorysim_passes_s"] / result["bare_simpy_passes_s"]
    if with_ciw:
        result["ciw_passes_s"] = max(ciw_rates)
        result["ratio_ciw"] = result["factorysim_passes_s"] / result["ciw_passes_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ciw-lots", type=int, default=10_000, help="lots simulated by Ciw (0: skip Ciw)")
    args = parser.parse_args()
    result = measure(args.lots, args.repeats, ciw_lots=args.ciw_lots)
    print(f"{'engine':<28}{'passes/s':>14}")
    print(f"{'bare SimPy (baseline)':<28}{result['bare_simpy_passes_s']:>14,.0f}")
    print(f"{'factorysim model':<28}{result['factorysim_passes_s']:>14,.0f}")
    print(f"{'ratio (goal >= 0.5)':<28}{result['ratio']:>14.2f}")
    if "ciw_passes_s" in result:
        print(f"{'Ciw':<28}{result['ciw_passes_s']:>14,.0f}")
        print(f"{'factorysim / Ciw':<28}{result['ratio_ciw']:>14.2f}")


if __name__ == "__main__":
    main()
