"""The journal on Kafka: appending a plant's entries in order, acknowledged, and reading them back.

:class:`JournalWriter` sends entries through the service's publisher (same producer, the same
resending after outages) one by one, in the order they were appended, each keyed by its plant so
that a plant's entries keep their order on one partition.  :meth:`JournalWriter.append` returns a
future that is done when Kafka has acknowledged every entry given (or failed with the refusal).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.errors import BrokerUnavailable, FactorySimError
from simulator.formats import journal
from simulator.formats.journal import Entry, Read
from simulator.runtime.waits import wait_for

log = logging.getLogger(__name__)


class JournalFailed(FactorySimError):
    """Kafka refused a journal entry for good."""


@dataclass(slots=True)
class _Pending:
    entries: Sequence[Entry]
    acknowledged: asyncio.Future[None]
    left: int


class JournalWriter:
    def __init__(self, publisher: KafkaPublisher, topic: str) -> None:
        self.publisher = publisher
        self.topic = topic
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.appended = 0
        self.acknowledged = 0
        self.failure: BaseException | None = None

    def append(self, entries: Sequence[Entry]) -> asyncio.Future[None]:
        """Queue ``entries``; the future is done once Kafka acknowledged all of them."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not entries:
            done.set_result(None)
            return done
        self._queue.put_nowait(_Pending(entries, done, len(entries)))
        self.appended += len(entries)
        return done

    async def run(self) -> None:
        """Send what is appended, in order, for as long as the service runs; ends with
        JournalFailed when Kafka refuses an entry for good (nothing can apply any more)."""
        while True:
            pending = await self._queue.get()
            if self.failure is not None:
                raise JournalFailed(f"Kafka refused a journal entry ({self.failure!r}): no input can apply")
            await self._send(pending)

    async def drain(self) -> None:
        """Send what is queued and wait for its acknowledgement (at shutdown)."""
        while not self._queue.empty():
            await self._send(self._queue.get_nowait())
        await self.publisher.flush()

    async def _send(self, pending: _Pending) -> None:
        await self.publisher.submit_many([journal.encode(entry, self.topic) for entry in pending.entries],
                                         functools.partial(self._delivered, pending),
                                         functools.partial(self._refused, pending))

    def _delivered(self, pending: _Pending) -> None:
        self.acknowledged += 1
        pending.left -= 1
        if pending.left == 0 and not pending.acknowledged.done():
            pending.acknowledged.set_result(None)

    def _refused(self, pending: _Pending, exc: BaseException) -> bool:
        """Kafka refused an entry for good: its inputs do not apply, and the writer fails (the
        refusal also makes the service unhealthy through the publisher)."""
        if not pending.acknowledged.done():
            pending.acknowledged.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        if self.failure is None:
            self.failure = exc
            self._queue.put_nowait(_Pending((), pending.acknowledged, 0))  # wakes run() to fail
        return False


async def read_journal(options: dict[str, Any], topic: str, *, timeout_s: float = 60.0) -> list[Read]:
    """Every message of the journal topic, partition by partition in order (a plant's entries are
    on one partition, in their order).  Nobody writes the plants' entries while a service starts,
    so the end is where a fetch brings nothing more (and at least the end offsets: the embedded
    broker reports a partition's end as the last record batch's first offset + 1)."""
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        await wait_for(consumer.topics(), timeout_s)  # the cluster's metadata
        wanted = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not wanted:
            return []
        consumer.assign(wanted)
        ends = await consumer.end_offsets(wanted)
        await consumer.seek_to_beginning(*wanted)
        reads: list[Read] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:  # to the end offsets, then until a fetch brings nothing (some brokers report them low)
            if loop.time() > deadline:
                raise BrokerUnavailable(f"reading the journal {topic} took more than {timeout_s:.0f} s")
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, messages in batch.items():
                for message in messages:
                    try:
                        entry: Entry | journal.JournalError = journal.decode(message.value or b"")
                    except journal.JournalError as exc:
                        entry = exc
                    reads.append(Read(entry, tp.partition, message.offset, message.timestamp))
            if not batch and all([await consumer.position(tp) >= ends[tp] for tp in wanted]):
                return reads
    finally:
        await consumer.stop()
