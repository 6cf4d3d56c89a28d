"""Drains the outbox to Kafka: encode, send in two phases, confirm, resend after outages.

Every record becomes one or more wire messages.  The publisher fills one open batch per topic
partition with them (aiokafka's batch API; the partition is the one aiokafka's default partitioner
gives the key, so a key always lands on the same partition) and hands a batch to the producer,
complete, when it is full (``max_batch_size``) or when the records taken from the outbox are
through (phase one); the delivery futures of the batches are settled in order (phase two), at most
``max_in_flight`` messages at a time.  This costs a fraction of one ``producer.send`` per message.
Messages that do not come from the outbox (dead letters, handovers) are sent one by one.

A retriable failure (broker unreachable, timeouts, leader changes) puts the failed messages back
in their original order and holds everything new until they are through, so nothing is lost
and per-key order is kept; meanwhile the outbox fills and the simulation pauses.  A
non-retriable failure (e.g. a message too large, no authorisation) is counted, logged once per
topic and reported unhealthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from simulator.adapters.partitioning import murmur2
from simulator.formats import Format, WireMessage
from simulator.model.records import LotEvent, Record
from simulator.runtime.metrics import IoMetrics
from simulator.runtime.outbox import Outbox

log = logging.getLogger(__name__)
Delivered = Callable[[], None] | None
_KEY_HASHES_MAX = 100_000  # remembered key hashes (machine ids and lot codes) before starting over


@dataclass(slots=True)
class _Messages:
    """Messages for one topic, in order, and what to run once each is delivered (e.g. "this
    lot.received is safe: commit its order's offset"), by position; most messages have nothing."""

    topic: str
    messages: list[WireMessage] = field(default_factory=list)
    on_delivered: list[tuple[int, Callable[[], None]]] = field(default_factory=list)

    def add(self, message: WireMessage, on_delivered: Delivered) -> None:
        if on_delivered is not None:
            self.on_delivered.append((len(self.messages), on_delivered))
        self.messages.append(message)

    def items(self) -> list[tuple[WireMessage, Delivered]]:
        callbacks = dict(self.on_delivered)
        return [(message, callbacks.get(i)) for i, message in enumerate(self.messages)]


@dataclass(slots=True)
class _Batch:
    """An open batch for one topic partition (aiokafka's BatchBuilder) and its messages."""

    partition: int
    builder: Any
    content: _Messages


@dataclass(slots=True)
class _Route:
    """A topic's partitions (as aiokafka lists them), its open batches by partition and the
    partition of each key seen."""

    partitions: list[int]
    open: dict[int, _Batch] = field(default_factory=dict)
    by_key: dict[bytes, int] = field(default_factory=dict)


@dataclass(slots=True)
class _InFlight:
    content: _Messages
    future: asyncio.Future[object]


class KafkaPublisher:
    def __init__(self, producer: AIOKafkaProducer, outbox: Outbox, fmt: Format, metrics: IoMetrics, *,
                 max_in_flight: int = 50_000, on_lot_received: Callable[[str], None] | None = None,
                 backoff_max_s: float = 5.0, on_connection: Callable[[bool], None] | None = None,
                 records_per_round: int = 2000) -> None:
        self.producer = producer
        self.outbox = outbox
        self.fmt = fmt
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.on_lot_received = on_lot_received
        self.on_connection = on_connection
        self.backoff_max_s = backoff_max_s
        self.records_per_round = records_per_round
        self._in_flight: deque[_InFlight] = deque()
        self._in_flight_messages = 0
        self._routes: dict[str, _Route] = {}
        self._open_messages = 0
        self._key_hashes: dict[bytes, int] = {}
        self._retry: list[tuple[WireMessage, Delivered]] = []
        self.connected = True
        self.fatal_error: str | None = None
        self.last_error: str | None = None
        self.sent = 0
        self._has_work = asyncio.Event()
        self._resend_lock = asyncio.Lock()
        self._backoff_s = 0.2

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Until the outbox is closed and drained, then until everything is confirmed."""
        confirmer = asyncio.get_running_loop().create_task(self._confirm_loop(), name="kafka-confirm")
        try:
            while records := await self.outbox.get_batch(self.records_per_round):
                await self._publish(records)
                await asyncio.sleep(0)  # let the producer's sender take the batches
            await self.flush()
        finally:
            confirmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await confirmer

    async def flush(self) -> None:
        """Confirm everything sent so far (resending after retriable failures)."""
        while self._in_flight or self._retry:
            if self._in_flight:
                await asyncio.wait([f.future for f in self._in_flight])
                self._reap()
            if self._retry:
                await self._resend()

    @property
    def in_flight(self) -> int:
        return self._in_flight_messages + len(self._retry) + self._open_messages

    async def submit(self, message: WireMessage, on_delivered: Delivered = None) -> None:
        """Send one message (phase one); ``on_delivered`` runs once Kafka has acknowledged it.
        For messages that do not come from the model (dead letters, handovers)."""
        if self._retry:
            await self.flush()
        await self._room_for(1)
        await self._send_one(message, on_delivered)

    # -- batches ----------------------------------------------------------------------------------
    async def _publish(self, records: list[Record]) -> None:
        """Encode ``records`` into the open batches, send the full ones, then all of them."""
        if self._retry:
            await self.flush()
        self._routes.clear()  # follow partition changes once per round
        encode, place, routes = self.fmt.encode, self._place, self._routes
        for record in records:
            on_delivered = self._acknowledgement(record)
            for message in encode(record):
                route = routes.get(message.topic)
                if route is None:
                    route = routes[message.topic] = await self._route(message.topic)
                full = place(route, message, on_delivered)
                if full is not None:
                    await self._send_batch(full)
        for route in routes.values():
            batches = list(route.open.values())
            route.open.clear()
            for batch in batches:
                await self._send_batch(batch)

    def _place(self, route: _Route, message: WireMessage, on_delivered: Delivered) -> _Batch | None:
        """Add ``message`` to its partition's open batch; return that batch if it was full (a new
        one then holds the message)."""
        key = message.key
        partition = route.by_key.get(key)
        if partition is None:
            partition = route.by_key[key] = route.partitions[self._key_hash(key) % len(route.partitions)]
        headers = list(message.headers)
        full = None
        batch = route.open.get(partition)
        if batch is None or batch.builder.append(timestamp=None, key=key, value=message.value,
                                                 headers=headers) is None:
            full = route.open.pop(partition, None)  # None: there was no open batch
            batch = route.open[partition] = _Batch(partition, self.producer.create_batch(), _Messages(message.topic))
            batch.builder.append(timestamp=None, key=key, value=message.value, headers=headers)  # an empty one takes it
        batch.content.add(message, on_delivered)
        self._open_messages += 1
        return full

    async def _route(self, topic: str) -> _Route:
        partitions: set[int] = await self._retrying(lambda: self.producer.partitions_for(topic))
        return _Route(list(partitions))  # listed as aiokafka's send() lists them

    def _key_hash(self, key: bytes) -> int:
        """As aiokafka's DefaultPartitioner hashes a key (remembered: keys are machine ids and lot codes)."""
        key_hash = self._key_hashes.get(key)
        if key_hash is None:
            if len(self._key_hashes) >= _KEY_HASHES_MAX:
                self._key_hashes.clear()
            key_hash = self._key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return key_hash

    async def _send_batch(self, batch: _Batch) -> None:
        count = len(batch.content.messages)
        await self._room_for(count)
        batch.builder.close()  # complete: no reason to linger
        future: asyncio.Future[object] = await self._retrying(
            lambda: self.producer.send_batch(batch.builder, batch.content.topic, partition=batch.partition))
        self._open_messages -= count
        self._track(batch.content, future)

    async def _send_one(self, message: WireMessage, on_delivered: Delivered) -> None:
        content = _Messages(message.topic)
        content.add(message, on_delivered)
        future: asyncio.Future[object] = await self._retrying(
            lambda: self.producer.send(message.topic, message.value, key=message.key, headers=list(message.headers)))
        self._track(content, future)

    async def _retrying(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``await attempt()`` again, backing off, while it fails with a retriable Kafka error."""
        delay = 0.2
        while True:
            try:
                return await attempt()
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                self._disconnected(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)

    # -- confirmations ----------------------------------------------------------------------------
    def _track(self, content: _Messages, future: asyncio.Future[object]) -> None:
        self._in_flight.append(_InFlight(content, future))
        self._in_flight_messages += len(content.messages)
        self._has_work.set()

    async def _room_for(self, count: int) -> None:
        while self._in_flight and self._in_flight_messages + count > self.max_in_flight:
            await asyncio.wait([self._in_flight[0].future])
            self._reap()
            if self._retry:
                await self.flush()

    def _acknowledgement(self, record: Record) -> Delivered:
        if (self.on_lot_received is not None and isinstance(record, LotEvent)
                and record.event_type == "lot.received" and record.lot_code is not None):
            return functools.partial(self.on_lot_received, record.lot_code)
        return None

    async def _confirm_loop(self) -> None:
        """Account for deliveries as they complete, also while no new records come."""
        while True:
            if not self._in_flight:
                if self._retry:
                    await self._resend()
                    continue
                self._has_work.clear()
                await self._has_work.wait()
                continue
            await asyncio.wait([self._in_flight[0].future])
            self._reap()

    def _reap(self) -> None:
        while self._in_flight and self._in_flight[0].future.done():
            item = self._in_flight.popleft()
            self._in_flight_messages -= len(item.content.messages)
            self._account(item)

    async def _resend(self) -> None:
        """Send the failed messages again, one by one in their order, once nothing older is in flight."""
        async with self._resend_lock:
            if self._in_flight:
                await asyncio.wait([f.future for f in self._in_flight])
                self._reap()
            if not self._retry:
                return
            await asyncio.sleep(self._backoff_s)
            self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)
            retry, self._retry = self._retry, []
            for message, on_delivered in retry:
                self.metrics.records_retried.labels(message.topic).inc()
                await self._send_one(message, on_delivered)

    def _account(self, item: _InFlight) -> None:
        content = item.content
        topic, count = content.topic, len(content.messages)
        exc = item.future.exception()
        if exc is None:
            self.sent += count
            self.metrics.records_sent.labels(topic).inc(count)
            if not self.connected:
                log.info("Kafka deliveries succeed again")
                self.connected = True
                if self.on_connection is not None:
                    self.on_connection(True)
            self._backoff_s = 0.2
            for _, on_delivered in content.on_delivered:
                on_delivered()
            return
        self.metrics.records_failed.labels(topic).inc(count)
        if isinstance(exc, KafkaError) and exc.retriable:
            self._disconnected(exc)
            self._retry.extend(content.items())
            return
        if self.fatal_error is None:
            log.error("Kafka refused a message for %s: %r (not retriable; counted as failed)", topic, exc)
        self.fatal_error = f"{topic}: {exc!r}"

    def _disconnected(self, exc: BaseException) -> None:
        if self.connected:
            log.warning("Kafka deliveries fail (%r); holding messages and resending", exc)
            self.connected = False
            if self.on_connection is not None:
                self.on_connection(False)
        self.last_error = repr(exc)
