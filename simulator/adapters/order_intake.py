"""Orders from Kafka into the model, at least once, never blocking a partition.

A message's offset is committed only when it is *done*: its order is in the journal (acknowledged
by Kafka) and applied, or it was dead-lettered and the dead letter acknowledged.  Offsets are
committed per partition up to the first message that is not done yet.  When too many orders are
waiting for that, the consumer pauses its partitions instead of buffering.

No single message stops a partition.  A dead letter never fails for its size (:mod:`dead_letters`
cuts it to fit; one the broker still refuses as too large goes again, smaller).  A record the
consumer cannot read is dead-lettered as ``unreadable`` with where it was: one larger than the
fetch size that the broker did not return whole (aiokafka's ``RecordTooLargeError`` moved past
it), or one aiokafka cannot decode (a header key that is not UTF-8, a bad checksum or
compression).  aiokafka raises the latter from ``getmany`` without saying where, after taking
records of other partitions from its buffer: every partition goes back to where the intake is and
is read one record at a time to find it.  The records after it in its record batch cannot be
decoded either (aiokafka decodes a batch from its start): each is dead-lettered the same way.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import logging
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedCodecError,
)
from aiokafka.structs import ConsumerRecord

from simulator.adapters.dead_letters import DEFAULT_MAX_REQUEST_BYTES, Consumed, Unread, dead_letter, letter_attempts
from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.adapters.offsets import ConsumerOffsets
from simulator.adapters.plant_inbox import InboxParser, RoutedCommand
from simulator.errors import JournalRefused, OrderRejected
from simulator.interfaces import ModelInputs, Result
from simulator.io_metrics import IoMetrics
from simulator.model.inputs import Admit
from simulator.model.order import Order
from simulator.orders import OrderParser

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"  # reason code of a record the consumer could not read
ADMISSION_FAILED = "admission_failed"  # reason code of an order the model failed to admit (a bug: logged)
PARSER_FAILED = "parser_failed"  # reason code of an order the parser failed on (a bug: logged)
# what aiokafka raises from getmany for a record it cannot decode (header key not UTF-8, bad checksum,
# compression it cannot undo); the record stays where it is, so every fetch raises it again
UNDECODABLE: tuple[type[BaseException], ...] = (UnicodeDecodeError, CorruptRecordException, UnsupportedCodecError,
                                                zlib.error, gzip.BadGzipFile, EOFError)
SIZE_REFUSALS = (MessageSizeTooLargeError, RecordListTooLargeError)  # a broker's or aiokafka's "too large"
ISOLATION_RECORDS = 1000  # records read one by one per partition to find an undecodable one
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


def too_large_at(exc: RecordTooLargeError) -> tuple[TopicPartition, int, object] | None:
    """Partition, offset and fetch size of aiokafka's ``RecordTooLargeError`` (None: another shape)."""
    args = exc.args
    if len(args) >= 4 and isinstance(args[1], TopicPartition) and isinstance(args[2], int):
        return args[1], args[2], args[3]
    return None


@dataclass(slots=True)
class _Letter:
    """A dead letter to send: the record it stands for and how small it must be (``attempt``)."""

    tp: TopicPartition
    record: Consumed
    reason: str
    detail: str
    attempt: int = 0


