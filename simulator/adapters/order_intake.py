"""Orders from Kafka into the model, at least once, never blocking a partition.

A message's offset is committed only when it is *done*: its lot's ``lot.received`` event was
acknowledged by Kafka, or it was dead-lettered and the dead letter acknowledged.  Offsets are
committed per partition up to the first message that is not done yet.  When too many orders are
waiting for that, the consumer pauses its partitions instead of buffering.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.adapters.offsets import PartitionOffsets
from simulator.errors import OrderRejected
from simulator.formats import WireMessage
from simulator.model.lot import Lot
from simulator.model.order import Order
from simulator.model.simulation import Simulation
from simulator.orders import OrderParser, order_to_json
from simulator.runtime.driver import Driver
from simulator.runtime.metrics import IoMetrics

log = logging.getLogger(__name__)

HANDOVER_HEADER = "factorysim-handover"


def _admit_all(orders: list[Order], sim: Simulation) -> list[Lot | Exception]:
    """Admit ``orders`` in their order (run by the driver between two steps); each gets its lot or
    the exception that refused it."""
    results: list[Lot | Exception] = []
    for order in orders:
        try:
            results.append(sim.admit(order))
        except Exception as exc:  # noqa: BLE001 - reported per order, the others still enter
            results.append(exc)
    return results


class OrderIntake(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: AIOKafkaConsumer, publisher: KafkaPublisher, driver: Driver,
                 parser: OrderParser, metrics: IoMetrics, *, orders_topic: str, dead_letter_topic: str,
                 max_in_flight: int, dedup_window_s: float, acknowledge_on_admit: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.driver = driver
        self.parser = parser
        self.metrics = metrics
        self.orders_topic = orders_topic
        self.dead_letter_topic = dead_letter_topic
        self.max_in_flight = max_in_flight
        self.dedup_window_s = dedup_window_s
        self.acknowledge_on_admit = acknowledge_on_admit
        self.clock = clock
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._awaiting_ack: dict[str, tuple[TopicPartition, int]] = {}  # lot code -> its order message
        self._recently_finished: OrderedDict[str, float] = OrderedDict()
        self._letters: list[tuple[WireMessage, Callable[[], None]]] = []
        self._stopping = False
        self._paused = False
        self.dead_lettered = 0
        driver.sim.on_lot_finished(self._lot_finished)

    # -- state for health and metrics -------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return sum(len(p.pending) for p in self._partitions.values())

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
            batch = await self.consumer.getmany(timeout_ms=200, max_records=1000)
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
            self.consumer.resume(*self.consumer.paused())
            self._paused = False
            log.info("order intake resumed")

    def _take(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Validate a fetched batch; the valid orders enter the model together, between two steps."""
        admitting: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes], Order]] = []
        consumed = 0
        parse = self.parser.parse
        awaiting, in_progress, finished = self._awaiting_ack, self.driver.sim.lots, self._recently_finished
        for tp, messages in batch.items():
            consumed += len(messages)
            part = self._partitions.get(tp)
            if part is None:
                part = self._partitions[tp] = PartitionOffsets()
            for message in messages:
                part.take(message.offset)
                try:
                    order = parse(message.value or b"")
                except OrderRejected as exc:
                    self._dead_letter(tp, message, exc)
                    continue
                if message.headers and any(key == HANDOVER_HEADER for key, _ in message.headers):
                    order = dataclasses.replace(order, resumed=True)
                code = order.lot_code
                if code in awaiting or code in in_progress or code in finished:
                    duplicate = self._duplicate_of(code)
                    if duplicate:
                        self._dead_letter(tp, message, OrderRejected("duplicate_lot", duplicate))
                        continue
                awaiting[code] = (tp, message.offset)
                admitting.append((tp, message, order))
        self.metrics.orders_consumed.inc(consumed)
        if admitting:
            orders = [order for _, _, order in admitting]
            admitted = self.driver.call(functools.partial(_admit_all, orders))
            admitted.add_done_callback(functools.partial(self._admitted, admitting))

    def _duplicate_of(self, code: str) -> str | None:
        if code in self._awaiting_ack or code in self.driver.sim.lots:
            return f"lot {code!r} is already in progress"
        finished = self._recently_finished.get(code)
        if finished is not None and self.clock() - finished <= self.dedup_window_s:
            return f"lot {code!r} was finished {self.clock() - finished:.0f} s ago"
        return None

    def _admitted(self, admitting: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes], Order]],
                  fut: asyncio.Future[list[Lot | Exception]]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:  # not expected: _admit_all reports failures per order
            log.error("admitting %d lots failed: %r", len(admitting), exc)
            return
        admitted = 0
        for (tp, message, order), result in zip(admitting, fut.result(), strict=True):
            if isinstance(result, OrderRejected):
                self._awaiting_ack.pop(order.lot_code, None)
                self._dead_letter(tp, message, result)
            elif isinstance(result, Exception):
                log.error("admitting lot %s failed: %r", order.lot_code, result)
            else:
                admitted += 1
                if self.acknowledge_on_admit:
                    self.lot_received_acknowledged(order.lot_code)
        if admitted:
            self.metrics.lots_admitted.inc(admitted)

    def lot_received_acknowledged(self, lot_code: str) -> None:
        """The lot's ``lot.received`` is safely in Kafka: its order message is done."""
        where = self._awaiting_ack.pop(lot_code, None)
        if where is not None:
            self._done(*where)

    def _lot_finished(self, lot: Lot) -> None:
        self._recently_finished[lot.code] = self.clock()
        self._recently_finished.move_to_end(lot.code)
        horizon = self.clock() - self.dedup_window_s
        while self._recently_finished:
            code, at = next(iter(self._recently_finished.items()))
            if at >= horizon:
                break
            del self._recently_finished[code]

    def _done(self, tp: TopicPartition, offset: int) -> None:
        part = self._partitions.get(tp)
        if part is not None:
            part.done(offset)

    # -- dead letters ------------------------------------------------------------------------------
    def _dead_letter(self, tp: TopicPartition, message: ConsumerRecord[bytes, bytes], exc: OrderRejected) -> None:
        """Queue a dead letter: the original key and bytes, the reason and origin in headers."""
        self.dead_lettered += 1
        self.metrics.orders_dead_lettered.labels(exc.reason).inc()
        log.info("order at %s[%d]@%d dead-lettered: %s", tp.topic, tp.partition, message.offset, exc)
        headers = (
            *[(k, v) for k, v in message.headers if not k.startswith("dlq.")],
            ("dlq.reason", exc.reason.encode()),
            ("dlq.detail", exc.detail.encode(errors="replace")[:1000]),
            ("dlq.topic", tp.topic.encode()),
            ("dlq.partition", str(tp.partition).encode()),
            ("dlq.offset", str(message.offset).encode()),
        )
        letter = WireMessage(self.dead_letter_topic, message.key or b"", headers, message.value or b"")
        self._letters.append((letter, functools.partial(self._done, tp, message.offset)))

    async def _send_dead_letters(self) -> None:
        """Hand queued dead letters to the publisher; each order is done once its letter is acknowledged."""
        while self._letters:
            letter, done = self._letters.pop(0)
            await self.publisher.submit(letter, done)

    async def drain_dead_letters(self) -> None:
        await self._send_dead_letters()
        await self.publisher.flush()

    # -- commits ----------------------------------------------------------------------------------
    async def commit(self) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        assigned = self.consumer.assignment()
        for tp, part in self._partitions.items():
            position = part.to_commit()
            if tp in assigned and position is not None:
                offsets[tp] = OffsetAndMetadata(position, "")
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - a failed commit is retried with the next one
            log.warning("committing order offsets failed (%r); will retry", exc)
            return
        self.metrics.offsets_committed.inc()
        for tp, meta in offsets.items():
            self._partitions[tp].committed = meta.offset

    # -- rebalance ----------------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            await self.commit()
        for tp in revoked:
            self._partitions.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self._paused and assigned:
            self.consumer.pause(*assigned)

    # -- handover at shutdown -----------------------------------------------------------------------
    async def hand_over(self, orders: list[Order]) -> int:
        """Put the orders of lots still in progress back on the orders topic (acknowledged), so
        that the next start continues them."""
        for order in orders:
            await self.publisher.submit(WireMessage(self.orders_topic, order.lot_code.encode(),
                                                    ((HANDOVER_HEADER, b"1"),), order_to_json(order)))
        await self.publisher.flush()
        self.metrics.lots_handed_over.inc(len(orders))
        return len(orders)
