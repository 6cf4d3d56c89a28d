"""Memory: resident set size with 100,000 lots queued in the reference plant.

Each measurement runs in a fresh interpreter, so the RSS belongs to that model alone:

- factorysim: the reference plant (config.yaml, telemetry on as configured, records going to a sink
  that keeps nothing, statistics bounded like the service's); 100,000 generated orders are admitted
  at simulated time 0, as the order intake does, and the model is stepped until every lot waits
  for a machine of its first stage (or holds one);
- bare SimPy: the same network as ``engine.run_bare_simpy`` (PriorityResource pools, one process
  per lot) with 100,000 lot processes started at time 0 and stepped until they all requested.
  SimPy's PriorityResource re-sorts its whole queue on every request (quadratic: hours for
  100,000 waiting requests), so the baseline's pools keep the same list of the same request
  objects in order by binary insertion instead; memory is the same;
- imports: an interpreter with the same imports and nothing built.

RSS is VmRSS from /proc/self/status.  Bytes per lot = (RSS with the lots - RSS of the same process
just before the lots were created) / lots.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("imports", "bare", "factorysim")


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


# -- the children ------------------------------------------------------------------------------
def _imports() -> None:
    import simpy  # noqa: F401
    import yaml  # noqa: F401

    from simulator.config.loader import parse  # noqa: F401
    from simulator.model.arrivals import OrderGenerator  # noqa: F401
    from simulator.model.records import NullSink  # noqa: F401
    from simulator.model.simulation import Simulation  # noqa: F401


def child_imports(lots: int) -> dict[str, Any]:
    _imports()
    rss = rss_bytes()
    return {"rss": rss, "before": rss, "queued": 0}


def child_factorysim(lots: int) -> dict[str, Any]:
    _imports()
    import yaml

    from simulator.config.loader import parse
    from simulator.model.arrivals import OrderGenerator, mix_with
    from simulator.model.randomness import stream
    from simulator.model.records import NullSink
    from simulator.model.simulation import Simulation

    cfg = parse(yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8")), environ={})
    sim = Simulation(cfg, NullSink(), sample_limit=20_000)  # the service's bound on KPI samples
    mix = cfg.arrivals.location_mix or dict.fromkeys(cfg.locations, 1.0)
    generator = OrderGenerator(cfg.arrivals, mix_with(mix, cfg.location_of), stream(sim.seed, "arrivals"),
                               code_prefix="L-memory")
    orders = iter(generator)
    before = rss_bytes()
    for _ in range(lots):
        sim.admit(next(orders)[1])
    while sim.env.peek() == 0:  # every lot's process runs up to its first machine request
        sim.env.step()
    queued = sum(pool.queue_length for pool in sim.plant.pools.values())
    return {"rss": rss_bytes(), "before": before, "queued": queued, "in_progress": len(sim.lots)}


def child_bare(lots: int) -> dict[str, Any]:
    _imports()
    import bisect
    import random

    import simpy
    import yaml
    from simpy.resources.resource import SortedQueue

    from simulator.config.loader import parse

    class InsortQueue(SortedQueue):
        """SimPy's SortedQueue, kept in order by binary insertion (stable, like its sort)."""

        def append(self, item: Any) -> None:
            bisect.insort_right(self, item, key=lambda e: e.key)

    class PriorityPool(simpy.PriorityResource):
        PutQueue = InsortQueue

    cfg = parse(yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8")), environ={})
    env = simpy.Environment()
    rng = random.Random(1)
    pools = {(loc, mtype): PriorityPool(env, capacity=n)
             for loc, spec in cfg.locations.items() for mtype, n in spec.machines.items()}
    means = {"fresa_cnc": 2400.0, "tornio": 1800.0, "assemblaggio": 3600.0, "test": 1200.0}
    stages = [(s.machine_type, 1.0 / means[s.name]) for s in cfg.route]
    mix = cfg.arrivals.location_mix or dict.fromkeys(cfg.locations, 1.0)
    locations, weights = list(mix), list(mix.values())

    def lot(location: str, priority: int) -> Any:  # as engine.run_bare_simpy
        for mtype, rate in stages:
            with pools[(location, mtype)].request(priority=priority) as req:
                yield req
                yield env.timeout(rng.expovariate(rate))

    before = rss_bytes()
    for _ in range(lots):
        env.process(lot(rng.choices(locations, weights)[0], rng.choice((0, 1, 1, 1, 1, 1, 1, 1, 2))))
    while env.peek() == 0:
        env.step()
    queued = sum(len(pool.queue) for pool in pools.values())
    return {"rss": rss_bytes(), "before": before, "queued": queued}


CHILDREN = {"imports": child_imports, "bare": child_bare, "factorysim": child_factorysim}


def run_child(kind: str, lots: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--lots", str(lots)],
                         capture_output=True, text=True, check=True, cwd=ROOT, timeout=600)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- the benchmark -------------------------------------------------------------------------------
def measure(lots: int = 100_000, repeats: int = 2) -> dict[str, float]:
    """RSS figures (MB) and bytes per queued lot; RSS barely varies, the smallest of ``repeats`` runs of
    each kind is kept."""
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for _ in range(repeats):
        for kind in KINDS:
            runs[kind].append(run_child(kind, lots))
    best = {kind: min(results, key=lambda r: r["rss"]) for kind, results in runs.items()}
    mb = 1024 * 1024
    ours, bare, imports = best["factorysim"], best["bare"], best["imports"]
    result = {
        "lots": float(lots),
        "queued": float(ours["queued"]),
        "factorysim_rss_mb": ours["rss"] / mb,
        "bare_simpy_rss_mb": bare["rss"] / mb,
        "imports_rss_mb": imports["rss"] / mb,
        "factorysim_above_imports_mb": (ours["rss"] - imports["rss"]) / mb,
        "bare_above_imports_mb": (bare["rss"] - imports["rss"]) / mb,
        "bytes_per_lot": (ours["rss"] - ours["before"]) / lots,
        "bare_bytes_per_lot": (bare["rss"] - bare["before"]) / lots,
    }
    result["ratio"] = result["bytes_per_lot"] / result["bare_bytes_per_lot"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lots", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.lots)), flush=True)
        # no teardown: closing 100,000 suspended lot generators cancels their requests one by one,
        # each a linear search of its queue
        os._exit(0)
    r = measure(args.lots, args.repeats)
    print(f"{int(r['lots']):,} queued lots ({int(r['queued']):,} waiting in factorysim's queues)")
    print(f"{'':<26}{'RSS MB':>10}{'above imports':>16}{'bytes/lot':>12}")
    print(f"{'imports only':<26}{r['imports_rss_mb']:>10.1f}{'':>16}{'':>12}")
    print(f"{'bare SimPy (baseline)':<26}{r['bare_simpy_rss_mb']:>10.1f}{r['bare_above_imports_mb']:>16.1f}"
          f"{r['bare_bytes_per_lot']:>12,.0f}")
    print(f"{'factorysim model':<26}{r['factorysim_rss_mb']:>10.1f}{r['factorysim_above_imports_mb']:>16.1f}"
          f"{r['bytes_per_lot']:>12,.0f}")
    print(f"{'per-lot ratio to SimPy':<26}{r['ratio']:>10.2f}")
    print(f"{'goal: total RSS <= 300 MB':<26}{'met' if r['factorysim_rss_mb'] <= 300 else 'NOT MET':>10}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
