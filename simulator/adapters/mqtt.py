"""MQTT targets: records in, the target's wire format out, published through an :class:`MqttSession`.

Each target has a bounded queue of records with an explicit overflow policy:

- ``block``: the queue never drops; while it is full the outbox reports full, so simulated time
  holds (in-process) or the bridge stops reading Kafka;
- ``drop-oldest`` / ``drop-newest``: the oldest queued or the new record is dropped and counted.

Records are encoded when they leave the queue (not in the model's step).  A record's ``on_done``
callback runs when all of its messages are acknowledged (QoS 1/2), written (QoS 0) or dropped, so
the standalone bridge can commit Kafka offsets only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from simulator.adapters.mqtt_session import MqttSession, Outgoing, SessionState
from simulator.config.mqtt import MqttTarget
from simulator.formats import Format, WireMessage
from simulator.model.records import Record

log = logging.getLogger(__name__)
Done = Callable[[], None] | None
# records published between two yields to the event loop: publishing a long queue without a pause
# would hold up every other task (the bridge's next Kafka fetch, the PUBACKs), a burst at a time
YIELD_EVERY = 64


class MqttPublisher:
    def __init__(self, target: MqttTarget, fmt: Format, *, instance: str = "",
                 environ: Mapping[str, str] | None = None,
                 on_command: Callable[[bytes], Coroutine[Any, Any, None]] | None = None) -> None:
        self.target = target
        self.name = target.name
        self.fmt = fmt
        self.kinds = frozenset(target.records)
        self.capacity = target.queue.capacity
        self.overflow = target.queue.overflow
        self.low_water = self.capacity // 2
        self.session = MqttSession(target, instance=instance, environ=environ, on_command=on_command)
        self.on_room: Callable[[], None] | None = None
        self._queue: deque[tuple[Record | list[WireMessage], Done]] = deque()
        self._has_items = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._finishing = False
        self.records_offered = 0
        self.records_skipped = 0  # kinds this target does not carry
        self.dropped = {"oldest": 0, "newest": 0}
        self.encode_errors = 0
        self.messages_published = 0
        self.messages_acknowledged = 0

    # -- the producer side (the outbox tap, or the bridge) ------------------------------------------
    def offer(self, record: Record, on_done: Done = None) -> None:
        """Queue ``record`` (synchronous, never blocks; see the overflow policies)."""
        self._enqueue(record.kind, record, on_done)

    def offer_encoded(self, kind: str, messages: list[WireMessage], on_done: Done = None) -> None:
        """Queue messages already in this target's format (the bridge's coffeemek pass-through):
        the same queue, policies and acknowledgements as :meth:`offer`, without encoding."""
        self._enqueue(kind, messages, on_done)

    def _enqueue(self, kind: str, item: Record | list[WireMessage], on_done: Done) -> None:
        if kind not in self.kinds:
            self.records_skipped += 1
            if on_done is not None:
                on_done()
            return
        self.records_offered += 1
        if len(self._queue) >= self.capacity:
            if self.overflow == "drop-newest":
                self._drop("newest", on_done)
                return
            if self.overflow == "drop-oldest":
                _, old_done = self._queue.popleft()
                self._drop("oldest", old_done)
        self._queue.append((item, on_done))
        self._has_items.set()
        if self.overflow == "block" and len(self._queue) >= self.capacity:
            self._room.clear()

    def _drop(self, which: str, on_done: Done) -> None:
        self.dropped[which] += 1
        if self.dropped[which] == 1 or self.dropped[which] % 10_000 == 0:
            log.warning("MQTT target %s: queue full (%d), dropped %d %s record(s) so far (overflow %s)",
                        self.name, self.capacity, self.dropped[which], which, self.overflow)
        if on_done is not None:
            on_done()

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def __len__(self) -> int:
        return len(self._queue)

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Publish until :meth:`finish` was called and everything queued is acknowledged."""
        session = asyncio.get_running_loop().create_task(self.session.run(), name=f"mqtt-{self.name}-session")
        published = 0
        try:
            while True:
                if not self._queue:
                    if self._finishing:
                        break
                    self._has_items.clear()
                    await self._has_items.wait()
                    continue
                item, on_done = self._queue.popleft()
                if not self._room.is_set() and len(self._queue) <= self.low_water:
                    self._room.set()
                    if self.on_room is not None:
                        self.on_room()
                await self._publish(item, on_done)
                published += 1
                if published % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the other tasks run: Kafka fetches, acknowledgements
            await self.session.wait_idle()
        finally:
            await self.session.close()
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session

    async def _publish(self, item: Record | list[WireMessage], on_done: Done) -> None:
        if isinstance(item, list):
            messages = item
        else:
            try:
                messages = self.fmt.encode(item)
            except Exception:
                self.encode_errors += 1
                log.exception("MQTT target %s: cannot encode a %s record in format %s", self.name, item.kind,
                              self.fmt.name)
                messages = []
        if not messages:
            if on_done is not None:
                on_done()
            return
        last = len(messages) - 1
        for i, message in enumerate(messages):
            done = self._acknowledged_with(on_done if i == last else None)
            await self.session.send(Outgoing(message.topic, message.value, self.target.qos,
                                             self.target.retain or message.retain, done))
            self.messages_published += 1

    def _acknowledged_with(self, on_done: Done) -> Callable[[], None]:
        def done() -> None:
            self.messages_acknowledged += 1
            if on_done is not None:
                on_done()
        return done

    def finish(self) -> None:
        """No more records: drain the queue, wait for the acknowledgements, disconnect."""
        self._finishing = True
        self._has_items.set()

    # -- views ---------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.session.state == SessionState.CONNECTED

    def health(self) -> dict[str, Any]:
        t = self.target
        s = self.session
        return {
            "name": t.name,
            "broker": f"{t.host}:{t.port}",
            "protocol": t.protocol,
            "tls": t.tls.enabled,
            "auth": t.auth.method,
            "client_id": s.client_id,
            "format": self.fmt.name,
            "qos": t.qos,
            "state": s.state,
            "connected": self.connected,
            "last_error": s.last_error,
            "connects": s.connects,
            "reconnects": s.reconnects,
            "queue_depth": len(self._queue),
            "queue_capacity": self.capacity,
            "overflow": self.overflow,
            "in_flight": s.in_flight,
            "records_offered": self.records_offered,
            "messages_published": self.messages_published,
            "messages_acknowledged": self.messages_acknowledged,
            "messages_resent": s.resent,
            "dropped_oldest": self.dropped["oldest"],
            "dropped_newest": self.dropped["newest"],
            "encode_errors": self.encode_errors,
            "commands_received": s.commands_received,
        }