class OrderIntake(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: AIOKafkaConsumer, publisher: KafkaPublisher, inputs: ModelInputs,
                 parser: OrderParser | InboxParser, metrics: IoMetrics, *, orders_topic: str, dead_letter_topic: str,
                 max_in_flight: int, dedup_window_s: float,
                 journaled: Mapping[tuple[str, int], Set[int]] | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 clock: Callable[[], float] = time.monotonic,
                 partition_plants: Mapping[int, str] | None = None) -> None:
        """``partition_plants`` (the plant inbox): each partition's plant; an order there for
        another plant is dead-lettered as ``wrong_plant`` (it could never be admitted here)."""
        self.consumer = consumer
        self.publisher = publisher
        self.inputs = inputs
        # offsets of orders already in the journal (topic, partition -> offsets): read again after a
        # crash, they are done (the recovered run has them), neither admitted again nor dead-lettered
        self.journaled = {where: set(offsets) for where, offsets in (journaled or {}).items()}
        self.parser = parser
        self.metrics = metrics
        self.orders_topic = orders_topic
        self.dead_letter_topic = dead_letter_topic
        self.max_in_flight = max_in_flight
        self.dedup_window_s = dedup_window_s
        self.clock = clock
        self.letter_attempts = letter_attempts(max_request_bytes)
        self._partitions = ConsumerOffsets(consumer, "order offsets")
        self._awaiting_ack: dict[str, tuple[TopicPartition, int]] = {}  # lot code -> its order message
        self._recently_finished: OrderedDict[str, float] = OrderedDict()
        self._letters: deque[_Letter] = deque()
        self._stopping = False
        self._paused = False
        self.dead_lettered = 0
        self.partition_plants = partition_plants
        # routed commands (the plant inbox): (command, the plant of its partition)
        self.on_command: Callable[[RoutedCommand, str], Awaitable[Any]] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._held: set[TopicPartition] = set()  # not read until released (a plant not ready for orders yet)
        inputs.on_lot_finished(self._lot_finished)

    # -- state for health and metrics -------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._partitions.pending

    @property
    def paused(self) -> bool:
        return self._paused

    def stop(self) -> None:
        self._stopping = True

    def lag(self) -> int | None:
        """Messages on the orders topic not yet consumed (None when unknown)."""
        total = 0
        known = False
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            part = self._partitions.get(tp)
            if highwater is None or part is None or part.next_offset is None:
                continue  # nothing read from it yet: its position is not known here
            known = True
            total += max(0, highwater - part.next_offset)
        return total if known else None

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        last_commit = self.clock()
        while not self._stopping:
            self._apply_backpressure()
            batch = await self._fetch()
            if batch:
                self._take(batch)
            await self._send_dead_letters()
            if self.clock() - last_commit >= 0.5 or not batch:
                await self.commit()
                last_commit = self.clock()

    def _apply_backpressure(self) -> None:
        busy = self.in_flight >= self.max_in_flight
        if busy and not self._paused:
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
            log.info("order intake paused: %d orders wait for the model", self.in_flight)
        elif self._paused and self.in_flight <= self.max_in_flight // 2:
            self.consumer.resume(*(self.consumer.paused() - self._held))
            self._paused = False
            log.info("order intake resumed")

    # -- reading, also what cannot be read -------------------------------------------------------------
    async def _fetch(self) -> Batch:
        try:
            batch: Batch = await self.consumer.getmany(timeout_ms=200, max_records=1000)
            return batch
        except RecordTooLargeError as exc:
            self._too_large(exc)
        except UNDECODABLE as exc:
            log.warning("a fetched order cannot be decoded (%r); reading record by record to find it", exc)
            await self._rewind()
            return await self._isolate()
        return {}

    def _too_large(self, exc: RecordTooLargeError) -> None:
        """aiokafka got only part of a record (larger than the fetch size) and moved past it."""
        where = too_large_at(exc)
        if where is None:
            raise exc  # not the shape aiokafka's fetcher gives it: nothing known to skip
        tp, offset, fetch_bytes = where
        self._unreadable(tp, offset, f"larger than the consumer's fetch size ({fetch_bytes} bytes) and not "
                                     f"returned whole by the broker")

    async def _rewind(self) -> None:
        """getmany raised after it had taken records of other partitions from its buffer (they are
        lost to it): every partition goes back to the first record the intake has not seen."""
        for tp in self.consumer.assignment():
            part = self._partitions.get(tp)
            if part is not None and part.next_offset is not None:
                self.consumer.seek(tp, part.next_offset)
                continue
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)  # auto_offset_reset is earliest
            else:
                self.consumer.seek(tp, committed)

    async def _isolate(self) -> Batch:
        """Read each partition on its own, one record at a time (at most ISOLATION_RECORDS), to
        find the record that cannot be decoded; it is dead-lettered as unreadable and skipped."""
        batch: Batch = {}
        paused = self.consumer.paused()
        for tp in sorted(self.consumer.assignment() - paused):
            highwater = self.consumer.highwater(tp)
            records: list[ConsumerRecord[bytes, bytes]] = []
            for _ in range(ISOLATION_RECORDS):
                position = await self.consumer.position(tp)
                if highwater is not None and position >= highwater:
                    break  # read up to where it was fetched: nothing wrong here
                try:
                    got = await self.consumer.getmany(tp, timeout_ms=1000, max_records=1)
                except RecordTooLargeError as exc:
                    self._too_large(exc)
                    continue
                except UNDECODABLE as exc:
                    self._unreadable(tp, position, f"aiokafka cannot decode it, or a record before it in its "
                                                   f"record batch: {exc!r}")
                    self.consumer.seek(tp, position + 1)
                    break
                if not got:
                    break
                records.extend(got.get(tp, ()))
            if records:
                batch[tp] = records
        return batch

    def _unreadable(self, tp: TopicPartition, offset: int, detail: str) -> None:
        self._partitions.of(tp).take(offset)
        self._dead_letter(tp, Unread(tp.topic, tp.partition, offset), OrderRejected(UNREADABLE, detail))

    def _take(self, batch: Batch) -> None:
        """Validate a fetched batch; the valid orders enter the model together, between two steps."""
        admitting: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes], Order]] = []
        inputs: list[Admit] = []
        sources: list[str] = []
        consumed = 0
        parse = self.parser.parse
        awaiting, in_progress, finished = self._awaiting_ack, self.inputs.lot_in_progress, self._recently_finished
        for tp, messages in batch.items():
            consumed += len(messages)
            part = self._partitions.of(tp)
            take = part.take
            journaled = self.journaled.get((tp.topic, tp.partition))
            origin = f"{tp.topic}/{tp.partition}/"  # an order's journal source: topic/partition/offset
            for message in messages:
                offset = message.offset
                take(offset)
                if journaled and offset in journaled:  # in the journal already: done
                    journaled.discard(offset)
                    part.done(offset)
                    continue
                try:
                    order = parse(message.value or b"")
                    if not isinstance(order, Order):  # a command routed to this plant's owner
                        self._routed_command(tp, offset, order)
                        continue
                except OrderRejected as exc:
                    self._dead_letter(tp, message, exc)
                    continue
                except Exception as exc:  # a parser bug for this one message: logged with its traceback, dead-lettered
                    log.exception("the order parser failed on %s[%d]@%d", tp.topic, tp.partition, offset)
                    self._dead_letter(tp, message, OrderRejected(PARSER_FAILED, repr(exc)))
                    continue
                code = order.lot_code
                plants = self.partition_plants
                if plants is not None and plants.get(tp.partition) != order.location:
                    self._dead_letter(tp, message, OrderRejected(
                        "wrong_plant", f"an order for {order.location} on the inbox partition of "
                                       f"{plants.get(tp.partition, 'no plant')}"))
                    continue
                if code in awaiting or code in finished or in_progress(code):
                    duplicate = self._duplicate_of(code)
                    if duplicate:
                        self._dead_letter(tp, message, OrderRejected("duplicate_lot", duplicate))
                        continue
                awaiting[code] = (tp, offset)
                admitting.append((tp, message, order))
                inputs.append(Admit(order))
                sources.append(f"{origin}{offset}")
        self.metrics.orders_consumed.inc(consumed)
        if admitting:
            admitted = self.inputs.submit(inputs, sources)
            admitted.add_done_callback(functools.partial(self._admitted, admitting))

    def _routed_command(self, tp: TopicPartition, offset: int, command: RoutedCommand) -> None:
        """Apply a routed command (``on_command``); its offset is done once it is applied or refused."""
        task = asyncio.ensure_future(self._command(tp, offset, command))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _command(self, tp: TopicPartition, offset: int, command: RoutedCommand) -> None:
        plant = (self.partition_plants or {}).get(tp.partition)
        try:
            if self.on_command is not None and plant is not None:
                await self.on_command(command, plant)
        except Exception:
            log.exception("the routed command at %s[%d]@%d failed", tp.topic, tp.partition, offset)
        part = self._partitions.get(tp)
        if part is not None:
            part.done(offset)

    def add_journaled(self, sources: Mapping[tuple[str, int], Set[int]]) -> None:
        """Offsets of orders in the journal already (a plant's run recovered after it was taken over)."""
        for where, offsets in sources.items():
            self.journaled.setdefault(where, set()).update(offsets)

    def _duplicate_of(self, code: str) -> str | None:
        if code in self._awaiting_ack or self.inputs.lot_in_progress(code):
            return f"lot {code!r} is already in progress"
        finished = self._recently_finished.get(code)
        if finished is not None and self.clock() - finished <= self.dedup_window_s:
            return f"lot {code!r} was finished {self.clock() - finished:.0f} s ago"
        return None

    def _admitted(self, admitting: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes], Order]],
                  fut: asyncio.Future[list[Result]]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:  # not expected: the gate reports failures per order
            log.error("admitting %d lots failed: %r", len(admitting), exc)
            return
        admitted = 0
        awaiting, partitions = self._awaiting_ack, self._partitions
        for (tp, message, order), result in zip(admitting, fut.result(), strict=True):
            if not isinstance(result, Exception):  # in the journal and admitted: done (order_done, inline)
                admitted += 1
                where = awaiting.pop(order.lot_code, None)
                if where is not None and (part := partitions.get(where[0])) is not None:
                    part.done(where[1])
            elif isinstance(result, JournalRefused):  # not applied, not done: read again after a restart
                log.error("order %s[%d]@%d not admitted: %s", tp.topic, tp.partition, message.offset, result)
                self._awaiting_ack.pop(order.lot_code, None)
            elif isinstance(result, OrderRejected):
                self._awaiting_ack.pop(order.lot_code, None)
                self._dead_letter(tp, message, result)
            else:  # a bug for this one order: logged, dead-lettered, not stuck
                log.error("admitting lot %s failed", order.lot_code, exc_info=result)
                self._awaiting_ack.pop(order.lot_code, None)
                self._dead_letter(tp, message, OrderRejected(ADMISSION_FAILED, repr(result)))
        if admitted:
            self.metrics.lots_admitted.inc(admitted)

    def order_done(self, lot_code: str) -> None:
        """The lot's order is in the journal: its message is done."""
        where = self._awaiting_ack.pop(lot_code, None)
        if where is not None:
            self._done(*where)

    def _lot_finished(self, lot_code: str) -> None:
        self._recently_finished[lot_code] = self.clock()
        self._recently_finished.move_to_end(lot_code)
        horizon = self.clock() - self.dedup_window_s
        while self._recently_finished:
            code, at = next(iter(self._recently_finished.items()))
            if at >= horizon:
                break
            del self._recently_finished[code]

    def _done(self, tp: TopicPartition, offset: int) -> None:
        self._partitions.done(tp, offset)

    # -- dead letters ------------------------------------------------------------------------------
    def _dead_letter(self, tp: TopicPartition, message: Consumed, exc: OrderRejected) -> None:
        """Queue a dead letter: the original key, bytes and headers as far as they fit, the reason
        and origin in headers (see :mod:`dead_letters`)."""
        self.dead_lettered += 1
        self.metrics.orders_dead_lettered.labels(exc.reason).inc()
        log.info("order at %s[%d]@%d dead-lettered: %.300s", tp.topic, tp.partition, message.offset, exc)
        self._letters.append(_Letter(tp, message, exc.reason, exc.detail))

    async def _send_dead_letters(self) -> None:
        """Hand queued dead letters to the publisher; each order is done once its letter is acknowledged."""
        while self._letters:
            letter = self._letters.popleft()
            budget, keep_value = self.letter_attempts[letter.attempt]
            message = dead_letter(letter.record, topic=self.dead_letter_topic, reason=letter.reason,
                                  detail=letter.detail, budget=budget, keep_value=keep_value)
            await self.publisher.submit(message, functools.partial(self._done, letter.tp, letter.record.offset),
                                        functools.partial(self._letter_refused, letter))

    def _letter_refused(self, letter: _Letter, exc: BaseException) -> bool:
        """Kafka refused a dead letter for good: one refused as too large goes again, smaller; any
        other refusal (or one too large even without a value) stays fatal, as for any record."""
        if not isinstance(exc, SIZE_REFUSALS) or letter.attempt + 1 >= len(self.letter_attempts):
            return False
        letter.attempt += 1
        budget, keep_value = self.letter_attempts[letter.attempt]
        log.warning("dead letter of %s[%d]@%d refused as too large (%r); sending it again %s", letter.tp.topic,
                    letter.tp.partition, letter.record.offset, exc,
                    f"in at most {budget} bytes" if keep_value else "without the value")
        self._letters.append(letter)
        return True

    async def drain_dead_letters(self) -> None:
        """Send every queued dead letter and confirm it (also those sent again smaller)."""
        while True:
            await self._send_dead_letters()
            await self.publisher.flush()
            if not self._letters:
                return

    # -- commits ----------------------------------------------------------------------------------
    async def commit(self) -> None:
        if await self._partitions.commit():
            self.metrics.offsets_committed.inc()

    def committed_positions(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the offset last committed by this intake (where a new consumer of
        the group starts), for the partitions it committed."""
        return self._partitions.committed_positions()

    # -- rebalance ----------------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if await self._partitions.revoked(revoked):
            self.metrics.offsets_committed.inc()
        gone = set(revoked)
        self._held -= gone
        for code in [code for code, (tp, _) in self._awaiting_ack.items() if tp in gone]:
            del self._awaiting_ack[code]  # read again by the next owner, not a duplicate there

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self._paused and assigned:
            self.consumer.pause(*assigned)
        await self._partitions.assigned(assigned)

    def hold(self, tp: TopicPartition) -> None:
        """Read nothing more from ``tp`` until :meth:`release`."""
        self._held.add(tp)
        if tp in self.consumer.assignment():
            self.consumer.pause(tp)

    def release(self, tp: TopicPartition) -> None:
        self._held.discard(tp)
        if not self._paused and tp in self.consumer.assignment():
            self.consumer.resume(tp)
