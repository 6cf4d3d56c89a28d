"""Order intake: lots per wall second consumed from the orders topic, validated and admitted into
the model, factorysim's service vs a raw aiokafka consumer reading the same messages.

Set-up (not timed): the embedded broker; a fresh orders topic with the configured partition count
(3), pre-filled with N valid orders drawn like the reference plant's generated arrivals (location,
priority and quantity mixes of config.yaml), half in the Italian dialect and half in the English
one, names or aliases, each with an ISO-8601 timestamp, keyed by lot code.

- factorysim: the real ``Service`` (simulator/programs/service.py) on the reference config, pointed at
  that topic with a new consumer group, lot events on, its driver paused so that simulated time
  holds (the lots are admitted, their ``lot.received`` events published, but no lot is processed:
  the figure is the intake, not the engine).  Timed from the first non-empty fetch (so the consumer
  group join, about half the session timeout on this broker, is not in the window) until the last
  order's offset is committed, i.e. every order's journal entry acknowledged by Kafka, its lot
  admitted and its offset committed (the service's at-least-once path; the lot events are
  published meanwhile, partly after the window).  The time until the last lot is
  admitted (without waiting for acknowledgements and the commit) is reported too.
- raw consumer: an ``AIOKafkaConsumer`` with the same consumer options (its own new group), reading
  the same N messages with ``getmany`` (same timeout and batch size as the service) and
  ``orjson.loads``-ing each; timed the same way, from the first non-empty fetch to the N-th message.

Runs are interleaved (raw, factorysim, raw, ...); the best of N is the headline, the median is
returned too, and so is the service process's CPU time per lot in the window (it depends much less
than the wall-clock figures on how busy the machine is).  Prints a table and returns the figures;
``run_all.py`` writes them into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.kafka_admin import ensure_topics
from simulator.adapters.kafka_options import client_options, consumer_options, orders_fetch_options, producer_options
from simulator.config.loader import parse
from simulator.config.plant import PRIORITY_ENGLISH
from simulator.config.schema import Config
from simulator.model.arrivals import OrderGenerator, mix_with
from simulator.model.order import Order
from simulator.model.randomness import stream
from simulator.programs.service import Service

ROOT = Path(__file__).resolve().parents[2]
GOAL_LOTS_S = 20_000
FETCH_TIMEOUT_MS, FETCH_RECORDS = 200, 1000  # what the service's order intake asks getmany for


def reference_yaml() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return data


def bench_config(data: dict[str, Any], bootstrap: str, orders_topic: str, name: str) -> Config:
    """The reference plant on ``bootstrap``, reading ``orders_topic`` in a group of its own."""
    data = copy.deepcopy(data)
    data["kafka"] = {
        "bootstrap_servers": bootstrap,
        "topics": {"orders": orders_topic, "telemetry_prefix": f"{name}.telemetry", "events": f"{name}.events",
                   "dead_letter": f"{name}.dead_letter", "journal": f"{name}.journal"},
        "consumer": {"group_id": f"{name}-group"},
    }
    data["http"] = {"host": "127.0.0.1", "port": 0, "open_controls": True}  # no token file for a benchmark
    return parse(data, environ={})


def order_messages(cfg: Config, lots: int, prefix: str, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``lots`` valid orders: the config's arrival mixes, both dialects, names and
    aliases, with timestamps."""
    arrivals = cfg.arrivals
    mix = mix_with(arrivals.location_mix or dict.fromkeys(cfg.locations, 1.0), cfg.location_of)
    generator = OrderGenerator(arrivals, mix, stream(seed, "bench", "orders"), code_prefix=prefix)
    rng = random.Random(seed)
    start = cfg.simulation.start.timestamp()
    out = []
    for _ in range(lots):
        order: Order = generator.order()
        names = [order.location, *cfg.locations[order.location].aliases]
        location = rng.choice(names)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + rng.uniform(0, 86_400)))
        if rng.random() < 0.5:
            body = {"codice_lotto": order.lot_code, "cliente": order.customer, "quantita": order.quantity,
                    "location": location, "priorita": order.priority, "timestamp": stamp}
        else:
            body = {"lot_code": order.lot_code, "customer": order.customer, "quantity": order.quantity,
                    "location": location, "priority": PRIORITY_ENGLISH[order.priority], "timestamp": stamp}
        out.append((order.lot_code.encode(), orjson.dumps(body)))
    return out


