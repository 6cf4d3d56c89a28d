"""Reading the journal back from Kafka: all of it, from given offsets on, its newest run, its ends.

Nobody writes a run's entries while a service starts, so a read ends where a fetch brings
nothing more (and at least at the end offsets: the embedded broker reports a partition's end as
the last record batch's first offset + 1, which is before the true end).  A read gives up when
the broker brings nothing for ``timeout_s`` seconds before the end (not after ``timeout_s`` in
all: a long journal takes as long as it takes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from simulator.adapters.partitioning import partition_of
from simulator.asyncio_waits import wait_for
from simulator.errors import BrokerUnavailable
from simulator.formats import journal
from simulator.formats.journal import Entry, Read

log = logging.getLogger(__name__)

_FETCH_BYTES = 8 * 1024 * 1024
_NEWEST_WINDOW = 256  # entries read back at first for a plant's newest one (then four times as many)


def _consumer(options: dict[str, Any]) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**options, enable_auto_commit=False, auto_offset_reset="earliest",
                            max_partition_fetch_bytes=_FETCH_BYTES)


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    await wait_for(consumer.topics(), timeout_s)  # the cluster's metadata
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def _read(message: Any, partition: int) -> Read:
    try:
        entry: Entry | journal.JournalError = journal.decode_entry(message.value or b"")
    except journal.JournalError as exc:
        entry = exc
    return Read(entry, partition, message.offset, message.timestamp)


async def _read_to_end(consumer: AIOKafkaConsumer, wanted: Iterable[TopicPartition], topic: str,
                       timeout_s: float) -> list[Read]:
    wanted = list(wanted)
    ends = await consumer.end_offsets(wanted)
    reads: list[Read] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:  # to the end offsets, then until a fetch brings nothing (some brokers report them low)
        if loop.time() > deadline:
            raise BrokerUnavailable(f"reading the journal {topic}: the broker brought nothing for {timeout_s:.0f} s")
        batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
        for tp, messages in batch.items():
            partition = tp.partition
            reads.extend(_read(message, partition) for message in messages)
        if batch:
            deadline = loop.time() + timeout_s
        elif all([await consumer.position(tp) >= ends[tp] for tp in wanted]):
            return reads


async def read_journal(options: dict[str, Any], topic: str, *, timeout_s: float = 60.0) -> list[Read]:
    """Every message of the journal, partition by partition in order (a plant's entries are on
    one partition, in their order)."""
    consumer = _consumer(options)
    await consumer.start()
    try:
        wanted = await _partitions(consumer, topic, timeout_s)
        if not wanted:
            return []
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        return await _read_to_end(consumer, wanted, topic, timeout_s)
    finally:
        await consumer.stop()


async def read_journal_after(options: dict[str, Any], topic: str, offsets: Mapping[int, int], partitions: int, *,
                             timeout_s: float = 60.0) -> list[Read] | None:
    """The journal from ``offsets`` on (a snapshot's mark), or None when the topic no longer has
    the ``partitions`` it had then (its plants' entries may be on other partitions now)."""
    consumer = _consumer(options)
    await consumer.start()
    try:
        wanted = await _partitions(consumer, topic, timeout_s)
        if len(wanted) != partitions:
            log.warning("the journal %s has %d partitions, %d when the snapshot was taken: it is read whole", topic,
                        len(wanted), partitions)
            return None
        consumer.assign(wanted)
        beginnings = await consumer.beginning_offsets(wanted)
        for tp in wanted:
            consumer.seek(tp, max(offsets.get(tp.partition, 0), beginnings[tp]))
        return await _read_to_end(consumer, wanted, topic, timeout_s)
    finally:
        await consumer.stop()


async def newest_run_id(options: dict[str, Any], topic: str, *, plants: set[str] | None = None,
                        timeout_s: float = 60.0) -> str | None:
    """The run of the entry written last on the journal (the run that was going on when the
    service stopped), read from the partitions' last record batches; None when the journal is
    empty or that entry cannot be read.  ``plants``: the newest entry of one of these plants (read
    backwards from the end of their partitions, a window at a time, until one is found)."""
    consumer = _consumer(options)
    await consumer.start()
    try:
        wanted = await _partitions(consumer, topic, timeout_s)
        if not wanted:
            return None
        if plants is not None:
            keyed = {partition_of(plant.encode(), len(wanted)) for plant in plants}
            wanted = [tp for i, tp in enumerate(wanted) if i in keyed]
        consumer.assign(wanted)
        beginnings, ends = await consumer.beginning_offsets(wanted), await consumer.end_offsets(wanted)
        window = 1 if plants is None else _NEWEST_WINDOW
        while True:
            for tp in wanted:
                consumer.seek(tp, max(beginnings[tp], ends[tp] - window))
            reads = await _read_to_end(consumer, wanted, topic, timeout_s)
            if plants is not None:
                reads = [r for r in reads if isinstance(r.entry, journal.JournalError) or r.entry.plant in plants]
            if reads or all(ends[tp] - window <= beginnings[tp] for tp in wanted):
                break
            window *= 4
    finally:
        await consumer.stop()
    if not reads:
        return None
    newest = max(reads, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return None if isinstance(newest.entry, journal.JournalError) else newest.entry.run_id


class JournalEnds:
    """The journal's end offsets, asked for before a snapshot is taken (its mark): one consumer
    without a group, kept open while the service runs."""

    def __init__(self, options: dict[str, Any], topic: str) -> None:
        self.options = options
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._started: asyncio.Future[None] | None = None
        self._wanted: list[TopicPartition] = []

    async def ends(self, timeout_s: float = 5.0) -> dict[int, int]:
        """Partition -> an offset at or before the one the next entry written there gets (every
        partition of the topic).  Raises on a broker that does not answer in time."""
        async def ask() -> dict[int, int]:
            consumer, started = self._consumer, self._started
            if consumer is None or started is None:  # kept before it is started: close() stops it
                consumer = self._consumer = _consumer(self.options)
                started = self._started = asyncio.ensure_future(consumer.start())
            try:
                await asyncio.shield(started)  # a timeout here leaves the start going on for next time
            except Exception:
                await self.close()  # a start that failed: the next call starts another consumer
                raise
            if not self._wanted:
                self._wanted = await _partitions(consumer, self.topic, timeout_s)
            ends = await consumer.end_offsets(self._wanted)
            return {tp.partition: offset for tp, offset in ends.items()}

        return await wait_for(ask(), timeout_s)

    async def close(self) -> None:
        consumer, self._consumer, started, self._started = self._consumer, None, self._started, None
        self._wanted = []
        if started is not None and not started.done():
            started.cancel()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
