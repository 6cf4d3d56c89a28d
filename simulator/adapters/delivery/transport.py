"""What carries a delivery target's messages to its receiver: an MQTT session
(:class:`simulator.adapters.mqtt.MqttTransport`) or HTTP requests
(:class:`simulator.adapters.delivery.http_sink.HttpTransport`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from simulator.formats import WireMessage

# one message on its way, and what to call once the receiver has it (or it is given up): exactly once
Delivery = tuple[WireMessage, Callable[[], None]]
Hold = Callable[[], Awaitable[None]]  # returns when sending may go on (a network outage is over)


class Transport(Protocol):
    async def run(self) -> None:
        """The transport's own loop (the MQTT connection), until :meth:`close`."""

    async def send(self, deliveries: list[Delivery]) -> None:
        """Send in order; returns once the transport has taken them (MQTT: published within its
        in-flight window; HTTP: the requests are answered and every delivery's callback called)."""

    async def wait_idle(self) -> None:
        """Until everything sent so far is acknowledged."""

    async def close(self) -> None:
        """Disconnect; safe to call twice."""

    @property
    def connected(self) -> bool: ...

    def health(self) -> dict[str, Any]: ...
