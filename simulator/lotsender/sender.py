"""Sending planned lots to Kafka on an absolute schedule, counting acknowledgements.

Each lot is due at ``start + offset``; the sender sleeps only until the next due instant and,
when it is late, sends at once without sleeping, so the long-run rate does not drift with send
latency or event-loop jitter.

Messages go into one record batch per partition (:mod:`simulator.adapters.record_batches`:
one future per batch instead of one per message, about ten times cheaper per lot).  A batch is
shipped when it is full, when it is older than ``linger_s``, and whenever the sender is about to
wait for the next due lot, so a paced lot never waits for company.  Lots of one location share a
key, hence a partition, and stay in order.
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

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from simulator.adapters.record_batches import OpenBatch, TopicBatches
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
    # with --follow, per message: seq -> what was sent; for the lots (messages with a lot code) seq ->
    # the epoch seconds of the send, and lot code -> its seqs in sending order (a code can be sent twice)
    planned: dict[int, Planned] = field(default_factory=dict)
    sent_wall: dict[int, float] = field(default_factory=dict)
    seqs_by_code: dict[str, list[int]] = field(default_factory=dict)

    def send_span_s(self) -> float | None:
        """Seconds between the first and the last send (None before the first)."""
        if self.first_send is None or self.last_send is None:
            return None
        return self.last_send - self.first_send

    def achieved_rate_per_min(self) -> float | None:
        """Lots per minute between the first and the last send (None for fewer than two)."""
        span = self.send_span_s()
        if self.sent < 2 or span is None or span <= 0:
            return None
        return (self.sent - 1) * 60.0 / span


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
        self._batches: TopicBatches[float] | None = None  # items: each lot's hand-over instant
        self._unsettled: set[asyncio.Future[object]] = set()
        self._settled = asyncio.Event()

    async def send(self, planned: Iterable[Planned], *, count: int | None = None, duration_s: float | None = None,
                   stop: asyncio.Event | None = None) -> SendStats:
        """Send until the plan ends, ``count`` lots were sent, ``duration_s`` has passed or ``stop`` is
        set; then wait until every sent lot is acknowledged or failed."""
        stats = self.stats
        stop = stop or asyncio.Event()
        self._batches = TopicBatches(self.producer, self.topic, list(await self.producer.partitions_for(self.topic)))
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
        stats, batches = self.stats, self._batches
        assert batches is not None
        headers = [(RUN_HEADER, self.run_header), (SEQ_HEADER, str(item.seq).encode())]
        if item.bad_kind is not None:
            headers.append((BAD_HEADER, item.bad_kind.encode()))
        now = self.clock()
        full = batches.add(item.key or None, item.value, headers, now)
        if full is not None:
            await self._ship(full)
        stats.sent += 1
        if stats.first_send is None:
            stats.first_send = now
        stats.last_send = now
        if item.bad_kind is not None:
            stats.malformed += 1
        if self.track:
            stats.planned[item.seq] = item
            if item.lot_code is not None:
                stats.sent_wall[item.seq] = self.wall()
                stats.seqs_by_code.setdefault(item.lot_code, []).append(item.seq)
        if stats.sent % CHECK_AGE_EVERY == 0:
            for batch in list(batches.open.values()):
                if now - batch.items[0] >= self.linger_s:  # older than linger: out it goes
                    del batches.open[batch.partition]
                    await self._ship(batch)

    async def _ship_all(self) -> None:
        if self._batches is not None:
            for batch in self._batches.take_all():
                await self._ship(batch)

    async def _ship(self, batch: OpenBatch[float]) -> None:
        assert self._batches is not None
        try:
            future = await self._batches.ship(batch)
        except KafkaError as exc:  # refused before it was queued
            self._failed(len(batch.items), exc)
            return
        self._unsettled.add(future)
        future.add_done_callback(functools.partial(self._delivered, batch.items))
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
