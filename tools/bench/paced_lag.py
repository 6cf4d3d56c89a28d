"""Paced mode: emission lag with 1,000 machines sampling at 1 Hz in real time (speed 1.0).

The plant is config.yaml with every pool scaled so the plant has 1,000 machines (same locations,
types and route) and ``telemetry.sample_interval_s: 1``.  Orders arrive faster than the first
stage can take them, so machines are busy and lots queue.  The model is warmed up as fast as
possible for a few simulated hours with samples off, then every machine's sample process is
started (``simulator.model.sampling.sample``, as ``Simulation`` starts it, offsets spread over the
interval) and the real runtime ``Driver`` runs in paced mode at speed 1 on the monotonic clock.
Records go through the real ``Outbox`` to the real ``KafkaPublisher`` (coffeemek format) on the
embedded broker, so publishing competes with the driver for the event loop, as in the service.

Emission lag of a record = the wall time of the model's ``emit`` call minus the wall time its
sim time was due (the driver's anchor: ``anchor_wall + (sim_time - anchor_sim) / speed``).

Baseline, same run, same loop, same load: a trivial pacer with no model.  It replays the records
of the factorysim run on the same schedule, one ``asyncio.sleep`` to each absolute deadline, and
puts each record into an outbox drained by the same publisher (encoding and Kafka sends
included).  Its lateness is the floor that asyncio timers and the publishing load set for any
pacer in this process; lag above it is what the model and the driver add.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import math
import random
import statistics
import time
from array import array
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.kafka_admin import ensure_topics
from simulator.adapters.kafka_options import client_options, producer_options
from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.io_metrics import IoMetrics
from simulator.model.records import ListSink, NullSink, Record, Sink
from simulator.model.sampling import start_sampling
from simulator.model.simulation import Simulation
from simulator.runtime.driver import Driver
from simulator.runtime.gc_tuning import fewer_young_collections
from simulator.runtime.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
WARM_UP_S = 4 * 3600.0  # simulated: lots reach every stage
OUTBOX_CAPACITY = 20_000  # as the service


def scale_pools(pools: dict[tuple[str, str], int], total: int) -> dict[tuple[str, str], int]:
    """Pool sizes proportional to ``pools`` summing to ``total`` (largest remainder, at least 1)."""
    base = sum(pools.values())
    exact = {key: n * total / base for key, n in pools.items()}
    sizes = {key: max(1, math.floor(x)) for key, x in exact.items()}
    by_remainder = sorted(pools, key=lambda k: exact[k] - math.floor(exact[k]), reverse=True)
    i = 0
    while sum(sizes.values()) < total:
        sizes[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    return sizes


def benchmark_data(machines: int, sample_interval_s: float) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8")))
    pools = {(loc, mtype): n for loc, spec in data["locations"].items() for mtype, n in spec["machines"].items()}
    for (loc, mtype), n in scale_pools(pools, machines).items():
        data["locations"][loc]["machines"][mtype] = n
    data["simulation"]["speed"] = 1.0
    data["telemetry"]["sample_interval_s"] = sample_interval_s
    # orders 20 % faster than the busiest location's first stage takes them: every stage works
    # at its location's bottleneck rate and lots queue at the first stage
    first = data["route"][0]
    mean_s = (first["processing_time"]["low"] + first["processing_time"]["high"]) / 2
    mix = data["arrivals"]["location_mix"]
    share = {loc: w / sum(mix.values()) for loc, w in mix.items()}
    capacity_h = {loc: data["locations"][loc]["machines"][first["machine_type"]] * 3600.0 / mean_s for loc in mix}
    data["arrivals"]["rate_per_hour"] = 1.2 * max(capacity_h[loc] / share[loc] for loc in mix)
    return data


def benchmark_configs(machines: int = 1000, sample_interval_s: float = 1.0) -> tuple[Config, Config]:
    """(the plant as measured, the same plant with samples off for the warm-up)."""
    data = benchmark_data(machines, sample_interval_s)
    measured = parse(data, environ={})
    data["telemetry"]["sample_interval_s"] = 0
    return measured, parse(data, environ={})


class TimedSink:
    """The model's sink: notes each record's emission lag, then hands it to the outbox.

    Keeps numbers only (no records): retained records would grow the heap the garbage collector
    walks, which the service does not do."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.driver: Driver | None = None  # set once the driver exists; records before are dropped
        self.lags = array("d")
        self.due = array("d")  # due wall time - the driver's anchor
        self.sim_times = array("d")
        self.samples = array("b")  # 1 where the record is a machine sample

    def emit(self, record: Record) -> None:
        driver = self.driver
        if driver is None:
            return
        now = time.monotonic()
        due = driver._due_wall(record.sim_time)  # the driver's own mapping of sim time to the wall clock
        self.lags.append(now - due)
        self.due.append(due - driver._anchor_wall)
        self.sim_times.append(record.sim_time)
        self.samples.append(record.kind == "sample")
        self.outbox.emit(record)


