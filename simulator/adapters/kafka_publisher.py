"""Drains the outbox to Kafka: encode, send in two phases, confirm, resend after outages.

Every record becomes one or more wire messages; ``producer.send`` only enqueues (phase one) and
the delivery futures are settled in order (phase two), at most ``max_in_flight`` at a time.  A
retriable failure (broker unreachable, timeouts, leader changes) puts the failed messages back
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
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from simulator.formats import Format, WireMessage
from simulator.model.records import LotEvent, Record
from simulator.runtime.metrics import IoMetrics
from simulator.runtime.outbox import Outbox

log = logging.getLogger(__name__)
Delivered = Callable[[], None] | None


@dataclass(slots=True)
class _InFlight:
    message: WireMessage
    on_delivered: Delivered  # e.g. "this lot.received is safe: commit its order's offset"
    future: asyncio.Future[object]


class KafkaPublisher:
    def __init__(self, producer: AIOKafkaProducer, outbox: Outbox, fmt: Format, metrics: IoMetrics, *,
                 max_in_flight: int = 50_000, on_lot_received: Callable[[str], None] | None = None,
                 backoff_max_s: float = 5.0, on_connection: Callable[[bool], None] | None = None) -> None:
        self.producer = producer
        self.outbox = outbox
        self.fmt = fmt
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.on_lot_received = on_lot_received
        self.on_connection = on_connection
        self.backoff_max_s = backoff_max_s
        self._in_flight: deque[_InFlight] = deque()
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
            while batch := await self.outbox.get_batch(2000):
                for record in batch:
                    on_delivered = self._acknowledgement(record)
                    for message in self.fmt.encode(record):
                        await self.submit(message, on_delivered)
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
        return len(self._in_flight) + len(self._retry)

    # -- internals --------------------------------------------------------------------------------
    async def submit(self, message: WireMessage, on_delivered: Delivered = None) -> None:
        """Send one message (phase one); ``on_delivered`` runs once Kafka has acknowledged it.
        Also used for messages that do not come from the model (dead letters, handovers)."""
        if self._retry:
            await self.flush()
        while len(self._in_flight) >= self.max_in_flight:
            await asyncio.wait([self._in_flight[0].future])
            self._reap()
            if self._retry:
                await self.flush()
        self._in_flight.append(_InFlight(message, on_delivered, await self._enqueue(message)))
        self._has_work.set()

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

    async def _enqueue(self, message: WireMessage) -> asyncio.Future[object]:
        delay = 0.2
        while True:
            try:
                future: asyncio.Future[object] = await self.producer.send(
                    message.topic, message.value, key=message.key, headers=list(message.headers))
                return future
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                self._disconnected(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)

    def _reap(self) -> None:
        while self._in_flight and self._in_flight[0].future.done():
            self._account(self._in_flight.popleft())

    async def _resend(self) -> None:
        """Send the failed messages again, in their order, once nothing older is in flight."""
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
                self._in_flight.append(_InFlight(message, on_delivered, await self._enqueue(message)))
            self._has_work.set()

    def _account(self, item: _InFlight) -> None:
        topic = item.message.topic
        exc = item.future.exception()
        if exc is None:
            self.sent += 1
            self.metrics.records_sent.labels(topic).inc()
            if not self.connected:
                log.info("Kafka deliveries succeed again")
                self.connected = True
                if self.on_connection is not None:
                    self.on_connection(True)
            self._backoff_s = 0.2
            if item.on_delivered is not None:
                item.on_delivered()
            return
        self.metrics.records_failed.labels(topic).inc()
        if isinstance(exc, KafkaError) and exc.retriable:
            self._disconnected(exc)
            self._retry.append((item.message, item.on_delivered))
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

