"""One MQTT connection kept alive on top of gmqtt (chosen by measurement, see BENCHMARKS.md).

- Connects with the target's protocol (3.1.1 or 5), TLS, credentials or K8S-SAT enhanced
  authentication (the token is read again for every attempt), and a Last Will ``offline`` on the
  availability topic; publishes a retained ``online`` there once connected.
- Reconnects with capped, jittered exponential backoff; gmqtt's own reconnect logic is switched
  off so that every attempt gets fresh credentials and a clean session.
- Subscribes the command topic again on every connection.
- Tracks QoS 1/2 messages until the broker acknowledges them (PUBACK / PUBCOMP).  Messages not
  acknowledged when a connection drops are published again, first and in their original order,
  on the next connection; acknowledged ones never are, so the session's own retries cause no
  duplicates beyond the messages in flight at the moment of the drop.
- A protocol on top of MQTT (Sparkplug B: :mod:`simulator.adapters.sparkplug_node`) plugs in as
  :class:`SessionHooks`: its own will, births on every connection, its subscriptions, the payload
  of each message at the moment it is published, and what it says on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.property import PROPERTIES, PROPERTIES_BY_ID, PROPERTIES_BY_NAME, Property
from gmqtt.storage import PersistentStorage

from simulator.adapters.mqtt_options import availability_topic, client_id, credentials, tls_context
from simulator.asyncio_waits import wait_for
from simulator.config.mqtt import MqttTarget
from simulator.errors import FactorySimError
from simulator.formats import WireMessage

log = logging.getLogger(__name__)

class SessionState(StrEnum):
    """An MQTT target's connection, as /health shows it (``mqtt.targets[].state``)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"

ONLINE, OFFLINE = b"online", b"offline"
MQTT311_QOS2_WINDOW = 16


def _register_authentication_data() -> None:
    """gmqtt knows the MQTT 5 Authentication Method property (21) but not Authentication Data (22),
    which K8S-SAT needs in CONNECT and a broker may send back in CONNACK."""
    if 22 not in PROPERTIES_BY_ID:
        prop = Property(22, "b", "auth_data", ["CONNECT", "CONNACK", "AUTH"])
        PROPERTIES.append(prop)
        PROPERTIES_BY_ID[22] = prop
        PROPERTIES_BY_NAME["auth_data"] = prop


_register_authentication_data()