def build_plant(cfg: Config, warm_cfg: Config, sink: Sink) -> Simulation:
    """The warmed-up plant with its sample processes started (deterministic: the same every time)."""
    sim = Simulation(warm_cfg, sink, sample_limit=20_000)
    sim.start_arrivals()
    sim.env.run(until=WARM_UP_S)
    offsets = random.Random(7)
    for machine in sim.plant.machines.values():  # what Simulation does when sample_interval_s > 0
        interval = cfg.sample_interval_of(machine.machine_type)
        start_sampling(sim, machine, interval, offsets.uniform(0.0, interval))
    return sim


def replay_records(cfg: Config, warm_cfg: Config, count: int) -> tuple[list[Record], float]:
    """The first ``count`` records of the paced run, regenerated as fast as possible (without
    injections the model's event sequence does not depend on when the driver steps it), and the
    CPU seconds the model took to make them (the warm-up left out): the model's own cost."""
    sink = ListSink()
    sim = build_plant(cfg, warm_cfg, NullSink())
    sim.recorder.sink = sink
    gc.collect()
    with fewer_young_collections():  # the collector of the paced run
        cpu = time.process_time()
        while len(sink.records) < count:
            sim.env.step()
        cpu = time.process_time() - cpu
    return sink.records[:count], cpu


class Kafka:
    """The embedded broker with the benchmark's topics; a producer and publisher per phase."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.broker = EmbeddedBroker()
        self.options: dict[str, Any] = {}

    async def __aenter__(self) -> Kafka:
        await self.broker.start()
        self.options = client_options(self.cfg.kafka, self.broker.bootstrap_servers, environ={})
        fmt = CoffeeMekFormat(self.cfg, self.cfg.simulation.seed)
        topics = [self.cfg.kafka.topics.events, *fmt.cycle_topics.values(), *fmt.sample_topics.values()]
        await ensure_topics(self.options, topics, self.cfg.kafka.topic_creation)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.stop()

    async def publishing(self, outbox: Outbox, instance: str) -> tuple[AIOKafkaProducer, KafkaPublisher]:
        producer = AIOKafkaProducer(**self.options, **producer_options(self.cfg.kafka.producer))
        await producer.start()
        fmt = CoffeeMekFormat(self.cfg, self.cfg.simulation.seed, run_id=instance)
        return producer, KafkaPublisher(producer, outbox, fmt, IoMetrics(),
                                        max_in_flight=self.cfg.kafka.producer.max_in_flight_messages)


async def run_factorysim(kafka: Kafka | None, cfg: Config, warm_cfg: Config, duration_s: float,
                         encode_only: bool, during: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """The paced run; ``during`` is entered around the driver's run only (a profiler, say)."""
    outbox = Outbox(OUTBOX_CAPACITY)
    sink = TimedSink(outbox)
    sim = build_plant(cfg, warm_cfg, sink)
    busy = sum(m.current_lot is not None for m in sim.plant.machines.values()) / len(sim.plant.machines)
    queued = sum(pool.queue_length for pool in sim.plant.pools.values())
    driver = Driver(sim, speed=1.0, outbox=outbox)
    sink.driver = driver
    consumer, producer = await _consumer(kafka, cfg, outbox, "factorysim", encode_only)
    gc.collect()
    try:
        with fewer_young_collections(), during or contextlib.nullcontext():  # the collector as a service has it
            wall, cpu = time.monotonic(), time.process_time()
            await driver.run(wall_timeout_s=duration_s)
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        outbox.close()
        sent = await consumer
    finally:
        if producer is not None:
            await producer.stop()
    return {"lags": sink.lags, "due": sink.due, "sim_times": sink.sim_times, "samples": sink.samples,
            "sent": sent, "busy": busy, "queued": queued, "machines": len(sim.plant.machines),
            "stalled": driver.stalled_on_outbox, "driver_max_lag_s": driver.max_lag_s, "driver_lag_s": driver.lag_s,
            "wall_s": wall, "cpu_s": cpu}


async def run_baseline(kafka: Kafka | None, cfg: Config, warm_cfg: Config, paced: dict[str, Any],
                       encode_only: bool) -> dict[str, Any]:
    """Replays the paced run's records on its schedule with plain timers: sleep to each absolute
    deadline, then emit."""
    due = paced["due"]
    records, model_cpu_s = replay_records(cfg, warm_cfg, len(due))
    mismatched = sum(r.sim_time != t for r, t in zip(records, paced["sim_times"], strict=True))
    outbox = Outbox(OUTBOX_CAPACITY)
    consumer, producer = await _consumer(kafka, cfg, outbox, "baseline", encode_only)
    lateness = array("d")
    loop = asyncio.get_running_loop()
    gc.collect()
    try:
        start = loop.time() + 0.05
        i = 0
        wall, cpu = time.monotonic(), time.process_time()
        with fewer_young_collections():  # the same collector as the paced run
            while i < len(due):
                deadline = start + due[i]
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                late = loop.time() - deadline
                while i < len(due) and start + due[i] <= deadline:
                    lateness.append(late)
                    outbox.emit(records[i])
                    i += 1
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        outbox.close()
        sent = await consumer
    finally:
        if producer is not None:
            await producer.stop()
    return {"lags": lateness, "sent": sent, "mismatched": mismatched, "wall_s": wall, "cpu_s": cpu,
            "model_cpu_s": model_cpu_s}


