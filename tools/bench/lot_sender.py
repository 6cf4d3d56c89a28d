"""lot-sender throughput: lots per second produced and acknowledged on the embedded broker, the
lot-sender's own send path (generation, dialect rendering, headers, acknowledgement accounting)
vs a raw aiokafka producer sending the same messages pre-built.

Both use the same producer settings (the reference config's kafka.producer) and send to a fresh
3-partition topic each run; the figure is lots from the first send to the last acknowledgement,
per second.  Prints a table and returns the figures; `run_all.py` writes them into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.kafka_admin import ensure_topics
from simulator.adapters.kafka_options import producer_options
from simulator.config.kafka import Producer, TopicCreation
from simulator.config.plant import ArrivalSettings
from simulator.lotsender.cli import DEFAULT_LOCATIONS
from simulator.lotsender.messages import utc_now_text
from simulator.lotsender.plan import RUN_HEADER, SEQ_HEADER, GeneratedLots, Planned
from simulator.lotsender.sender import LotSender


def _plan(run: str) -> GeneratedLots:
    return GeneratedLots(ArrivalSettings(), DEFAULT_LOCATIONS, seed=7, code_prefix=f"L-bench-{run}", dialect="it",
                         rate_per_min=None, timestamp=utc_now_text)


async def _topic(bootstrap: str) -> str:
    topic = f"bench.orders.{uuid.uuid4().hex[:8]}"
    await ensure_topics({"bootstrap_servers": bootstrap}, [topic], TopicCreation(partitions=3))
    return topic


async def _producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(Producer()))
    await producer.start()
    return producer


async def run_raw(bootstrap: str, messages: list[Planned]) -> float:
    topic = await _topic(bootstrap)
    producer = await _producer(bootstrap)
    try:
        futures = []
        started = time.perf_counter()
        for item in messages:
            headers = [(RUN_HEADER, b"raw"), (SEQ_HEADER, str(item.seq).encode())]
            futures.append(await producer.send(topic, item.value, key=item.key, headers=headers))
        await asyncio.gather(*futures)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def run_lot_sender(bootstrap: str, lots: int) -> tuple[float, int]:
    topic = await _topic(bootstrap)
    producer = await _producer(bootstrap)
    try:
        sender = LotSender(producer, topic, "bench")
        started = time.perf_counter()
        stats = await sender.send(_plan(uuid.uuid4().hex[:6]), count=lots)
        return stats.acked / (time.perf_counter() - started), stats.failed
    finally:
        await producer.stop()


async def _measure(lots: int, repeats: int) -> dict[str, Any]:
    messages = [item for _, item in zip(range(lots), _plan("raw"), strict=False)]
    raw, ours, failed = [], [], 0
    async with EmbeddedBroker() as broker:
        for _ in range(repeats):  # interleaved, best of N: the machine is noisy
            raw.append(await run_raw(broker.bootstrap_servers, messages))
            rate, lost = await run_lot_sender(broker.bootstrap_servers, lots)
            ours.append(rate)
            failed += lost
    result: dict[str, Any] = {"raw_aiokafka_lots_s": max(raw), "lot_sender_lots_s": max(ours), "failed": failed,
                              "runs_raw": raw, "runs_lot_sender": ours}
    result["ratio"] = result["lot_sender_lots_s"] / result["raw_aiokafka_lots_s"]
    return result


def measure(lots: int = 100_000, repeats: int = 3) -> dict[str, Any]:
    return asyncio.run(_measure(lots, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.lots, args.repeats)
    print(f"{'lot-sender':<34}{'lots/s':>12}")
    print(f"{'raw aiokafka (baseline)':<34}{result['raw_aiokafka_lots_s']:>12,.0f}")
    print(f"{'lot-sender send path':<34}{result['lot_sender_lots_s']:>12,.0f}")
    print(f"{'ratio':<34}{result['ratio']:>12.2f}")
    met = "met" if result["lot_sender_lots_s"] >= 50_000 else "NOT MET"
    print(f"{'goal: lot-sender >= 50,000 lots/s':<34}{met:>12}")


if __name__ == "__main__":
    main()