class MqttTargetMetrics(Collector):
    """Prometheus view of the MQTT targets (read at scrape time)."""

    def __init__(self, publishers: list[MqttPublisher]) -> None:
        self.publishers = publishers

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        def family(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, doc: str,
                   value: Callable[[MqttPublisher], float]) -> CounterMetricFamily | GaugeMetricFamily:
            metric = kind(name, doc, labels=["target"])
            for p in self.publishers:
                metric.add_metric([p.name], value(p))
            return metric

        yield family(GaugeMetricFamily, "factorysim_mqtt_connected", "1 when the target's broker connection is up",
                     lambda p: 1.0 if p.connected else 0.0)
        yield family(GaugeMetricFamily, "factorysim_mqtt_queue_depth", "Records waiting for the target",
                     lambda p: len(p))
        yield family(GaugeMetricFamily, "factorysim_mqtt_in_flight", "QoS 1/2 messages not yet acknowledged",
                     lambda p: p.session.in_flight)
        yield family(CounterMetricFamily, "factorysim_mqtt_messages_published", "Messages published",
                     lambda p: p.messages_published)
        yield family(CounterMetricFamily, "factorysim_mqtt_messages_acknowledged",
                     "Messages acknowledged by the broker (QoS 0: written)", lambda p: p.messages_acknowledged)
        yield family(CounterMetricFamily, "factorysim_mqtt_messages_resent",
                     "Unacknowledged messages published again after a reconnect", lambda p: p.session.resent)
        yield family(CounterMetricFamily, "factorysim_mqtt_reconnects", "Connections lost and re-established",
                     lambda p: p.session.reconnects)
        dropped = CounterMetricFamily("factorysim_mqtt_records_dropped", "Records dropped by the overflow policy",
                                      labels=["target", "which"])
        for p in self.publishers:
            for which, count in p.dropped.items():
                dropped.add_metric([p.name, which], count)
        yield dropped