async def _consumer(kafka: Kafka | None, cfg: Config, outbox: Outbox, instance: str,
                    encode_only: bool) -> tuple[asyncio.Task[int], AIOKafkaProducer | None]:
    if kafka is None or encode_only:
        return asyncio.create_task(_encode_only(cfg, outbox, instance)), None
    producer, publisher = await kafka.publishing(outbox, instance)

    async def publish() -> int:
        await publisher.run()
        return publisher.sent

    return asyncio.create_task(publish()), producer


async def _encode_only(cfg: Config, outbox: Outbox, instance: str) -> int:
    fmt = CoffeeMekFormat(cfg, cfg.simulation.seed, run_id=instance)
    count = 0
    while batch := await outbox.get_batch(2000):
        for record in batch:
            count += len(fmt.encode(record))
        await asyncio.sleep(0)
    return count


def quantiles_ms(values: Sequence[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000, max(values) * 1000


async def _measure(machines: int, duration_s: float, repeats: int, encode_only: bool) -> dict[str, float]:
    cfg, warm_cfg = benchmark_configs(machines)
    kafka = None if encode_only else Kafka(cfg)
    ours: list[dict[str, Any]] = []
    bases: list[dict[str, Any]] = []
    if kafka is not None:
        await kafka.__aenter__()
    try:
        for _ in range(repeats):  # interleaved; the run with the lowest p99 of each side is kept
            run = await run_factorysim(kafka, cfg, warm_cfg, duration_s, encode_only)
            ours.append(run)
            bases.append(await run_baseline(kafka, cfg, warm_cfg, run, encode_only))
    finally:
        if kafka is not None:
            await kafka.__aexit__(None, None, None)
    best = min(ours, key=lambda r: quantiles_ms(r["lags"])[1])
    base = min(bases, key=lambda r: quantiles_ms(r["lags"])[1])
    p50, p99, worst = quantiles_ms(best["lags"])
    b50, b99, bmax = quantiles_ms(base["lags"])
    return {
        "machines": float(best["machines"]),
        "records": float(len(best["lags"])),
        "records_s": len(best["lags"]) / duration_s,
        "messages_sent": float(best["sent"]),
        "busy_share": best["busy"],
        "queued_lots": float(best["queued"]),
        "lag_p50_ms": p50,
        "lag_p99_ms": p99,
        "lag_max_ms": worst,
        "baseline_p50_ms": b50,
        "baseline_p99_ms": b99,
        "baseline_max_ms": bmax,
        "ratio_p99": p99 / b99 if b99 > 0 else math.inf,
        "stalled_on_outbox": float(best["stalled"]),
        "driver_max_lag_ms": best["driver_max_lag_s"] * 1000,
        "kafka": 0.0 if encode_only else 1.0,
        "replay_mismatches": float(max(b["mismatched"] for b in bases)),
    }


def measure(machines: int = 1000, duration_s: float = 20.0, repeats: int = 2,
            encode_only: bool = False) -> dict[str, float]:
    """Emission lag quantiles (ms) of the paced driver and of the timer baseline, same run."""
    return asyncio.run(_measure(machines, duration_s, repeats, encode_only))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=20.0, help="wall seconds per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--encode-only", action="store_true", help="encode records without Kafka")
    args = parser.parse_args()
    r = measure(args.machines, args.duration, args.repeats, args.encode_only)
    sink = "coffeemek encoding only" if args.encode_only else "coffeemek to Kafka (embedded broker)"
    print(f"{int(r['machines'])} machines at 1 Hz, speed 1.0, {args.duration:.0f} s per run, records -> {sink}")
    print(f"{int(r['records']):,} records ({r['records_s']:,.0f}/s), {int(r['messages_sent']):,} messages sent, "
          f"{r['busy_share']:.0%} of machines busy, {int(r['queued_lots']):,} lots queued")
    print(f"{'emission lag (ms)':<30}{'p50':>8}{'p99':>8}{'max':>8}")
    print(f"{'timer baseline (same load)':<30}{r['baseline_p50_ms']:>8.2f}{r['baseline_p99_ms']:>8.2f}"
          f"{r['baseline_max_ms']:>8.2f}")
    print(f"{'factorysim paced driver':<30}{r['lag_p50_ms']:>8.2f}{r['lag_p99_ms']:>8.2f}{r['lag_max_ms']:>8.2f}")
    print(f"{'p99 ratio to baseline':<30}{'':>8}{r['ratio_p99']:>8.2f}")
    print(f"{'goal: p99 <= 50 ms':<30}{'':>8}{'met' if r['lag_p99_ms'] <= 50 else 'NOT MET':>8}")
    if r["replay_mismatches"]:
        print(f"warning: the baseline's replay differs from the paced run in {int(r['replay_mismatches'])} records")


if __name__ == "__main__":
    main()
