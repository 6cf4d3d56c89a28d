"""Replications in parallel: the wall time of N replications of the reference plant on two worker
processes against one.

`simulate --replications N --jobs J` does what is timed here: ``run_replications`` of the reference
plant (``config.yaml``), each replication ``--until`` simulated time without warm-up, from the call
until every report is back; with two jobs that includes starting the worker processes (``spawn``:
a fresh interpreter imports the simulator). Baseline: the same replications with one job (in this
process, one after the other). The two summaries must be identical (the number of jobs aside).
Interleaved repeats; the ratio of the best times is the figure, the spread of the per-repeat ratios
is printed with it. For scale, what the machine itself allows: the same replications split in two
halves run by two independent interpreters started at once (no pool, each starting and importing
like a worker), timed until both are done.

    python tools/bench/replications.py [--replications 12] [--until 90d] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson

from simulator.config.loader import load
from simulator.durations import parse_duration
from simulator.studies.replications import RunLength, WarmUp, run_replications, summarize

ROOT = Path(__file__).resolve().parents[2]


def _timed(jobs: int, replications: int, until_s: float) -> tuple[float, bytes]:
    config = load(ROOT / "config.yaml", environ={})
    gc.collect()
    started = time.perf_counter()
    replicated = run_replications(config, seed=config.simulation.seed, count=replications,
                                  length=RunLength(until_s=until_s), warm_up=WarmUp("none"), jobs=jobs)
    took = time.perf_counter() - started
    summary = summarize(replicated)
    summary.pop("jobs")
    return took, orjson.dumps(summary)


HALF = """
import sys
from simulator.config.loader import load
from simulator.studies.replications import RunLength, WarmUp, run_replications
config = load(sys.argv[1], environ={})
run_replications(config, seed=config.simulation.seed, count=int(sys.argv[3]), first=int(sys.argv[2]),
                 length=RunLength(until_s=float(sys.argv[4])), warm_up=WarmUp("none"), jobs=1)
"""


def _two_halves(replications: int, until_s: float) -> float:
    half = replications // 2
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", HALF, str(ROOT / "config.yaml"), str(first), str(count),
                                   str(until_s)], env=env)
                 for first, count in ((0, half), (half, replications - half))]
    if any(p.wait() != 0 for p in processes):
        raise SystemExit("a half failed")
    return time.perf_counter() - started


def measure(replications: int = 12, until: str = "90d", repeats: int = 3) -> dict[str, Any]:
    until_s = parse_duration(until)
    one: list[float] = []
    two: list[float] = []
    halves: list[float] = []
    for _ in range(repeats):
        t1, s1 = _timed(1, replications, until_s)
        t2, s2 = _timed(2, replications, until_s)
        if s1 != s2:
            raise SystemExit("the summaries of one and two jobs differ")
        one.append(t1)
        two.append(t2)
        halves.append(_two_halves(replications, until_s))
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    return {"replications": replications, "until": until, "repeats": repeats, "one_job_s": min(one),
            "two_jobs_s": min(two), "ratio": min(two) / min(one), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "one_job_all_s": one, "two_jobs_all_s": two, "halves_s": min(halves),
            "halves_all_s": halves, "machine_ratio": min(halves) / min(one)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replications", type=int, default=12)
    parser.add_argument("--until", default="90d")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = measure(args.replications, args.until, args.repeats)
    print(f"{r['replications']} replications of {r['until']} of the reference plant, {r['repeats']} repeats")
    print(f"  --jobs 1: best {r['one_job_s']:.2f} s  (all: {', '.join(f'{t:.2f}' for t in r['one_job_all_s'])})")
    print(f"  --jobs 2: best {r['two_jobs_s']:.2f} s  (all: {', '.join(f'{t:.2f}' for t in r['two_jobs_all_s'])})")
    print(f"  two independent interpreters, half each: best {r['halves_s']:.2f} s  "
          f"(all: {', '.join(f'{t:.2f}' for t in r['halves_all_s'])})")
    print(f"  ratio of the best times {r['ratio']:.2f}; per repeat {r['ratio_min']:.2f} .. {r['ratio_max']:.2f}; "
          f"the two interpreters' ratio {r['machine_ratio']:.2f}")


if __name__ == "__main__":
    main()
