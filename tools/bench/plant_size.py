"""Paced mode by plant size: how one instance's cost grows with the number of machines.

For each size (1,000, 5,000, 10,000 and 20,000 machines by default) the plant, the warm-up, the
paced run and the baseline are those of ``paced_lag.py``: config.yaml with every pool scaled to
the size, every machine sampling at 1 Hz, orders arriving faster than the first stage takes them,
4 simulated hours of warm-up, then the real ``Driver`` at speed 1 into the real ``Outbox`` and
``KafkaPublisher`` (coffeemek) on the embedded broker, a fresh broker per size.

Per size:

- emission lag p50 / p99 / max (a record's ``emit`` wall time minus the instant its sim time was due);
- samples emitted per wall second against the ``machines x 1 Hz`` the plant asks for, and all
  records per second (samples, cycles, lot events), both counted by emission time after the first
  sample interval, when every machine has started sampling: a run that falls behind emits fewer;
- the driver's ``lag_s`` at the end of the run (how far behind schedule it was then), and how
  often it found the outbox full (publishing behind the model);
- the CPU share of this process while the driver ran (``time.process_time()`` delta / wall delta,
  the publisher's work included; the broker is another process), that share per 1,000 machines,
  and CPU microseconds per record emitted (what the machine's other load changes least);
- the baseline: a plain asyncio pacer replaying the same records on the same schedule through the
  same publishing path (``paced_lag.run_baseline``): its p99 lateness and the ratio of factorysim's
  p99 to it, and its CPU share and microseconds per record (timers, encoding and publishing: the
  part of the cost that is not the model's or the driver's);
- the model alone: CPU microseconds per record while the baseline's replay regenerates the same
  records by stepping the model as fast as possible (no driver, no encoding, no Kafka).

``--profile N`` runs the paced phase at N machines under cProfile instead and prints where the
time goes (the lag figures of a profiled run are not representative).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import math
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine
from paced_lag import Kafka, benchmark_configs, quantiles_ms, run_baseline, run_factorysim

SIZES = (1_000, 5_000, 10_000, 20_000)
DURATION_S = 15.0  # wall seconds per paced run; with the defaults the script takes about 4 minutes on 2 cores
SAMPLE_HZ = 1.0
LAG_GOAL_MS = 50.0
GOAL_MACHINES = 10_000  # the size the p99 goal is stated for


def emission_rates(run: dict[str, Any]) -> tuple[float, float]:
    """(samples, all records) emitted per wall second after the first sample interval, by emission
    time: from then on every machine samples."""
    start, end = 1.0 / SAMPLE_HZ, run["wall_s"]
    if end <= start:
        return math.nan, math.nan
    samples = records = 0
    for due, lag, is_sample in zip(run["due"], run["lags"], run["samples"], strict=True):
        if start <= due + lag < end:
            records += 1
            samples += is_sample
    return samples / (end - start), records / (end - start)


def keeps_pace(r: dict[str, float]) -> bool:
    """Every sample the plant asks for comes out, and the driver is on schedule at the end."""
    return r["samples_s"] >= 0.98 * r["expected_s"] and r["driver_lag_end_s"] * 1000 <= LAG_GOAL_MS


async def _measure_size(machines: int, duration_s: float, encode_only: bool) -> dict[str, float]:
    cfg, warm_cfg = benchmark_configs(machines, 1.0 / SAMPLE_HZ)
    kafka: Any = contextlib.nullcontext(None) if encode_only else Kafka(cfg)
    async with kafka as broker:
        run = await run_factorysim(broker, cfg, warm_cfg, duration_s, encode_only)
        base = await run_baseline(broker, cfg, warm_cfg, run, encode_only)
    p50, p99, worst = quantiles_ms(run["lags"])
    b50, b99, bmax = quantiles_ms(base["lags"])
    cpu_share = run["cpu_s"] / run["wall_s"]
    samples_s, records_s = emission_rates(run)
    return {
        "machines": float(run["machines"]),
        "expected_s": run["machines"] * SAMPLE_HZ,
        "samples_s": samples_s,
        "records_s": records_s,
        "messages_sent": float(run["sent"]),
        "lag_p50_ms": p50,
        "lag_p99_ms": p99,
        "lag_max_ms": worst,
        "driver_lag_end_s": run["driver_lag_s"],
        "driver_max_lag_s": run["driver_max_lag_s"],
        "stalled_on_outbox": float(run["stalled"]),
        "cpu_share": cpu_share,
        "cpu_share_per_1000": cpu_share / (run["machines"] / 1000),
        "cpu_us_per_record": run["cpu_s"] / len(run["lags"]) * 1e6 if run["lags"] else math.nan,
        "baseline_p50_ms": b50,
        "baseline_p99_ms": b99,
        "baseline_max_ms": bmax,
        "baseline_cpu_share": base["cpu_s"] / base["wall_s"] if base["wall_s"] > 0 else math.nan,
        "baseline_cpu_us_per_record": base["cpu_s"] / len(base["lags"]) * 1e6 if base["lags"] else math.nan,
        "model_us_per_record": base["model_cpu_s"] / len(base["lags"]) * 1e6 if base["lags"] else math.nan,
        "ratio_p99": p99 / b99 if b99 > 0 else math.inf,
        "replay_mismatches": float(base["mismatched"]),
    }


def measure(sizes: tuple[int, ...] = SIZES, duration_s: float = DURATION_S,
            encode_only: bool = False) -> list[dict[str, float]]:
    """One result per size, in the order given; sizes run one after the other in this process."""
    results = []
    for machines in sizes:
        results.append(asyncio.run(_measure_size(machines, duration_s, encode_only)))
        gc.collect()  # the previous plant's objects are garbage before the next warm-up
    return results


def profile(machines: int, duration_s: float, encode_only: bool, top: int = 25) -> pstats.Stats:
    """The paced phase at ``machines`` under cProfile on CPU time (warm-up and draining left out):
    where the CPU goes, whatever else runs on the machine."""
    profiler = cProfile.Profile(time.process_time)
    wall = 0.0

    async def run() -> None:
        nonlocal wall
        cfg, warm_cfg = benchmark_configs(machines, 1.0 / SAMPLE_HZ)
        kafka: Any = contextlib.nullcontext(None) if encode_only else Kafka(cfg)
        async with kafka as broker:
            result = await run_factorysim(broker, cfg, warm_cfg, duration_s, encode_only, during=profiler)
        wall = result["wall_s"]
        print(f"{len(result['lags']):,} records emitted in {wall:.1f} s; "
              f"driver lag at the end {result['driver_lag_s']:.2f} s")

    asyncio.run(run())
    stats = pstats.Stats(profiler)
    _print_areas(stats, wall)
    stats.sort_stats("tottime").print_stats(top)
    return stats


AREAS = (  # where a function's own time goes, by its file (first match); others count for their callers
    ("model: machine samples (recorder, signal models, counters)",
     ("simulator/model/recorder", "simulator/model/records", "simulator/model/sampling", "simulator/model/machine.",
      "simulator/model/climate", "machines/")),
    ("model: event calendar", ("simulator/model/events",)),
    ("model: lots, pools, disruptions", ("simulator/model/",)),
    ("driver", ("simulator/runtime/driver", "simulator/runtime/clock")),
    ("outbox", ("simulator/runtime/outbox",)),
    ("coffeemek encoding", ("simulator/formats/",)),
    ("publisher and record batches", ("simulator/adapters/",)),
    ("aiokafka", ("aiokafka/",)),
    ("event loop", ("asyncio/", "selectors", "select.epoll")),
    ("benchmark sink", ("tools/bench/",)),
)

Key = tuple[str, int, str]


def _own_area(key: Key) -> str | None:
    where = f"{key[0]} {key[2]}"
    return next((label for label, marks in AREAS if any(mark in where for mark in marks)), None)


def _area(key: Key, entries: dict[Key, Any], seen: frozenset[Key] = frozenset()) -> str:
    """The function's own area, else (built-ins, the standard library) its main caller's."""
    own = _own_area(key)
    if own is not None:
        return own
    callers = entries[key][4] if key in entries else {}
    candidates = [caller for caller in callers if caller not in seen]
    if not candidates:
        return "other"
    return _area(max(candidates, key=lambda caller: callers[caller][3]), entries, seen | {key})


def _print_areas(stats: pstats.Stats, wall_s: float) -> None:
    """Own time summed by area, as a share of the profiled total; a built-in's or library
    function's time is split among its callers' areas by what each call site spent."""
    entries: dict[Key, Any] = stats.stats  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    for key, (_cc, _nc, own_s, _cum, callers) in entries.items():
        area = _own_area(key)
        if area is not None or not callers:
            by_area[area or "other"] = by_area.get(area or "other", 0.0) + own_s
            continue
        for caller, (_ccc, _cnc, caller_own_s, _ccum) in callers.items():
            label = _area(caller, entries, frozenset({key}))
            by_area[label] = by_area.get(label, 0.0) + caller_own_s
    total = sum(by_area.values()) or 1.0
    print(f"CPU time by area ({total:.1f} s of CPU profiled in {wall_s:.1f} s wall):")
    for area, seconds in sorted(by_area.items(), key=lambda item: -item[1]):
        print(f"  {area:<60}{seconds:>7.2f} s {seconds / total:>6.1%}")


LEGEND = """\
samples/s: samples emitted per wall second after the first interval; expected: machines x 1 Hz
records/s: all records (samples, cycles, lot events) emitted per wall second after the first interval
p50/p99/max: emission lag; lag end: the driver's lag_s when the run ended
CPU: this process's CPU time / wall time while the driver ran (the broker is another process);
  /1k: that per 1,000 machines; µs/rec: CPU microseconds per record emitted
