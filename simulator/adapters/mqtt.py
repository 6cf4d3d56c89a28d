"""MQTT targets: a delivery target (:mod:`simulator.adapters.delivery.target`: queue or spool,
outage, faults) whose transport is an :class:`MqttSession`.

A record's ``on_done`` callback runs when all of its messages are acknowledged (QoS 1/2), written
(QoS 0) or dropped — or, with a spool, once it is on disk — so the standalone bridge can commit
Kafka offsets only then.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from simulator.adapters.delivery.target import DeliveryTarget
from simulator.adapters.delivery.transport import Delivery
from simulator.adapters.mqtt_session import MqttSession, Outgoing, SessionState
from simulator.adapters.sparkplug_node import SparkplugNode
from simulator.config.mqtt import MqttTarget
from simulator.formats import Format
from simulator.formats.sparkplug import SparkplugFormat


class MqttTransport:
    """Messages to an MQTT broker, through one session (in order, within its in-flight window)."""

    def __init__(self, target: MqttTarget, session: MqttSession) -> None:
        self.target = target
        self.session = session
        self.messages_published = 0
        self.messages_acknowledged = 0

    async def run(self) -> None:
        await self.session.run()

    async def send(self, deliveries: list[Delivery]) -> None:
        qos, retain, session = self.target.qos, self.target.retain, self.session
        for message, done in deliveries:
            await session.send(Outgoing(message.topic, message.value, qos, retain or message.retain,
                                        self._acknowledged_with(done), message))
            self.messages_published += 1

    def _acknowledged_with(self, on_done: Callable[[], None]) -> Callable[[], None]:
        def done() -> None:
            self.messages_acknowledged += 1
            on_done()
        return done

    async def wait_idle(self) -> None:
        await self.session.wait_idle()

    async def close(self) -> None:
        await self.session.close()

    @property
    def connected(self) -> bool:
        return self.session.state == SessionState.CONNECTED

    def health(self) -> dict[str, Any]:
        return {"in_flight": self.session.in_flight}


class MqttPublisher(DeliveryTarget):
    kind = "mqtt"
    key = "mqtt.targets"

    def __init__(self, target: MqttTarget, fmt: Format, *, instance: str = "",
                 environ: Mapping[str, str] | None = None,
                 on_command: Callable[[bytes], Coroutine[Any, Any, None]] | None = None,
                 seed: int = 0, program: str = "run", instance_id: str | None = None) -> None:
        self.target = target
        self.sparkplug = sparkplug_node(fmt, on_command)
        self.session = MqttSession(target, instance=instance, environ=environ, on_command=on_command,
                                   hooks=self.sparkplug)
        self.mqtt = MqttTransport(target, self.session)
        super().__init__(target, fmt, self.mqtt, seed=seed, program=program, instance_id=instance_id)

    @property
    def messages_published(self) -> int:
        return self.mqtt.messages_published

    @property
    def messages_acknowledged(self) -> int:
        return self.mqtt.messages_acknowledged

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
            "qos": t.qos,
            "state": s.state,
            "connected": self.connected,
            "last_error": s.last_error,
            "connects": s.connects,
            "reconnects": s.reconnects,
            "in_flight": s.in_flight,
            "messages_published": self.messages_published,
            "messages_acknowledged": self.messages_acknowledged,
            "messages_resent": s.resent,
            "commands_received": s.commands_received,
            **self.delivery_health(),
            **({"sparkplug": {**self.sparkplug.health(), "superseded": s.superseded}}
               if self.sparkplug is not None else {}),
        }


def sparkplug_node(fmt: Format,
                   on_command: Callable[[bytes], Coroutine[Any, Any, None]] | None) -> SparkplugNode | None:
    """The Sparkplug edge node of a target in format ``sparkplug`` (None for the other formats); the
    service's publishers hold their formats per run (:class:`RunFormats`), the node the target's own."""
    base = getattr(fmt, "fallback", fmt)
    if not isinstance(base, SparkplugFormat):
        return None
    return SparkplugNode(base.table, base.epoch_ms(0.0), on_command)


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
        yield from self._sparkplug([p for p in self.publishers if p.sparkplug is not None])

    @staticmethod
    def _sparkplug(publishers: list[MqttPublisher]) -> Iterator[CounterMetricFamily]:
        """The Sparkplug edge nodes' counters (targets in format ``sparkplug`` only)."""
        if not publishers:
            return
        counters: tuple[tuple[str, str, Callable[[SparkplugNode], int]], ...] = (
                ("births", "NBIRTHs published (each connection, each rebirth)", lambda n: n.births),
                ("rebirths_requested", "Rebirths asked for by a host (NCMD)", lambda n: n.rebirths_requested),
                ("data_published", "DDATA messages published", lambda n: n.data_published),
                ("data_unchanged", "Records that changed no metric (nothing sent)", lambda n: n.data_unchanged),
                ("commands_received", "NCMD and DCMD messages received", lambda n: n.commands_received),
                ("commands_rejected", "NCMD and DCMD writes rejected", lambda n: n.commands_rejected))
        for name, doc, value in counters:
            family = CounterMetricFamily(f"factorysim_sparkplug_{name}", doc, labels=["target"])
            for p in publishers:
                assert p.sparkplug is not None
                family.add_metric([p.name], value(p.sparkplug))
            yield family
