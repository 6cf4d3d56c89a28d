"""Snapshot size and speed by lots in progress.

The reference plant gets N orders at once (every location, the configured mix), runs one simulated
hour (a few lots at their machines, the rest queued), then its snapshot is taken
(``simulator.model.snapshot.take``), encoded as it travels (JSON, then the snapshot topic's
compression) and restored into a fresh simulation.  Reported: the compressed size per lot in
progress (the difference to the plant with no lot, divided by N), and the time to take, turn into
JSON and restore (best of 3 each).  Baseline: the journal entries of the same N admissions (what a recovery without a
snapshot reads instead), encoded as the journal writes them.

    python tools/bench/snapshot_size.py [--lots 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson

from simulator.config.loader import load
from simulator.config.schema import Config
from simulator.formats import journal
from simulator.formats.journal import Applied
from simulator.formats.snapshot import compress
from simulator.model import snapshot
from simulator.model.inputs import Admit
from simulator.model.records import NullSink
from simulator.model.simulation import Simulation

ROOT = Path(__file__).resolve().parents[2]


def plant_with(config: Config, lots: int) -> Simulation:
    sim = Simulation(config, NullSink(), sample_limit=20_000)
    generator = sim.order_generator("S")
    for _ in range(lots):
        sim.admit(generator.order())
    sim.settle(3600.0)
    return sim


def _best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest of ``runs`` timed calls (after a full collection: this process may hold what other
    benchmarks left) and the last result."""
    best, result = math.inf, None
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def measure_one(config: Config, lots: int) -> dict[str, Any]:
    sim = plant_with(config, lots)
    took, document = _best_of(3, lambda: snapshot.take(sim))
    encoded, raw = _best_of(3, lambda: orjson.dumps(document))
    packed = compress(raw)
    restored, _ = _best_of(3, lambda: snapshot.restore(config, NullSink(), orjson.loads(raw), sample_limit=20_000))
    generator = Simulation(config, NullSink()).order_generator("S")
    journal_bytes = sum(len(journal.encode(Applied("Italia", "bench", n, 0.0, Admit(generator.order()),
                                                   f"orders/0/{n}"), "journal").value) for n in range(1, lots + 1))
    return {"lots": lots, "in_progress": len(sim.lots), "raw_bytes": len(raw), "compressed_bytes": len(packed),
            "take_s": took, "encode_s": encoded, "restore_s": restored, "journal_bytes": journal_bytes}


def measure(lot_counts: tuple[int, ...] = (1_000, 10_000, 100_000)) -> list[dict[str, Any]]:
    config = load(ROOT / "config.yaml", environ={})
    empty = measure_one(config, 0)
    results = []
    for lots in lot_counts:
        r = measure_one(config, lots)
        r["compressed_per_lot"] = (r["compressed_bytes"] - empty["compressed_bytes"]) / r["in_progress"]
        r["raw_per_lot"] = (r["raw_bytes"] - empty["raw_bytes"]) / r["in_progress"]
        r["journal_per_lot"] = r["journal_bytes"] / lots
        r["empty_compressed_bytes"] = empty["compressed_bytes"]
        results.append(r)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lots", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print(f"{'lots in progress':>16}{'snapshot':>12}{'B/lot':>8}{'journal B/lot':>15}{'take s':>9}{'encode s':>10}"
          f"{'restore s':>11}")
    for r in measure(tuple(args.lots)):
        print(f"{r['in_progress']:>16,}{r['compressed_bytes'] / 1e6:>10.2f}MB{r['compressed_per_lot']:>8.0f}"
              f"{r['journal_per_lot']:>15.0f}{r['take_s']:>9.2f}{r['encode_s']:>10.2f}{r['restore_s']:>11.2f}")


if __name__ == "__main__":
    main()
