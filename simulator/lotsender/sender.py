"""Sending planned lots to Kafka on an absolute schedule, counting acknowledgements.

Each lot is due at ``start + offset``; the sender sleeps only until the next due instant and,
when it is late, sends at once without sleeping, so the long-run rate does not drift with send
latency or event-loop jitter.

Messages go into one record batch per partition (the producer's batch API: one future per
batch instead of one per message, about ten times cheaper per lot).  A batch is shipped when
it is full, when it is older than ``linger_s``, and whenever the sender is about to wait for
the next due lot, so a paced lot never waits for company.  The partition of a key is the one
the Kafka clients' default partitioner picks (murmur2), so lots of one location stay in order.
The acknowledgement latency of a lot runs from its hand-over to the batch until the broker
acknowledged the batch.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from simulator.adapters.partitioning import partition_of
from simulator.lotsender.plan import BAD_HEADER, RUN_HEADER, SEQ_HEADER, Planned

Clock = Callable[[], float]
CHECK_AGE_EVERY = 64  # appends between two looks at the open batches' age


@dataclass
class SendStats:
    sent: int = 0  # handed to the producer
    acked: int = 0
    failed: int = 0
    malformed: int = 0  # of ``sent``, deliberately malformed
    errors: Counter[str] = field(default_factory=Counter)
    ack_latencies_s: list[float] = field(default_factory=list)
    started: float | None = None  # monotonic
    first_send: float | None = None
    last_send: float | None = None
    finished: float | None = None
    sent_wall: dict[str, float] = field(default_factory=dict)  # lot code -> epoch seconds (with --follow)
    planned: dict[int, Planned] = field(default_factory=dict)  # seq -> what was sent (with --follow)

    def achieved_rate_per_min(self) -> float | None:
        """Lots per minute between the first and the last send (None for fewer than two)."""
        if self.sent < 2 or self.first_send is None or self.last_send is None or self.last_send <= self.first_send:
            return None
        return (self.sent - 1) * 60.0 / (self.last_send - self.first_send)


class _OpenBatch:
    __slots__ = ("builder", "opened", "sent_at")

    def __init__(self, builder: Any, opened: float) -> None:
        self.builder = builder
        self.opened = opened
        self.sent_at: list[float] = []  # hand-over instant of each lot in the batch


class LotSender:
    def __init__(self, producer: AIOKafkaProducer, topic: str, run_id: str, *, track: bool = False,
                 linger_s: float = 0.02, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.producer = producer
        self.topic = topic
        self.run_header = run_id.encode()
        self.track = track  # keep what --follow needs: send instants and the plan per sequence number
        self.linger_s = linger_s
        self.clock = clock
        self.wall = wall
        self.stats = SendStats()
        self._partitions: list[int] = []
        self._partition_of: dict[bytes | None, int] = {}
        self._open: dict[int, _OpenBatch] = {}
        self._unsettled: set[asyncio.Future[object]] = set()
        self._settled = asyncio.Event()

    async def send(self, planned: Iterable[Planned], *, count: int | None = None, duration_s: float | None = None,
                   stop: asyncio.Event | None = None) -> SendStats:
        """Send until the plan ends, ``count`` lots were sent, ``duration_s`` has passed or ``stop`` is
        set; then wait until every sent lot is acknowledged or failed."""
        stats = self.stats
        stop = stop or asyncio.Event()
        self._partitions = sorted(await self.producer.partitions_for(self.topic))
        stop_waiter = asyncio.ensure_future(stop.wait())
        start = stats.started = self.clock()
        try:
            for item in planned:
                if (count is not None and stats.sent >= count) or stop.is_set():
                    break
                if item.offset_s is not None:
                    if duration_s is not None and item.offset_s >= duration_s:
                        break
                    delay = start + item.offset_s - self.clock()
                    if delay > 0:
                        await self._ship_all()
                        delay = start + item.offset_s - self.clock()
                        if delay > 0:
                            await asyncio.wait([stop_waiter], timeout=delay)
                        if stop.is_set():
                            break
                elif duration_s is not None and self.clock() - start >= duration_s:
                    break
                await self._add(item)
            await self._ship_all()
        finally:
            stop_waiter.cancel()
        await self.settle()
        stats.finished = self.clock()
        return stats

    async def settle(self) -> None:
        """Wait for every shipped batch (acknowledged or failed)."""
        while self._unsettled:
            self._settled.clear()
            await self._settled.wait()

    # -- batches ----------------------------------------------------------------------------------
    async def _add(self, item: Planned) -> None:
        stats = self.stats
        key = item.key or None
        partition = self._partition_of.get(key)
        if partition is None:
            partitions = self._partitions
            index = partition_of(key, len(partitions)) if key is not None else len(self._partition_of) % len(partitions)
            partition = self._partition_of[key] = partitions[index]
        headers = [(RUN_HEADER, self.run_header), (SEQ_HEADER, str(item.seq).encode())]
        if item.bad_kind is not None:
            headers.append((BAD_HEADER, item.bad_kind.encode()))
        now = self.clock()
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = _OpenBatch(self.producer.create_batch(), now)
        if batch.builder.append(key=key, value=item.value, timestamp=None, headers=headers) is None:
            if batch.sent_at:  # full: ship it and start the next one
                await self._ship(partition)
                batch = self._open[partition] = _OpenBatch(self.producer.create_batch(), now)
            if batch.builder.append(key=key, value=item.value, timestamp=None, headers=headers) is None:
                stats.sent += 1
                stats.failed += 1
                stats.errors["MessageSizeTooLarge"] += 1
                return
        batch.sent_at.append(now)
        stats.sent += 1
        if stats.first_send is None:
            stats.first_send = now
        stats.last_send = now
        if item.bad_kind is not None:
            stats.malformed += 1
        if self.track:
            stats.planned[item.seq] = item
            if item.lot_code is not None:
                stats.sent_wall[item.lot_code] = self.wall()
        if stats.sent % CHECK_AGE_EVERY == 0:
            for part, open_batch in list(self._open.items()):
                if now - open_batch.opened >= self.linger_s:
                    await self._ship(part)

    async def _ship_all(self) -> None:
        for partition in list(self._open):
            await self._ship(partition)

    async def _ship(self, partition: int) -> None:
        batch = self._open.pop(partition)
        if not batch.sent_at:
            return
        batch.builder.close()
        try:
            future: asyncio.Future[object] = await self.producer.send_batch(batch.builder, self.topic,
                                                                            partition=partition)
        except KafkaError as exc:  # refused before it was queued
            self._failed(len(batch.sent_at), exc)
            return
        self._unsettled.add(future)
        future.add_done_callback(functools.partial(self._delivered, batch.sent_at))
        await asyncio.sleep(0)  # let acknowledgements, progress and --follow run between batches

    def _delivered(self, sent_at: list[float], future: asyncio.Future[object]) -> None:
        self._unsettled.discard(future)
        if future.cancelled():
            self._failed(len(sent_at), None)
        elif (exc := future.exception()) is not None:
            self._failed(len(sent_at), exc)
        else:
            now = self.clock()
            self.stats.acked += len(sent_at)
            self.stats.ack_latencies_s.extend([now - t for t in sent_at])
        if not self._unsettled:
            self._settled.set()

    def _failed(self, lots: int, exc: BaseException | None) -> None:
        self.stats.failed += lots
        self.stats.errors[type(exc).__name__ if exc is not None else "cancelled"] += lots
