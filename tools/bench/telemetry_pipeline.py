"""Telemetry pipeline throughput: records per second delivered to Kafka through factorysim's own
pipeline vs a raw aiokafka producer sending the same payloads, pre-serialised, to the same broker.

The records are realistic telemetry of the reference plant (config.yaml, machine samples every
``sample_interval_s`` of simulated time besides its cycle records and lot events), generated
beforehand by running the model into a list sink.  Both sides use a producer configured like the
service's (``producer_options``: linger_ms, max_batch_size, acks) on the embedded broker, their
topics created first (3 partitions) and their metadata fetched before the clock starts; every run
has its own topics.

- factorysim: the records go into an ``Outbox`` the way the driver feeds it (slices of 2,000,
  stopping while it is full) and a ``KafkaPublisher`` drains it through the coffeemek format; timed
  from the first record put into the outbox until the publisher has every message acknowledged.
- baseline: the same messages encoded beforehand (topic, key, headers, value bytes); timed from
  the first ``await producer.send()`` (phase one) until every delivery future is done (phase two).

What was prepared beforehand is frozen out of the garbage collector's way on both sides (a
service never holds it).  Runs are interleaved (baseline, factorysim, baseline, ...); the best and
the median of each are reported, and this process's CPU time per message beside them (the
broker runs in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer
from bench_common import machine

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.kafka_admin import ensure_topics
from simulator.adapters.kafka_options import client_options, producer_options
from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.io_metrics import IoMetrics
from simulator.model.records import ListSink, Record
from simulator.model.simulation import Simulation
from simulator.runtime.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
OUTBOX_CAPACITY = 20_000  # the service's default
SLICE = 2_000  # records per driver slice between yields to the event loop
Prepared = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # topic, value, key, headers


def bench_config(sample_interval_s: float, tag: str = "bench") -> Config:
    """The reference plant with machine samples on, its topics prefixed with ``tag``."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8")))
    data["telemetry"]["sample_interval_s"] = sample_interval_s
    data["kafka"]["topics"] = {"orders": f"{tag}.orders", "telemetry_prefix": f"{tag}.telemetry",
                               "events": f"{tag}.events", "dead_letter": f"{tag}.dead_letter",
                               "journal": f"{tag}.journal"}
    return parse(data, environ={})


def generate(cfg: Config, count: int) -> list[Record]:
    """The first ``count`` records of a run of the model with generated arrivals."""
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.start_arrivals()
    while len(sink.records) < count:
        sim.env.step()
    return sink.records[:count]


def topics_of(fmt: CoffeeMekFormat) -> list[str]:
    return [fmt.topics.events, *fmt.cycle_topics.values(), *fmt.sample_topics.values()]


async def started_producer(cfg: Config, servers: str, topics: list[str]) -> AIOKafkaProducer:
    """A producer like the service's, its topics created and their metadata known."""
    options = client_options(cfg.kafka, servers, {})
    await ensure_topics(options, topics, cfg.kafka.topic_creation)
    producer = AIOKafkaProducer(**options, **producer_options(cfg.kafka.producer))
    await producer.start()
    for topic in topics:
        await producer.partitions_for(topic)
    return producer


@contextmanager
def inputs_frozen() -> Iterator[None]:
    """Keep the garbage collector off what was prepared beforehand (the records, the encoded
    messages): a service never holds them, and scanning them would be charged to the run."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def feed(outbox: Outbox, records: list[Record]) -> None:
    """Put the records into the outbox like the driver: in slices, yielding in between, holding
    while the outbox is full."""
    i, n = 0, len(records)
    while i < n:
        if outbox.full:
            await outbox.wait_for_room()
            continue
        end = min(n, i + SLICE)
        while i < end and not outbox.full:
            outbox.emit(records[i])
            i += 1
        await asyncio.sleep(0)
    outbox.close()


async def run_factorysim(records: list[Record], sample_interval_s: float, servers: str,
                         expected: int) -> tuple[float, float]:
    """Records per second through outbox -> coffeemek -> KafkaPublisher, all acknowledged, and
    this process's CPU microseconds per record."""
    cfg = bench_config(sample_interval_s, f"bench-{uuid.uuid4().hex[:8]}")
    fmt = CoffeeMekFormat(cfg, cfg.simulation.seed)
    producer = await started_producer(cfg, servers, topics_of(fmt))
    try:
        outbox = Outbox(OUTBOX_CAPACITY)
        publisher = KafkaPublisher(producer, outbox, fmt, IoMetrics(),
                                   max_in_flight=cfg.kafka.producer.max_in_flight_messages)
        with inputs_frozen():
            started, cpu = time.perf_counter(), time.process_time()
            publishing = asyncio.create_task(publisher.run())
            await feed(outbox, records)
            await publishing
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await producer.stop()
    if publisher.sent != expected or publisher.fatal_error is not None:
        raise RuntimeError(f"factorysim delivered {publisher.sent} of {expected} ({publisher.fatal_error})")
    return len(records) / elapsed, cpu * 1e6 / len(records)


