"""Snapshots on Kafka: writing a run's snapshots to the snapshot topic and finding the newest again.

:class:`SnapshotWriter` sends a snapshot's parts (:mod:`simulator.formats.snapshot`) through the
service's publisher, in order, keyed by the run id, once Kafka has every output record the snapshot
covers (a snapshot must never stand for output that Kafka does not have: a restart from it would
not produce that output again).  A part Kafka refuses for good makes that snapshot fail (logged,
counted); it does not stop the service: recovery then uses an older snapshot or the whole journal.

:func:`snapshots_of` reads a run's snapshots newest first.  It reads the partition of the run's key
backwards from its end, a window of messages at a time, and stops as soon as the caller has what
it needs (or at messages older than the run): it never holds more than the parts of the snapshots
of one window and of those not yet complete.  A snapshot that is incomplete or corrupt is skipped
with a warning naming the reason, and the previous one is tried.  :func:`read_newest` is the first
valid one, or None.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.adapters.partitioning import partition_of
from simulator.asyncio_waits import wait_for
from simulator.errors import BrokerUnavailable, SnapshotRefused
from simulator.formats import snapshot as wire
from simulator.formats.snapshot import Part, Snapshot, SnapshotCorrupt

log = logging.getLogger(__name__)

_DELIVERY_POLL_S = 0.05


class SnapshotWriter:
    def __init__(self, publisher: KafkaPublisher, topic: str, max_request_bytes: int,
                 delivered_through: Callable[[], dict[str, int]]) -> None:
        self.publisher = publisher
        self.topic = topic
        self.max_part_bytes = wire.part_bytes(max_request_bytes)
        self.delivered_through = delivered_through
        self.written = 0
        self.failed = 0
        self.last_written: Snapshot | None = None
        self.last_bytes = 0
        self._writing: set[asyncio.Future[None]] = set()

    async def write(self, snapshot: Snapshot, data: bytes | None = None, *, confirm: bool = False) -> None:
        """Send ``snapshot`` (``data``: its compressed content, if already made) once Kafka has the
        output it covers; return when Kafka acknowledged every part.  Raises SnapshotRefused.
        ``confirm``: the publisher's loop has ended (shutdown), confirm the parts here."""
        if data is None:
            data = await asyncio.to_thread(wire.content, snapshot)
        await self._output_delivered(snapshot.output_through)
        messages = wire.encode_content(snapshot.run_id, snapshot.snapshot_id, data, self.topic, self.max_part_bytes)
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writing.add(acknowledged)
        left = [len(messages)]
        try:
            for message in messages:  # one by one: each part is (nearly) as large as a request may be
                if acknowledged.done():
                    break  # a part was refused: the rest is of no use
                await self.publisher.submit(message, functools.partial(self._delivered, acknowledged, left),
                                            functools.partial(self._refused, acknowledged, snapshot))
            if confirm:
                await self.publisher.flush()
            await acknowledged
        finally:
            self._writing.discard(acknowledged)
        self.written += 1
        self.last_written, self.last_bytes = snapshot, len(data)
        log.info("snapshot %s of run %s written: simulated time %.0f s, %d bytes in %d parts", snapshot.snapshot_id,
                 snapshot.run_id, snapshot.sim_time_s, len(data), len(messages))

    async def _output_delivered(self, through: dict[str, int]) -> None:
        while True:
            delivered = self.delivered_through()
            if all(delivered.get(plant, 0) >= seq for plant, seq in through.items() if seq > 0):
                return
            await asyncio.sleep(_DELIVERY_POLL_S)

    @staticmethod
    def _delivered(acknowledged: asyncio.Future[None], left: list[int]) -> None:
        left[0] -= 1
        if left[0] == 0 and not acknowledged.done():
            acknowledged.set_result(None)

    def _refused(self, acknowledged: asyncio.Future[None], snapshot: Snapshot, exc: BaseException) -> bool:
        if not acknowledged.done():
            self.failed += 1
            log.error("Kafka refused a part of snapshot %s (%r): the snapshot is not written; a restart replays "
                      "the journal from an older snapshot", snapshot.snapshot_id, exc)
            acknowledged.set_exception(SnapshotRefused(f"Kafka refused a part of snapshot {snapshot.snapshot_id}: "
                                                       f"{exc!r}"))
        return True  # a snapshot is not the system of record: no reason to fail the service


# -- reading ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Assembly:
    newest_offset: int
    parts: dict[int, Part] = field(default_factory=dict)
    count: int = 0

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.count

    @property
    def started(self) -> bool:
        """Its first part is read: parts are written in order, none can come before it."""
        return 0 in self.parts