async def fill_topic(cfg: Config, messages: list[tuple[bytes, bytes]]) -> None:
    """Create the orders topic (the config's partition count) and write ``messages``, acknowledged."""
    kafka = cfg.kafka
    options = client_options(kafka, kafka.bootstrap_servers, {})
    await ensure_topics(options, [kafka.topics.orders], kafka.topic_creation)
    producer = AIOKafkaProducer(**options, **producer_options(kafka.producer))
    await producer.start()
    try:
        futures = [await producer.send(kafka.topics.orders, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _consumer_kwargs(cfg: Config, group_id: str) -> dict[str, Any]:
    kafka = cfg.kafka
    return {**client_options(kafka, kafka.bootstrap_servers, {}), **consumer_options(kafka.consumer, group_id),
            **orders_fetch_options(kafka.consumer)}


async def run_raw(cfg: Config, lots: int, group_id: str) -> float:
    """Lots/s of a bare consumer: getmany + orjson.loads, first non-empty fetch to the last message."""
    consumer = AIOKafkaConsumer(**_consumer_kwargs(cfg, group_id))
    consumer.subscribe([cfg.kafka.topics.orders])
    await consumer.start()
    try:
        count = 0
        started: float | None = None
        while count < lots:
            batch = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_RECORDS)
            if batch and started is None:
                started = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    orjson.loads(message.value or b"")
                    count += 1
        assert started is not None
        return lots / (time.perf_counter() - started)
    finally:
        await consumer.stop()


@dataclass
class _Clock:
    """When the service fetched its first orders, admitted the last lot and committed the last offset."""

    lots: int
    first_fetch: float | None = None
    first_fetch_cpu: float = 0.0
    committed_cpu: float = 0.0
    admitted: float | None = None
    committed: float | None = None
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    all_committed: asyncio.Event = field(default_factory=asyncio.Event)


class BenchService(Service):
    """The service, timed at its Kafka consumer: the first non-empty fetch and every successful commit."""

    clock: _Clock

    async def _start_kafka(self, stack: Any) -> None:
        await super()._start_kafka(stack)
        consumer = self.consumer
        assert consumer is not None
        fetch, commit = consumer.getmany, consumer.commit
        clock = self.clock

        async def timed_getmany(*args: Any, **kwargs: Any) -> Any:
            batch = await fetch(*args, **kwargs)
            if batch and clock.first_fetch is None:
                clock.first_fetch = time.perf_counter()
                clock.first_fetch_cpu = time.process_time()
            return batch

        async def timed_commit(offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
            await commit(offsets)
            clock.positions.update({tp: meta.offset for tp, meta in offsets.items()})
            if clock.committed is None and sum(clock.positions.values()) >= clock.lots:
                clock.committed = time.perf_counter()
                clock.committed_cpu = time.process_time()
                clock.all_committed.set()

        consumer.getmany = timed_getmany  # type: ignore[method-assign]
        consumer.commit = timed_commit  # type: ignore[method-assign]



@dataclass(frozen=True)
class ServiceRun:
    committed_lots_s: float  # until the last offset is committed
    admitted_lots_s: float  # until the last lot is admitted
    cpu_us_per_lot: float  # this process's CPU time in the window, per lot


async def run_factorysim(cfg: Config, lots: int, timeout_s: float = 300.0) -> ServiceRun:
    """The service, driver paused, until it has committed the offsets of all ``lots`` orders."""
    service = BenchService(cfg)
    service.clock = clock = _Clock(lots)
    service.driver.pause()  # simulated time holds: lots are admitted, none is processed
    task = asyncio.get_running_loop().create_task(service.run(), name="service")
    try:
        deadline = time.monotonic() + timeout_s
        while clock.admitted is None:
            if task.done():
                task.result()
                raise RuntimeError("the service stopped early")
            if service.sim.stats.received >= lots:
                clock.admitted = time.perf_counter()
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{service.sim.stats.received} of {lots} lots admitted in {timeout_s:.0f} s")
            else:
                await asyncio.sleep(0.002)  # poll interval: small against a window of seconds
        await asyncio.wait_for(clock.all_committed.wait(), max(1.0, deadline - time.monotonic()))
        if service.intake is not None and service.intake.dead_lettered:
            raise RuntimeError(f"{service.intake.dead_lettered} orders were dead-lettered")
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 120)
    assert clock.first_fetch is not None
    assert clock.admitted is not None
    assert clock.committed is not None
    return ServiceRun(lots / (clock.committed - clock.first_fetch), lots / (clock.admitted - clock.first_fetch),
                      (clock.committed_cpu - clock.first_fetch_cpu) / lots * 1e6)


@dataclass
class Runs:
    raw: list[float] = field(default_factory=list)
    committed: list[float] = field(default_factory=list)
    admitted: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


async def _interleaved(lots: int, repeats: int, progress: Callable[[str], None] | None) -> Runs:
    data = reference_yaml()
    run = f"bench-intake-{uuid.uuid4().hex[:8]}"
    runs = Runs()
    async with EmbeddedBroker() as broker:
        orders_topic = f"{run}.orders"
        cfg = bench_config(data, broker.bootstrap_servers, orders_topic, run)
        await fill_topic(cfg, order_messages(cfg, lots, f"{run}-lot"))

        for i in range(repeats):  # interleaved: the machine is noisy
            gc.collect()
            raw = await run_raw(cfg, lots, f"{run}-raw-{i}")
            runs.raw.append(raw)
            if progress is not None:
                progress(f"run {i + 1}: raw consumer {raw:,.0f} lots/s")
            gc.collect()
            ours = await run_factorysim(bench_config(data, broker.bootstrap_servers, orders_topic, f"{run}-svc-{i}"),
                                        lots)
            runs.committed.append(ours.committed_lots_s)
            runs.admitted.append(ours.admitted_lots_s)
            runs.cpu_us.append(ours.cpu_us_per_lot)
            if progress is not None:
                progress(f"run {i + 1}: factorysim {ours.committed_lots_s:,.0f} lots/s committed, "
                         f"{ours.admitted_lots_s:,.0f} admitted, {ours.cpu_us_per_lot:.0f} us CPU per lot")
    return runs


def summarise(runs: Runs) -> dict[str, float]:
    result = {
        "factorysim_lots_s": max(runs.committed),
        "factorysim_admitted_lots_s": max(runs.admitted),
        "raw_consumer_lots_s": max(runs.raw),
        "factorysim_lots_s_median": statistics.median(runs.committed),
        "raw_consumer_lots_s_median": statistics.median(runs.raw),
        "factorysim_cpu_us_per_lot": min(runs.cpu_us),
    }
    result["ratio"] = result["factorysim_lots_s"] / result["raw_consumer_lots_s"]
    result["ratio_median"] = result["factorysim_lots_s_median"] / result["raw_consumer_lots_s_median"]
    return result


def measure(lots: int = 100_000, repeats: int = 3, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    return summarise(asyncio.run(_interleaved(lots, repeats, progress)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lots", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quiet", action="store_true", help="no line per run")
    args = parser.parse_args()
    result = measure(args.lots, args.repeats, progress=None if args.quiet else print)
    print(f"{'order intake, ' + format(args.lots, ',') + ' lots, lots/s':<50}{'best':>12}{'median':>12}")
    print(f"{'raw aiokafka consumer (baseline)':<50}{result['raw_consumer_lots_s']:>12,.0f}"
          f"{result['raw_consumer_lots_s_median']:>12,.0f}")
    print(f"{'factorysim service, admitted + acked + committed':<50}{result['factorysim_lots_s']:>12,.0f}"
          f"{result['factorysim_lots_s_median']:>12,.0f}")
    print(f"{'factorysim service, admitted only':<50}{result['factorysim_admitted_lots_s']:>12,.0f}")
    print(f"{'factorysim CPU per lot (us, this process)':<50}{result['factorysim_cpu_us_per_lot']:>12.0f}")
    print(f"{'ratio to raw':<50}{result['ratio']:>12.2f}{result['ratio_median']:>12.2f}")
    met = "met" if result["factorysim_lots_s"] >= GOAL_LOTS_S else "NOT met"
    print(f"goal >= {GOAL_LOTS_S:,} lots/s: {met}")


if __name__ == "__main__":
    main()