@dataclass(slots=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    on_done: Callable[[], None] | None = None  # called once the broker has it (QoS 0: once written)
    message: WireMessage | None = None  # what it came from (the session hooks make the payload from it)


RawPublish = Callable[[str, bytes, int, bool], None]  # topic, payload, qos, retain: straight to the broker


class SessionHooks(Protocol):
    """A protocol on top of the session (Sparkplug B's edge node); it replaces the availability topic."""

    replaces_unacknowledged: bool  # True: what a dropped connection left unacknowledged is not sent again

    def will(self) -> tuple[str, bytes]:
        """(topic, payload) of the Last Will of the next connection attempt (QoS 1, not retained)."""
        ...

    def subscriptions(self) -> tuple[str, ...]: ...

    def connected(self, publish: RawPublish) -> None:
        """Connected: publish what must come before anything else (births)."""
        ...

    def prepare(self, message: WireMessage) -> bytes | None:
        """The payload of ``message`` as it is published now; None: nothing to publish."""
        ...

    def message(self, topic: str, payload: bytes) -> bool:
        """An incoming message; True when the hooks handled it."""
        ...

    def closing(self, publish: RawPublish) -> None:
        """A clean stop, still connected: the last words."""
        ...


class _AckTracker(PersistentStorage):  # type: ignore[misc]
    """gmqtt keeps each unacknowledged QoS 1/2 PUBLISH here and removes it on PUBACK/PUBCOMP;
    that removal is the acknowledgement."""

    def __init__(self, on_stored: Callable[[int], None], on_ack: Callable[[int], None]) -> None:
        super().__init__()
        self._on_stored = on_stored
        self._on_ack = on_ack

    def push_message(self, mid: int, raw_package: bytes) -> None:
        known = mid in self._messages
        super().push_message(mid, raw_package)
        if not known:  # a PUBREL replacing its PUBLISH (QoS 2) is the same message
            self._on_stored(mid)

    def remove_message_by_mid(self, mid: int) -> None:
        if self._messages.pop(mid, None) is not None:
            self._on_ack(mid)
            self._check_empty()


class CoalescingWriter:
    """A transport whose writes within one event-loop turn go out as one write.

    gmqtt writes every packet to the transport by itself, which costs one socket send per
    message; publishing a burst of messages then spends most of its time in system calls.
    Order is kept, and the buffer is written before the transport closes.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._buffer = bytearray()
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._buffer and not self._transport.is_closing():
            self._transport.write(bytes(self._buffer))
        self._buffer.clear()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Client(gmqtt.Client):  # type: ignore[misc]
    """A gmqtt client that reports a lost connection instead of reconnecting by itself, and writes
    the packets of one event-loop turn together."""

    on_lost: Callable[[], None] = staticmethod(lambda: None)

    async def reconnect(self, delay: bool = False) -> None:
        self.on_lost()

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super()._create_connection(*args, **kwargs)
        writer = CoalescingWriter(connection._transport)
        connection._transport = writer  # CONNECT, PING, DISCONNECT, acknowledgements
        connection._protocol._transport = writer  # PUBLISH, SUBSCRIBE
        return connection


class MqttConnectError(FactorySimError):
    pass


class MqttSession:
    def __init__(self, target: MqttTarget, *, instance: str = "", environ: Mapping[str, str] | None = None,
                 on_command: Callable[[bytes], Coroutine[Any, Any, None]] | None = None,
                 connect_timeout_s: float = 10.0, hooks: SessionHooks | None = None) -> None:
        self.target = target
        self.environ = environ
        self.hooks = hooks
        self.client_id = client_id(target, instance)
        self.availability_topic = availability_topic(target, self.client_id) if hooks is None else None
        self.on_command = on_command
        self.connect_timeout_s = connect_timeout_s
        self.ssl: ssl.SSLContext | None = tls_context(target)
        self.state = SessionState.DISCONNECTED
        self.last_error: str | None = None
        self.connects = 0
        self.reconnects = 0
        self.resent = 0
        self.superseded = 0  # (hooks) unacknowledged messages a new connection's births replaced
        self.commands_received = 0
        self.window = target.max_in_flight
        self._client: _Client | None = None
        self._in_flight: dict[int, Outgoing] = {}
        self._resend: deque[Outgoing] = deque()
        self._last_mid: int | None = None
        self._ready = asyncio.Event()  # connected and nothing left to resend
        self._lost = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()  # nothing in flight
        self._idle.set()
        self._closing = False
        self._rng = random.Random()  # backoff jitter only
        self._tasks: set[asyncio.Task[None]] = set()

    # -- views ---------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.state == SessionState.CONNECTED

    @property
    def in_flight(self) -> int:
        return len(self._in_flight) + len(self._resend)

    # -- the connection loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep a connection up until :meth:`close`."""
        delay = self.target.reconnect.initial_s
        while not self._closing:
            self.state = SessionState.CONNECTING
            try:
                await self._connect()
            except (OSError, TimeoutError, MqttConnectError, gmqtt.mqtt.handler.MQTTConnectError,
                    FactorySimError) as exc:
                self._note_error(exc)
                self.state = SessionState.DISCONNECTED
                await self._pause(delay)
                delay = min(self.target.reconnect.max_s, delay * 2)
                continue
            delay = self.target.reconnect.initial_s
            await self._lost.wait()
            if self._closing:
                break
            self._connection_lost()
            self.reconnects += 1
            log.warning("MQTT target %s: connection to %s:%s lost; reconnecting", self.target.name,
                        self.target.host, self.target.port)
            await self._pause(delay)
        self.state = SessionState.CLOSED

    async def _pause(self, delay: float) -> None:
        jitter = self.target.reconnect.jitter
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(delay * (1.0 - jitter * self._rng.random()))

    def _note_error(self, exc: BaseException) -> None:
        text = _describe(exc, self.target)
        if text != self.last_error:
            log.error("MQTT target %s: %s", self.target.name, text)
        self.last_error = text

    async def _connect(self) -> None:
        target = self.target
        creds = credentials(target, self.environ)  # again for every attempt: the token rotates
        will = None
        if self.hooks is not None:
            will_topic, will_payload = self.hooks.will()
            will = gmqtt.Message(will_topic, will_payload, qos=1, retain=False)
        elif self.availability_topic is not None:
            will = gmqtt.Message(self.availability_topic, OFFLINE, qos=1, retain=True)
        tracker = _AckTracker(self._stored, self._acknowledged)
        client = _Client(self.client_id, clean_session=True, will_message=will, persistent_storage=tracker,
                         **creds.properties)
        client.on_lost = self._on_lost
        client.on_message = self._on_message
        if creds.username is not None:
            client.set_auth_credentials(creds.username, creds.password)
        self._lost.clear()
        version = MQTTv50 if target.protocol == "5" else MQTTv311
        try:
            await wait_for(
                client.connect(target.host, target.port, ssl=self.ssl or False, keepalive=target.keepalive_s,
                               version=version), self.connect_timeout_s)
        except BaseException:
            with contextlib.suppress(Exception):
                await wait_for(client.disconnect(), 1.0)
            raise
        self._client = client
        # gmqtt hands out at most Receive Maximum - 2 packet ids; keep one for the availability message
        # and one for the command subscription (Sparkplug: no availability message, two subscriptions)
        self.window = max(1, min(target.max_in_flight, _receive_maximum(client) - 4))
        if target.protocol == "3.1.1" and target.qos == 2:
            # no flow control in 3.1.1; brokers keep few incoming QoS 2 flows open (Mosquitto: 20)
            self.window = min(self.window, MQTT311_QOS2_WINDOW)
        self.connects += 1
        self.last_error = None
        self.state = SessionState.CONNECTED
        log.info("MQTT target %s: connected to %s:%s as %s (MQTT %s)", target.name, target.host, target.port,
                 self.client_id, target.protocol)
        if self.availability_topic is not None:
            client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        if target.command_topic is not None:
            client.subscribe(target.command_topic, qos=1)
        if self.hooks is not None:
            for topic in self.hooks.subscriptions():
                client.subscribe(topic, qos=1)
            self.hooks.connected(_raw_publish(client))
        await self._resend_pending()

    async def _resend_pending(self) -> None:
        if self.hooks is not None and self.hooks.replaces_unacknowledged:
            while self._resend:  # superseded (the births carry their values): done, not sent again
                item = self._resend.popleft()
                self.superseded += 1
                if item.on_done is not None:
                    item.on_done()
            if not self._in_flight:
                self._idle.set()
        while self._resend and not self._lost.is_set():
            await self._wait_room()
            if self._lost.is_set():
                return
            item = self._resend.popleft()
            self.resent += 1
            self._publish_now(item)
        if not self._lost.is_set():
            self._ready.set()

    def _on_lost(self) -> None:
        self._ready.clear()
        self._lost.set()

    def _connection_lost(self) -> None:
        self._ready.clear()
        self.state = SessionState.DISCONNECTED
        unacked = list(self._in_flight.values())
        self._in_flight.clear()
        self._resend.extendleft(reversed(unacked))
        self._room.set()
        self._client = None

    # -- publishing ----------------------------------------------------------------------------------
    async def send(self, item: Outgoing) -> None:
        """Publish ``item`` once connected, in order, at most ``window`` unacknowledged at a time."""
        while True:
            await self._ready.wait()
            await self._wait_room()
            if self._ready.is_set() and not self._lost.is_set():
                break
        self._publish_now(item)

    async def _wait_room(self) -> None:
        while len(self._in_flight) >= self.window and not self._lost.is_set():
            self._room.clear()
            lost = asyncio.ensure_future(self._lost.wait())
            room = asyncio.ensure_future(self._room.wait())
            try:
                await asyncio.wait({lost, room}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                room.cancel()

    def _publish_now(self, item: Outgoing) -> None:
        assert self._client is not None
        payload = item.payload
        if self.hooks is not None and item.message is not None:
            prepared = self.hooks.prepare(item.message)
            if prepared is None:
                if item.on_done is not None:
                    item.on_done()
                return
            payload = prepared
        self._last_mid = None
        self._client.publish(item.topic, payload, qos=item.qos, retain=item.retain)
        if item.qos == 0:
            if item.on_done is not None:
                item.on_done()
            return
        mid = self._last_mid
        assert mid is not None, "gmqtt stores every QoS 1/2 publish"
        self._in_flight[mid] = item
        self._idle.clear()

    def _stored(self, mid: int) -> None:
        self._last_mid = mid

    def _acknowledged(self, mid: int) -> None:
        item = self._in_flight.pop(mid, None)
        if item is None:
            return
        if item.on_done is not None:
            item.on_done()
        if len(self._in_flight) < self.window:
            self._room.set()
        if not self._in_flight and not self._resend:
            self._idle.set()

    async def wait_ready(self) -> None:
        """Until connected with nothing left to resend."""
        await self._ready.wait()

    async def wait_idle(self) -> None:
        """Until every QoS 1/2 message sent so far is acknowledged."""
        while self._in_flight or self._resend:
            self._idle.clear()
            await self._idle.wait()

    # -- commands ------------------------------------------------------------------------------------
    def _on_message(self, _client: Any, topic: str, payload: bytes, _qos: int, _properties: Any) -> int:
        if self.hooks is not None and self.hooks.message(topic, payload):
            return 0
        if self.on_command is not None and topic == self.target.command_topic:
            self.commands_received += 1
            task = asyncio.get_running_loop().create_task(self.on_command(payload), name="mqtt-command")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return 0  # PUBACK reason: success

    # -- stop ----------------------------------------------------------------------------------------
    async def close(self) -> None:
        """Say ``offline`` on the availability topic, clear its retained ``online`` (a run's client id
        names its own topic: a clean stop leaves nothing behind on the broker) and disconnect
        cleanly; the Last Will (retained ``offline``) is only for unexpected drops.  Safe to call twice."""
        if self._closing:
            return
        self._closing = True
        client, self._client = self._client, None
        self._ready.clear()
        self._lost.set()
        if client is not None and self.state == SessionState.CONNECTED:
            with contextlib.suppress(Exception):
                if self.hooks is not None:
                    self.hooks.closing(_raw_publish(client))
                if self.availability_topic is not None:
                    client.publish(self.availability_topic, OFFLINE, qos=0, retain=False)
                    client.publish(self.availability_topic, b"", qos=0, retain=True)  # clears the retained one
                await wait_for(client.disconnect(), 2.0)
        self.state = SessionState.CLOSED


def _raw_publish(client: _Client) -> RawPublish:
    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        client.publish(topic, payload, qos=qos, retain=retain)
    return publish


def _receive_maximum(client: _Client) -> int:
    """The broker's Receive Maximum (MQTT 5 CONNACK; 65535 when absent or MQTT 3.1.1)."""
    handler = getattr(client, "_package_handler", None)
    values = getattr(handler, "_connack_properties", {}).get("receive_maximum") if handler else None
    return int(values[0]) if values else 65535


def _describe(exc: BaseException, target: MqttTarget) -> str:
    where = f"{target.host}:{target.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed for {where}: {exc.verify_message or exc} "
                f"(check mqtt.targets.{target.name}.tls.ca_file)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc}"
    if isinstance(exc, TimeoutError):
        return f"no CONNACK from {where} within the connect timeout"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused (is the broker running?)"
    if isinstance(exc, gmqtt.mqtt.handler.MQTTConnectError):
        return f"broker {where} refused the connection: {exc}"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return str(exc)