async def read_newest(options: dict[str, Any], topic: str, run_id: str, **kwargs: Any) -> Snapshot | None:
    """The newest valid snapshot of ``run_id`` on ``topic``, or None (see :func:`snapshots_of`)."""
    async with contextlib.aclosing(snapshots_of(options, topic, run_id, **kwargs)) as snapshots:
        async for snapshot in snapshots:
            return snapshot
    return None


async def snapshots_of(options: dict[str, Any], topic: str, run_id: str, *, not_before_ms: int | None = None,
                       timeout_s: float = 60.0, window: int = 8, max_window: int = 256,
                       ) -> AsyncGenerator[Snapshot, None]:
    """The valid snapshots of ``run_id``, newest first, read backwards from the end of the
    partition of the run's key; ``not_before_ms``: no snapshot of the run is older than this (the
    run's start), so reading stops at older messages.  Incomplete and corrupt snapshots are
    skipped with a warning.  Close it (``contextlib.aclosing``) when leaving it early."""
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        await wait_for(consumer.topics(), timeout_s)
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return
        tp = TopicPartition(topic, partitions[partition_of(run_id.encode(), len(partitions))])
        consumer.assign([tp])
        bottom = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        found: dict[str, _Assembly] = {}
        finished: set[str] = set()
        high: int | None = None  # offsets from here on are read (None: nothing yet)
        low = end
        size = window
        while True:
            low = max(bottom, (end if high is None else low) - size)
            older = await _read_window(consumer, tp, low, high, run_id, found, finished, deadline, topic)
            high = low
            size = min(size * 2, max_window)
            exhausted = low <= bottom or (not_before_ms is not None and older is not None and older < not_before_ms)
            for snapshot_id, assembly in _ready(found, finished, exhausted):
                try:  # one at a time: the caller may need only the first
                    snapshot = wire.assemble(assembly.parts.values())
                except SnapshotCorrupt as exc:
                    log.warning("snapshot %s of run %s cannot be used (%s); trying the one before it", snapshot_id,
                                run_id, exc)
                    continue
                yield snapshot
            if exhausted:
                return
    finally:
        await consumer.stop()


async def _read_window(consumer: AIOKafkaConsumer, tp: TopicPartition, low: int, high: int | None, run_id: str,
                       found: dict[str, _Assembly], finished: set[str], deadline: float, topic: str) -> int | None:
    """Read offsets ``low`` up to ``high`` (None: to the end, until a fetch brings nothing); keep
    the parts of ``run_id``.  Returns the oldest timestamp seen (ms), or None."""
    consumer.seek(tp, low)
    oldest: int | None = None
    end = (await consumer.end_offsets([tp]))[tp] if high is None else high
    while True:
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"reading the snapshots on {topic} took too long")
        batch = await consumer.getmany(tp, timeout_ms=200, max_records=1000)
        messages = batch.get(tp, [])
        for message in messages:
            if message.offset < low or (high is not None and message.offset >= high):
                continue
            oldest = message.timestamp if oldest is None else min(oldest, message.timestamp)
            try:
                part = wire.read_part(message.value or b"")
            except SnapshotCorrupt as exc:
                log.debug("%s[%d]@%d is not a snapshot part: %s", tp.topic, tp.partition, message.offset, exc)
                continue
            if part.run_id != run_id or part.snapshot_id in finished:
                continue
            assembly = found.setdefault(part.snapshot_id, _Assembly(message.offset))
            assembly.newest_offset = max(assembly.newest_offset, message.offset)
            assembly.count = max(assembly.count, part.count)
            assembly.parts.setdefault(part.index, part)
        position = await consumer.position(tp)
        if high is not None and position >= high:
            return oldest
        if high is None and not messages and position >= end:
            return oldest


def _ready(found: dict[str, _Assembly], finished: set[str], exhausted: bool) -> list[tuple[str, _Assembly]]:
    """The snapshots that can be tried now, newest first: every one seen, up to the first that may
    still get parts from an older window."""
    ready: list[tuple[str, _Assembly]] = []
    for snapshot_id, assembly in sorted(found.items(), key=lambda item: -item[1].newest_offset):
        if not assembly.complete and not assembly.started and not exhausted:
            break  # its first parts may be in the next window
        del found[snapshot_id]
        finished.add(snapshot_id)
        ready.append((snapshot_id, assembly))
    return ready