base p99, base CPU, µs/rec: the timer baseline replaying the same records; ratio: p99 / base p99
model µs: CPU microseconds per record of the model alone, stepped as fast as possible (the same records)
stalls: the driver's turns that found the outbox full (publishing behind the model)
pace: kept = every sample emitted and the driver within {goal:.0f} ms of schedule at the end"""


def _table(results: list[dict[str, float]]) -> list[str]:
    head = (f"{'machines':>9}{'samples/s':>11}{'expected':>10}{'records/s':>11}{'p50':>9}{'p99':>9}{'max':>9}"
            f"{'lag end':>9}{'CPU':>6}{'/1k':>7}{'µs/rec':>8}{'base p99':>10}{'ratio':>7}{'base CPU':>9}{'µs/rec':>8}"
            f"{'model µs':>9}{'stalls':>7}  pace")
    lines = [head, f"{'':>9}{'':>11}{'':>10}{'':>11}{'ms':>9}{'ms':>9}{'ms':>9}{'s':>9}"]
    for r in results:
        lines.append(
            f"{r['machines']:>9,.0f}{r['samples_s']:>11,.0f}{r['expected_s']:>10,.0f}{r['records_s']:>11,.0f}"
            f"{r['lag_p50_ms']:>9.1f}{r['lag_p99_ms']:>9.1f}{r['lag_max_ms']:>9.1f}{r['driver_lag_end_s']:>9.2f}"
            f"{r['cpu_share']:>6.0%}{r['cpu_share_per_1000']:>7.1%}{r['cpu_us_per_record']:>8.0f}"
            f"{r['baseline_p99_ms']:>10.1f}{r['ratio_p99']:>7.2f}{r['baseline_cpu_share']:>9.0%}"
            f"{r['baseline_cpu_us_per_record']:>8.0f}{r['model_us_per_record']:>9.0f}{r['stalled_on_outbox']:>7.0f}"
            f"  {'kept' if keeps_pace(r) else 'BEHIND'}")
    return lines


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated machine counts, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"every machine count must be at least 1, got {text!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=_sizes, default=SIZES, metavar="N,N,...",
                        help=f"plant sizes (default {','.join(map(str, SIZES))})")
    parser.add_argument("--duration", type=float, default=DURATION_S, help="wall seconds per paced run")
    parser.add_argument("--encode-only", action="store_true", help="encode records without Kafka")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="profile the paced run at N machines with cProfile instead of measuring")
    args = parser.parse_args()
    if args.duration <= 1.0 / SAMPLE_HZ:
        parser.error(f"--duration must be more than the sample interval ({1.0 / SAMPLE_HZ:g} s)")
    if args.profile is not None and args.profile < 1:
        parser.error(f"--profile: a machine count of at least 1, got {args.profile}")
    sink = "coffeemek encoding only" if args.encode_only else "coffeemek to Kafka (embedded broker)"
    if args.profile is not None:
        print(f"cProfile: paced run, {args.profile:,} machines at {SAMPLE_HZ:g} Hz, speed 1.0, "
              f"{args.duration:.0f} s, records -> {sink}")
        profile(args.profile, args.duration, args.encode_only)
        return
    load = os.getloadavg()
    print(f"paced mode by plant size: speed 1.0, every machine sampling at {SAMPLE_HZ:g} Hz, "
          f"{args.duration:.0f} s per size, records -> {sink}", flush=True)
    results = measure(args.machines, args.duration, args.encode_only)
    print("\n".join(_table(results)))
    print(LEGEND.format(goal=LAG_GOAL_MS))
    print(f"load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; {machine()}")
    for r in results:
        if r["machines"] == GOAL_MACHINES:
            print(f"goal at {GOAL_MACHINES:,} machines, p99 <= {LAG_GOAL_MS:.0f} ms: "
                  f"{'met' if r['lag_p99_ms'] <= LAG_GOAL_MS else 'NOT MET'} ({r['lag_p99_ms']:.1f} ms)")
        if r["replay_mismatches"]:
            print(f"warning: at {r['machines']:,.0f} machines the baseline's replay differs from the paced run in "
                  f"{r['replay_mismatches']:.0f} records")


if __name__ == "__main__":
    main()
