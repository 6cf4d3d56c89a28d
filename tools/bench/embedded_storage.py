"""The embedded broker's storage engines: persistent (tansu on SeaweedFS S3) vs memory.

- produce throughput: pre-serialised 500-byte messages keyed by 64 machine ids, sent with aiokafka to
  a fresh 3-partition topic and counted from the first send to the last acknowledgement; with the
  service's producer settings (kafka.producer defaults: acks all, linger 20 ms, 256 KiB batches),
  the same with 1 MiB batches, and aiokafka's defaults (16 KiB batches): the persistent engine
  writes S3 objects for every batch, so its cost per message falls as batches grow; both
  brokers run side by side and the runs alternate between them, best of ``--repeats``;
- start-up: from ``start()`` until the broker accepts connections (and SeaweedFS accepts writes),
  for the memory engine, a persistent one on a new data directory and one on a directory with data;
- disk: bytes allocated in the data directory per million 500-byte messages (``--disk-messages``
  produced, then scaled).

``python tools/bench/embedded_storage.py`` prints a table and returns the figures from ``measure()``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.kafka_admin import ensure_topics
from simulator.adapters.kafka_options import producer_options
from simulator.config.kafka import Producer, TopicCreation

PAYLOAD_BYTES = 500
PAYLOADS = [os.urandom(PAYLOAD_BYTES) for _ in range(256)]  # incompressible, like nothing in particular
KEYS = [f"machine-{i:02d}".encode() for i in range(64)]
SETTINGS = {"service": producer_options(Producer()),
            "service, 1 MiB batches": producer_options(Producer(max_batch_size=1_048_576)),
            "aiokafka defaults": {"acks": "all", "enable_idempotence": False}}


async def produce(bootstrap: str, count: int, settings: dict[str, Any]) -> float:
    """Messages per second acknowledged on a fresh topic."""
    topic = f"bench.storage.{uuid.uuid4().hex[:8]}"
    await ensure_topics({"bootstrap_servers": bootstrap}, [topic], TopicCreation(partitions=3))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **settings)
    await producer.start()
    try:
        await (await producer.send(topic, b"warm-up"))
        futures = []
        started = time.perf_counter()
        for i in range(count):
            futures.append(await producer.send(topic, PAYLOADS[i % len(PAYLOADS)], key=KEYS[i % len(KEYS)]))
        await asyncio.gather(*futures)
        return count / (time.perf_counter() - started)
    finally:
        await producer.stop()


def allocated_bytes(directory: Path) -> int:
    """Disk blocks in use under ``directory`` (sparse files count what they use)."""
    return sum(p.stat().st_blocks * 512 for p in directory.rglob("*") if p.is_file())


async def timed_start(broker: EmbeddedBroker) -> float:
    started = time.perf_counter()
    await broker.start()
    return time.perf_counter() - started


async def _startup(root: Path, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"memory": [], "persistent, new data dir": [], "persistent, existing data": []}
    for i in range(repeats):
        memory = EmbeddedBroker()
        times["memory"].append(await timed_start(memory))
        await memory.stop()
        fresh = EmbeddedBroker(storage="persistent", data_dir=root / f"startup-{i}")
        times["persistent, new data dir"].append(await timed_start(fresh))
        await produce(fresh.bootstrap_servers, 1000, SETTINGS["service"])
        await fresh.stop()
        again = EmbeddedBroker(storage="persistent", data_dir=root / f"startup-{i}")
        times["persistent, existing data"].append(await timed_start(again))
        await again.stop()
    return {name: statistics.median(values) for name, values in times.items()}


async def _throughput(root: Path, count: int, repeats: int) -> dict[str, dict[str, float]]:
    runs: dict[str, dict[str, list[float]]] = {s: {"memory": [], "persistent": []} for s in SETTINGS}
    async with EmbeddedBroker() as memory, \
            EmbeddedBroker(storage="persistent", data_dir=root / "throughput") as persistent:
        brokers = {"memory": memory, "persistent": persistent}
        for _ in range(repeats):  # interleaved, best of N: the machine is noisy
            for setting, options in SETTINGS.items():
                for name, broker in brokers.items():
                    runs[setting][name].append(await produce(broker.bootstrap_servers, count, options))
    return {setting: {name: max(values) for name, values in by_broker.items()} for setting, by_broker in runs.items()}


async def _disk(root: Path, count: int) -> dict[str, float]:
    directory = root / "disk"
    async with EmbeddedBroker(storage="persistent", data_dir=directory) as broker:
        empty = allocated_bytes(directory)
        await produce(broker.bootstrap_servers, count, SETTINGS["service"])
    used = allocated_bytes(directory) - empty
    return {"messages": count, "bytes": used, "bytes_per_million": used * 1_000_000 / count,
            "payload_bytes_per_million": PAYLOAD_BYTES * 1_000_000}


async def _measure(count: int, repeats: int, disk_messages: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="factorysim-bench-") as tmp:
        root = Path(tmp)
        return {"startup_s": await _startup(root, repeats),
                "produce_msg_s": await _throughput(root, count, repeats),
                "disk": await _disk(root, disk_messages)}


def measure(count: int = 200_000, repeats: int = 3, disk_messages: int = 1_000_000) -> dict[str, Any]:
    return asyncio.run(_measure(count, repeats, disk_messages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000, help="messages per throughput run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--disk-messages", type=int, default=1_000_000)
    args = parser.parse_args()
    result = measure(args.messages, args.repeats, args.disk_messages)
    print(f"{'produce, 500-byte messages (msg/s)':<44}{'memory':>12}{'persistent':>12}{'ratio':>8}")
    for setting, rates in result["produce_msg_s"].items():
        ratio = rates["persistent"] / rates["memory"]
        print(f"{'  producer: ' + setting:<44}{rates['memory']:>12,.0f}{rates['persistent']:>12,.0f}{ratio:>8.2f}")
    print(f"{'start-up, median (s)':<44}")
    for name, seconds in result["startup_s"].items():
        print(f"{'  ' + name:<44}{seconds:>12.2f}")
    disk = result["disk"]
    print(f"{'disk per million 500-byte messages (MB)':<44}{disk['bytes_per_million'] / 1e6:>12,.0f}"
          f"   (payload alone {disk['payload_bytes_per_million'] / 1e6:,.0f} MB; "
          f"{disk['messages']:,} messages measured)")


if __name__ == "__main__":
    main()
