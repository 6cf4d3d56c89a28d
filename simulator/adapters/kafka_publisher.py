"""Drains the outbox to Kafka: encode, send in two phases, confirm, resend after outages.

Every record becomes one or more wire messages. The publisher fills one open batch per topic
partition with them (aiokafka's batch API; the partition is the one aiokafka's default partitioner
gives the key, so a key always lands on the same partition) and hands a batch to the producer,
complete, when it is full (``max_batch_size``) or when the records taken from the outbox are through
(phase one; a round of fewer than ``ROUND_MIN_RECORDS`` records waits ``ROUND_LINGER_S`` for more
first, as a paced plant emits a few at a time); the delivery futures of the batches are settled in
order (phase two), at most ``max_in_flight`` messages at a time. This costs a fraction of one
``producer.send`` per message. Messages that do not come from the outbox (dead letters, journal
entries) are sent one by one; their sender may take a refusal upon itself (``submit(...,
on_refused=...)``, e.g. to send a dead letter again, smaller, when the broker finds it too large).

A retriable failure (broker unreachable, timeouts, leader changes) puts the failed messages back in
their original order and holds everything new until they are through, so nothing is lost and per-key
order is kept; meanwhile the outbox fills and the simulation pauses. A non-retriable failure (e.g. a
message too large, no authorisation) is counted, logged once per topic and reported unhealthy
(unless the message's ``on_refused`` handles it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from simulator.adapters.record_batches import OpenBatch, TopicBatches
from simulator.formats import Format, WireMessage
from simulator.interfaces import RecordSource
from simulator.io_metrics import IoMetrics
from simulator.model.records import Record

log = logging.getLogger(__name__)

ROUND_MIN_RECORDS = 200  # a round of fewer records from the outbox ...
ROUND_LINGER_S = 0.005  # ... waits this long for more
Delivered = Callable[[], None] | None
# what to run when Kafka refuses a message for good (not retriable): True = handled by the sender,
# False = a fatal refusal like any other
Refused = Callable[[BaseException], bool] | None


# a message, what to run once Kafka has it (most: nothing) and its record timestamp (None: the send time)
Item = tuple[WireMessage, Delivered, int | None]


@dataclass(slots=True)
class _InFlight:
    topic: str
    items: list[Item]
    future: asyncio.Future[object]
    on_refused: Refused = None  # only for a message sent on its own


class KafkaPublisher:
    def __init__(self, producer: AIOKafkaProducer, outbox: RecordSource, fmt: Format, metrics: IoMetrics, *,
                 max_in_flight: int = 50_000,
                 backoff_max_s: float = 5.0, on_connection: Callable[[bool], None] | None = None,
                 records_per_round: int = 2000, event_time_ms: Callable[[Record], int] | None = None) -> None:
        """``event_time_ms``: a record's Kafka timestamp (milliseconds since the epoch) from the
        record (its event time); None: the broker client stamps the send time."""
        self.producer = producer
        self.outbox = outbox
        self.fmt = fmt
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.on_connection = on_connection
        self.backoff_max_s = backoff_max_s
        self.records_per_round = records_per_round
        self.event_time_ms = event_time_ms
        self._in_flight: deque[_InFlight] = deque()
        self._in_flight_messages = 0
        self._batches: dict[str, TopicBatches[Item]] = {}
        self._open_messages = 0
        self._retry: list[tuple[WireMessage, Delivered, Refused, int | None]] = []
        self.connected = True
        self.fatal_error: str | None = None
        self.last_error: str | None = None
        self.last_error_at: dt.datetime | None = None  # when ``last_error`` happened (UTC)
        self.sent = 0
        self._rounds: deque[_Round] = deque()
        # per plant: every output record up to this number is in Kafka (rounds of records taken from
        # the outbox are counted off in emission order)
        self.delivered_through: dict[str, int] = {}
        self._has_work = asyncio.Event()
        self._resend_lock = asyncio.Lock()
        self._backoff_s = 0.2

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Until the outbox is closed and drained, then until everything is confirmed."""
        confirmer = asyncio.get_running_loop().create_task(self._confirm_loop(), name="kafka-confirm")
        try:
            while records := await self.outbox.get_batch(self.records_per_round):
                if len(records) < ROUND_MIN_RECORDS and not self.outbox.closed:
                    # a paced plant emits a few records at a time: wait a moment for more, so that
                    # batches are not a handful of records each (their cost is per batch, mostly)
                    await asyncio.sleep(ROUND_LINGER_S)
                    records += self.outbox.take(self.records_per_round - len(records))
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

    async def submit(self, message: WireMessage, on_delivered: Delivered = None, on_refused: Refused = None) -> None:
        """Send one message (phase one); ``on_delivered`` runs once Kafka has acknowledged it.
        For messages that do not come from the model (dead letters, journal entries).

        A refusal that is not retriable (raised by ``producer.send`` or on the delivery) is
        counted as a failed record and given to ``on_refused``; when that returns True the
        refusal is the caller's business, otherwise (or without ``on_refused``) it is what it
        always is: raised from here, or on the delivery a fatal error for /health."""
        if self._retry:
            await self.flush()
        await self._room_for(1)
        await self._send_one(message, on_delivered, on_refused)

    async def submit_many(self, messages: list[WireMessage], on_delivered: Delivered = None,
                          on_refused: Refused = None) -> None:
        """Send ``messages`` in record batches, in their order per partition (phase one);
        ``on_delivered`` runs once per message Kafka acknowledged; ``on_refused`` as for
        :meth:`submit` (per batch).  For what comes in bulk outside the model (journal entries)."""
        if self._retry:
            await self.flush()
        topics: dict[str, TopicBatches[Item]] = {}
        for message in messages:  # the few lines of _publish's loop, without its per-record bookkeeping
            batches = topics.get(message.topic)
            if batches is None:
                batches = topics[message.topic] = await self._topic_batches(message.topic)
            full = batches.add(message.key, message.value, list(message.headers), (message, on_delivered, None))
            self._open_messages += 1
            if full is not None:
                await self._send_batch(batches, full, on_refused)
        for batches in topics.values():
            for batch in batches.take_all():
                await self._send_batch(batches, batch, on_refused)

    # -- batches ----------------------------------------------------------------------------------
    async def _publish(self, records: list[Record]) -> None:
        """Encode ``records`` into the open batches, send the full ones, then all of them."""
        if self._retry:
            await self.flush()
        self._batches.clear()  # follow partition changes once per round
        encode, topics = self.fmt.encode, self._batches
        round_ = _Round()
        self._rounds.append(round_)
        seqs, on_delivered = round_.seqs, round_.delivered
        messages = 0
        event_time_ms = self.event_time_ms
        for record in records:
            seqs[record.location] = record.seq
            timestamp = event_time_ms(record) if event_time_ms is not None else None
            for message in encode(record):
                batches = topics.get(message.topic)
                if batches is None:
                    batches = topics[message.topic] = await self._topic_batches(message.topic)
                full = batches.add(message.key, message.value, list(message.headers),
                                   (message, on_delivered, timestamp), timestamp)
                self._open_messages += 1
                messages += 1
                if full is not None:
                    await self._send_batch(batches, full)
        round_.left += messages
        round_.complete = True
        self._rounds_done()
        for batches in topics.values():
            for batch in batches.take_all():
                await self._send_batch(batches, batch)

    async def _topic_batches(self, topic: str) -> TopicBatches[Item]:
        partitions: set[int] = await self._retrying(lambda: self.producer.partitions_for(topic))
        return TopicBatches(self.producer, topic, list(partitions))

    async def _send_batch(self, batches: TopicBatches[Item], batch: OpenBatch[Item],
                          on_refused: Refused = None) -> None:
        count = len(batch.items)
        await self._room_for(count)
        future: asyncio.Future[object] = await self._retrying(lambda: batches.ship(batch))
        self._open_messages -= count
        self._track(batch.topic, batch.items, future, on_refused)

    async def _send_one(self, message: WireMessage, on_delivered: Delivered, on_refused: Refused = None,
                        timestamp: int | None = None) -> None:
        try:
            future: asyncio.Future[object] = await self._retrying(
                lambda: self.producer.send(message.topic, message.value, key=message.key,
                                           headers=list(message.headers), timestamp_ms=timestamp))
        except KafkaError as exc:  # not retriable (e.g. larger than max_request_size)
            self.metrics.records_failed.labels(message.topic).inc()
            if on_refused is None or not on_refused(exc):
                raise
            return
        self._track(message.topic, [(message, on_delivered, timestamp)], future, on_refused)

    async def _retrying(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``await attempt()`` again, backing off, while it fails with a retriable Kafka error.  A
        timeout is one too: the producer had no room for the batch within ``request_timeout_ms``
        (the broker is away longer than that); nothing was handed over, so trying again is safe."""
        delay = 0.2
        while True:
            try:
                return await attempt()
            except KafkaError as exc:
                if not exc.retriable and not isinstance(exc, KafkaTimeoutError):
                    raise
                self._disconnected(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)

    # -- confirmations ----------------------------------------------------------------------------
    def _track(self, topic: str, items: list[Item], future: asyncio.Future[object], on_refused: Refused = None) -> None:
        self._in_flight.append(_InFlight(topic, items, future, on_refused))
        self._in_flight_messages += len(items)
        self._has_work.set()

    async def _room_for(self, count: int) -> None:
        while self._in_flight and self._in_flight_messages + count > self.max_in_flight:
            await asyncio.wait([self._in_flight[0].future])
            self._reap()
            if self._retry:
                await self.flush()

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
            self._in_flight_messages -= len(item.items)
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
            for message, on_delivered, on_refused, timestamp in retry:
                self.metrics.records_retried.labels(message.topic).inc()
                await self._send_one(message, on_delivered, on_refused, timestamp)

    def _account(self, item: _InFlight) -> None:
        topic, count = item.topic, len(item.items)
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
            for _, on_delivered, _ in item.items:
                if on_delivered is not None:
                    on_delivered()
            self._rounds_done()
            return
        self.metrics.records_failed.labels(topic).inc(count)
        if isinstance(exc, KafkaError) and exc.retriable:
            self._disconnected(exc)
            self._retry.extend((message, on_delivered, item.on_refused, timestamp)
                               for message, on_delivered, timestamp in item.items)
            return
        if item.on_refused is not None and item.on_refused(exc):
            return  # the sender takes it from here (e.g. sends it again, smaller)
        if self.fatal_error is None:
            log.error("Kafka refused a message for %s: %r (not retriable; counted as failed)", topic, exc)
        self.fatal_error = f"{topic}: {exc!r}"

    def _rounds_done(self) -> None:
        rounds = self._rounds
        while rounds and rounds[0].complete and rounds[0].left <= 0:
            self.delivered_through.update(rounds.popleft().seqs)

    def _disconnected(self, exc: BaseException) -> None:
        if self.connected:
            log.warning("Kafka deliveries fail (%r); holding messages and resending", exc)
            self.connected = False
            if self.on_connection is not None:
                self.on_connection(False)
        self.last_error = repr(exc)
        self.last_error_at = dt.datetime.now(dt.UTC)


class _Round:
    """The records taken from the outbox at once: their last number per plant, and how many of
    their messages Kafka has not acknowledged yet."""

    __slots__ = ("complete", "left", "seqs")

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}
        self.left = 0
        self.complete = False  # every message of the round is counted in ``left``

    def delivered(self) -> None:
        self.left -= 1
