"""The plant inbox: orders and commands routed to the instance that owns their plant.

Instances that share the plants (``kafka.scale_out``) read the orders topic in one consumer group
(any instance may get any order) and own the plants through the partitions of the inbox topic
(``kafka.topics.plant_inbox``), one partition per plant: partition *i* is the *i*-th plant in
name order.  Whoever reads an order validates it (a bad one is dead-lettered as always) and
routes it to its plant's partition (:class:`InboxRouter`); the order's offset is committed once
Kafka has acknowledged the routed copy.  The owner reads its plants' partitions and admits the
orders there, as a service alone admits those of the orders topic (:class:`InboxParser`).  A
command for a machine of a plant this instance does not own goes the same way
(:func:`command_message`).

An inbox message is a JSON object: ``{"order": {...}, "source": "topic/partition/offset"}``
(the order as the model has it, and where it was read) or ``{"command": {...}}``.  It is keyed by
its plant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from simulator.errors import JournalRefused, OrderRejected
from simulator.interfaces import Result
from simulator.model.inputs import Admit, Input
from simulator.model.order import Order
from simulator.orders import OrderParser

log = logging.getLogger(__name__)

RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # waits between sends of a routed copy Kafka did not take


def plant_partitions(plants: Sequence[str]) -> dict[str, int]:
    """Plant -> its partition of the inbox topic."""
    return {plant: index for index, plant in enumerate(sorted(plants))}


@dataclass(frozen=True, slots=True)
class RoutedCommand:
    """A command routed to its plant's owner (the body as the entrance had it)."""

    body: dict[str, Any]


def order_message(order: Order, source: str | None) -> bytes:
    return orjson.dumps({"order": asdict(order), "source": source})


def command_message(body: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"command": dict(body)})


class InboxParser:
    """Reads inbox messages: an order (validated again: the inbox is a topic like any other) or a
    routed command; anything else, or larger than an order may be (with its envelope), is refused."""

    def __init__(self, parser: OrderParser) -> None:
        self.parser = parser
        self.max_bytes = 2 * parser.max_bytes + 1024  # an order as the model has it, its source and the envelope

    def parse(self, raw: bytes) -> Order | RoutedCommand:
        if len(raw) > self.max_bytes:
            raise OrderRejected("oversized", f"{len(raw)} bytes, the limit is {self.max_bytes}")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise OrderRejected("not_json", f"not valid JSON: {exc}") from exc
        if isinstance(data, dict) and isinstance(data.get("order"), dict):
            return self.parser.from_mapping(data["order"])
        if isinstance(data, dict) and isinstance(data.get("command"), dict):
            return RoutedCommand(data["command"])
        raise OrderRejected("not_object", "an inbox message is {\"order\": {...}} or {\"command\": {...}}")


class InboxRouter:
    """The model inputs of an instance that shares the plants (:class:`~simulator.interfaces.ModelInputs`
    to the order intake): an order "applies" once Kafka has acknowledged its copy on its plant's
    inbox partition.  A send Kafka does not take is tried again (the intake waits; its offset is
    not committed) until the router stops."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: Mapping[str, int]) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self.routed = 0
        self._stopping = False
        self._sending: set[asyncio.Task[None]] = set()

    def submit(self, items: Sequence[Input], sources: Sequence[str | None] | None = None,
               ) -> asyncio.Future[list[Result]]:
        done: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._route(list(items), list(sources or [None] * len(items)), done))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return done

    async def _route(self, items: list[Input], sources: list[str | None], done: asyncio.Future[list[Result]]) -> None:
        try:
            results = await self._routed(items, sources)
        except Exception as exc:  # not expected (sends are tried again): the orders are read again after a restart
            log.exception("routing %d orders failed", len(items))
            results = [JournalRefused(f"not routed: {exc!r}") for _ in items]
        if not done.done():
            done.set_result(results)

    async def _routed(self, items: list[Input], sources: list[str | None]) -> list[Result]:
        results: list[Result] = []
        sends: list[asyncio.Future[Any] | None] = []
        for item, source in zip(items, sources, strict=True):
            if not isinstance(item, Admit):
                sends.append(None)
                continue
            order = item.order
            sends.append(await self._send(order_message(order, source), order.location))
        for item, send in zip(items, sends, strict=True):
            if send is None or not isinstance(item, Admit):
                results.append(OrderRejected("not_routable", f"{type(item).__name__} is not routed"))
                continue
            results.append(await self._acknowledged(send, item, sources[len(results)]))
        self.routed += sum(1 for r in results if not isinstance(r, Exception))
        return results

    async def _send(self, value: bytes, plant: str) -> asyncio.Future[Any]:
        """The send's acknowledgement (a failed future when the producer refused to take it)."""
        try:
            future: asyncio.Future[Any] = await self.producer.send(self.topic, value, key=plant.encode(),
                                                                  partition=self.partitions[plant])
        except KafkaError as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return future

    async def _acknowledged(self, send: asyncio.Future[Any], item: Admit, source: str | None) -> Result:
        """Wait for Kafka's acknowledgement of ``send``; send again (after a wait) while it fails."""
        attempt = 0
        while True:
            try:
                await send
                routed: Result = {"routed": item.order.location}
                return routed
            except KafkaError as exc:
                if self._stopping:
                    return JournalRefused(f"the routed copy was not sent before the stop ({exc!r})")
                wait = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                attempt += 1
                log.warning("routing order %s to plant %s failed (%r); sending it again in %.1f s",
                            item.order.lot_code, item.order.location, exc, wait)
                await asyncio.sleep(wait)
                send = await self._send(order_message(item.order, source), item.order.location)

    async def send_command(self, body: Mapping[str, Any], plant: str) -> None:
        """Route a command to ``plant``'s owner; returns once Kafka has it (raises KafkaError)."""
        await (await self._send(command_message(body), plant))

    def stop(self) -> None:
        self._stopping = True

    def lot_in_progress(self, lot_code: str) -> bool:
        return False  # the owner knows (it dead-letters a duplicate)

    def on_lot_finished(self, listener: Any) -> None:
        """Lots finish at their owners."""
