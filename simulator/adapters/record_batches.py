"""One open record batch per partition of a topic, filled through aiokafka's batch API.

``producer.send`` costs about 15 µs per message (partitioning in Python, a future per message);
appending to a batch the caller ships itself costs a fraction of that.  A key goes to the
partition Kafka's default partitioner gives it (see :mod:`partitioning`), so a key's messages
stay in order.  Each batch carries the caller's per-message items (callbacks, send instants…).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer

from simulator.adapters.partitioning import partition_of

T = TypeVar("T")


@dataclass(slots=True)
class OpenBatch(Generic[T]):
    topic: str
    partition: int
    builder: Any  # aiokafka's BatchBuilder
    items: list[T] = field(default_factory=list)  # the caller's, one per message, in order


class TopicBatches(Generic[T]):
    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: Sequence[int]) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = sorted(partitions)
        self.open: dict[int, OpenBatch[T]] = {}

    def add(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], item: T,
            timestamp: int | None = None) -> OpenBatch[T] | None:
        """Append a message to its partition's open batch; return that batch if it was full (a new
        one then holds the message: an empty batch takes a message of any size).  ``timestamp``:
        the record's, in milliseconds since the epoch (None: the time the batch is built)."""
        partitions = self.partitions
        partition = partitions[partition_of(key, len(partitions)) if key else 0]
        full = None
        batch = self.open.get(partition)
        if batch is None or batch.builder.append(timestamp=timestamp, key=key, value=value, headers=headers) is None:
            full = self.open.pop(partition, None)
            batch = self.open[partition] = OpenBatch(self.topic, partition, self.producer.create_batch())
            batch.builder.append(timestamp=timestamp, key=key, value=value, headers=headers)
        batch.items.append(item)
        return full

    def take_all(self) -> list[OpenBatch[T]]:
        batches = list(self.open.values())
        self.open.clear()
        return batches

    async def ship(self, batch: OpenBatch[T]) -> asyncio.Future[object]:
        """Hand a complete batch to the producer; the future settles when the broker acknowledged it."""
        batch.builder.close()
        future: asyncio.Future[object] = await self.producer.send_batch(batch.builder, batch.topic,
                                                                        partition=batch.partition)
        return future