def prepare(records: list[Record], sample_interval_s: float, tag: str) -> tuple[list[str], list[Prepared]]:
    """Every record encoded beforehand for topics prefixed with ``tag``."""
    cfg = bench_config(sample_interval_s, tag)
    fmt = CoffeeMekFormat(cfg, cfg.simulation.seed)
    prepared = [(m.topic, m.value, m.key, list(m.headers)) for r in records for m in fmt.encode(r)]
    return topics_of(fmt), prepared


async def run_raw(records: list[Record], sample_interval_s: float,
                  servers: str) -> tuple[float, float, list[Prepared]]:
    """Messages per second of a raw producer sending pre-serialised payloads (two phases), this
    process's CPU microseconds per message, and the messages."""
    topics, messages = prepare(records, sample_interval_s, f"raw-{uuid.uuid4().hex[:8]}")
    cfg = bench_config(sample_interval_s)
    producer = await started_producer(cfg, servers, topics)
    try:
        with inputs_frozen():
            started, cpu = time.perf_counter(), time.process_time()
            send = producer.send
            futures = [await send(topic, value, key=key, headers=headers) for topic, value, key, headers in messages]
            await asyncio.gather(*futures)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await producer.stop()
    return len(messages) / elapsed, cpu * 1e6 / len(messages), messages


async def _measure(records: list[Record], sample_interval_s: float, repeats: int,
                   verbose: bool) -> dict[str, float]:
    ours: list[tuple[float, float]] = []  # (records/s, CPU µs per record)
    raw: list[tuple[float, float]] = []  # (messages/s, CPU µs per message)
    messages: list[Prepared] = []
    async with EmbeddedBroker() as broker:
        for run in range(1, repeats + 1):  # interleaved: the machine is noisy
            rate, cpu, messages = await run_raw(records, sample_interval_s, broker.bootstrap_servers)
            raw.append((rate, cpu))
            ours.append(await run_factorysim(records, sample_interval_s, broker.bootstrap_servers, len(messages)))
            if verbose:
                print(f"run {run}: raw aiokafka {raw[-1][0]:,.0f} msg/s ({raw[-1][1]:.1f} µs CPU/msg), "
                      f"factorysim {ours[-1][0]:,.0f} records/s ({ours[-1][1]:.1f} µs CPU/record), "
                      f"ratio {ours[-1][0] / raw[-1][0]:.2f}")
    result = {
        "factorysim_records_s": max(r for r, _ in ours),
        "raw_aiokafka_msgs_s": max(r for r, _ in raw),
        "factorysim_records_s_median": statistics.median(r for r, _ in ours),
        "raw_aiokafka_msgs_s_median": statistics.median(r for r, _ in raw),
        "factorysim_cpu_us_per_record": min(c for _, c in ours),
        "raw_aiokafka_cpu_us_per_msg": min(c for _, c in raw),
        "records": float(len(records)),
        **{f"share_{kind}": sum(r.kind == kind for r in records) / len(records)
           for kind in ("sample", "cycle", "lot_event")},
        "messages_per_record": len(messages) / len(records),
        "payload_bytes_mean": sum(len(m[1]) for m in messages) / len(messages),
    }
    result["ratio"] = result["factorysim_records_s"] / result["raw_aiokafka_msgs_s"]
    result["ratio_median"] = result["factorysim_records_s_median"] / result["raw_aiokafka_msgs_s_median"]
    return result


def measure(records: int = 100_000, repeats: int = 3, sample_interval_s: float = 1800.0,
            verbose: bool = False) -> dict[str, float]:
    data = generate(bench_config(sample_interval_s), records)
    return asyncio.run(_measure(data, sample_interval_s, repeats, verbose))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-interval", type=float, default=1800.0, help="simulated seconds between samples")
    args = parser.parse_args()
    print(machine())
    result = measure(args.records, args.repeats, args.sample_interval, verbose=True)
    print(f"{'telemetry pipeline':<32}{'per second':>14}")
    print(f"{'raw aiokafka (baseline), msgs':<32}{result['raw_aiokafka_msgs_s']:>14,.0f}")
    print(f"{'factorysim, records':<32}{result['factorysim_records_s']:>14,.0f}")
    print(f"{'ratio (goal >= 0.8)':<32}{result['ratio']:>14.2f}")
    print(f"{'ratio of the medians':<32}{result['ratio_median']:>14.2f}")
    print(f"{result['records']:,.0f} records ({result['share_sample']:.0%} machine samples, "
          f"{result['share_cycle']:.0%} cycle records, {result['share_lot_event']:.0%} lot events), "
          f"{result['messages_per_record']:.2f} messages per record, {result['payload_bytes_mean']:,.0f} payload "
          f"bytes on average")
    print(f"CPU of this process: raw {result['raw_aiokafka_cpu_us_per_msg']:.1f} µs/msg, factorysim "
          f"{result['factorysim_cpu_us_per_record']:.1f} µs/record (best runs)")


if __name__ == "__main__":
    main()
