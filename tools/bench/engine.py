"""Engine speed: lot-stage passes per wall second, factorysim's model vs a bare SimPy model of the
same network (the reference route with exponential times, telemetry off, as fast as possible).

Prints a table and returns the figures; `run_all.py` writes them into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from pathlib import Path
from typing import Any

import simpy
import yaml

from simulator.config import parse
from simulator.config_schema import Config
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


def measure(lots: int = 40_000, repeats: int = 3, rate_per_hour: float = 2.0) -> dict[str, float]:
    cfg = benchmark_config(rate_per_hour)
    ours, bare = [], []
    for _ in range(repeats):  # interleaved, best of N: the machine is noisy
        elapsed, passes = run_bare_simpy(cfg, lots)
        bare.append(passes / elapsed)
        elapsed, passes = run_factorysim(cfg, lots)
        ours.append(passes / elapsed)
    result = {"bare_simpy_passes_s": max(bare), "factorysim_passes_s": max(ours)}
    result["ratio"] = result["factorysim_passes_s"] / result["bare_simpy_passes_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.lots, args.repeats)
    print(f"{'engine':<28}{'passes/s':>14}")
    print(f"{'bare SimPy (baseline)':<28}{result['bare_simpy_passes_s']:>14,.0f}")
    print(f"{'factorysim model':<28}{result['factorysim_passes_s']:>14,.0f}")
    print(f"{'ratio (goal >= 0.5)':<28}{result['ratio']:>14.2f}")


if __name__ == "__main__":
    main()
