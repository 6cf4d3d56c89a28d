"""``MqttCollector``: a subscriber (paho-mqtt, its own network thread) that records every message,
reconnects and resubscribes after a broker restart, and offers awaitable waits (each a wait on a
condition with a deadline)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson


@dataclass(frozen=True)
class ReceivedMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any]  # MQTT 5 properties by paho name: ContentType, UserProperty (list of pairs), ...
    connection: int  # 1 for the collector's first connection, 2 after the first reconnect, ...

    def json(self) -> Any:
        return orjson.loads(self.payload)


class MqttRefusedError(ConnectionError):
    """The broker answered CONNECT with a failure reason code (MQTT 5 numbering; paho maps 3.1.1's)."""

    def __init__(self, reason_code: int, reason: str) -> None:
        super().__init__(f"CONNACK refused: {reason} (0x{reason_code:02X})")
        self.reason_code = reason_code
        self.reason = reason


class MqttCollector:
    """Subscribe to ``topics`` and record every message; survive broker restarts.

    ``async with MqttCollector(broker.host, broker.port, ["factorysim/#"]) as collector:`` returns once
    the first SUBACK arrived, so what is published afterwards is recorded. It uses paho-mqtt with its
    own network thread (independent of the event loop and of the client library under test). On every
    (re)connection it subscribes again — Mosquitto here runs without persistence, so a restarted broker
    knows no sessions. Messages published while it is reconnecting are lost, as for any subscriber:
    after a restart, ``await collector.wait_subscribed(rounds_before + 1)`` before relying on delivery.

    Connection failures on entry raise: ``ssl.SSLError`` / ``OSError`` from the socket, or
    ``MqttRefusedError`` (``.reason_code``) when the broker refuses the CONNECT.
    """

    def __init__(self, host: str, port: int, topics: str | Iterable[str] = "#", *, qos: int = 1,
                 protocol: str = "5", tls: ssl.SSLContext | None = None, username: str | None = None,
                 password: str | None = None, client_id: str | None = None, keepalive_s: int = 30,
                 connect_timeout_s: float = 10.0, reconnect_max_delay_s: float = 0.5,
                 persistent: bool = False) -> None:
        """``persistent``: a session the broker keeps while the collector is away (MQTT 5: clean start
        off, session expiry one hour; 3.1.1: clean session off) — with a broker that persists it, what
        is published while the broker restarts reaches the collector too."""
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        if protocol not in ("5", "3.1.1"):
            raise ValueError('protocol is "5" or "3.1.1"')
        self.host, self.port = host, port
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self.protocol = protocol
        self.client_id = client_id or f"collector-{uuid.uuid4().hex[:8]}"
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.messages: list[ReceivedMessage] = []
        self.connections = 0  # successful CONNACKs
        self.subscribe_rounds = 0  # SUBACKs for the whole topic list (one per connection)
        self.disconnects = 0
        self.connected = False
        self.errors: list[str] = []  # refused reconnects and subscriptions after the first round
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._first: asyncio.Future[None] | None = None
        self._subscribe_mids: set[int] = set()
        self._lock = threading.Lock()
        self._running = False
        v5 = protocol == "5"
        self.persistent = persistent
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                                   clean_session=None if v5 else not persistent)
        self._connect_options: dict[str, Any] = {}
        if persistent and v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            self._connect_options = {"clean_start": False, "properties": properties}
        # paho annotates the delays as int; it only does arithmetic with them, fractions work
        self._client.reconnect_delay_set(min_delay=0.05, max_delay=reconnect_max_delay_s)  # type: ignore[arg-type]
        self._tls = tls
        if tls is not None:
            self._client.tls_set_context(tls)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect

    # paho thread -> event loop -----------------------------------------------------------------------------
    def _post(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(function, *args)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._post(self._connect_failed, MqttRefusedError(int(reason_code.value), str(reason_code)))
            return
        with self._lock:
            _result, mid = client.subscribe([(topic, self.qos) for topic in self.topics])
            if mid is not None:
                self._subscribe_mids.add(mid)
        self._post(self._connected_in_loop)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        with self._lock:
            ours = mid in self._subscribe_mids
            self._subscribe_mids.discard(mid)
        failed = [str(code) for code in reason_codes if code.is_failure]
        if ours:
            self._post(self._subscribed_in_loop, failed)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        props = getattr(message, "properties", None)
        properties = {} if props is None else {
            name.replace(" ", ""): getattr(props, name.replace(" ", ""))
            for name in props.names if hasattr(props, name.replace(" ", ""))}
        self._post(self._record, message.topic, bytes(message.payload), message.qos, bool(message.retain),
                   properties)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._post(self._disconnected_in_loop, str(reason_code))

    # in the event loop ------------------------------------------------------------------------------------
    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _connect_failed(self, error: Exception) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)
        else:
            self.errors.append(str(error))
        self._notify()

    def _connected_in_loop(self) -> None:
        self.connections += 1
        self.connected = True
        self._notify()

    def _subscribed_in_loop(self, failed: list[str]) -> None:
        if failed:
            self._connect_failed(RuntimeError(f"subscription to {self.topics} refused: {failed}"))
            return
        self.subscribe_rounds += 1
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        self._notify()

    def _disconnected_in_loop(self, reason: str) -> None:
        self.disconnects += 1
        self.connected = False
        if self._first is not None and not self._first.done():
            self._first.set_exception(ConnectionError(f"connection closed before SUBACK: {reason}"))
        self._notify()

    def _record(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        self.messages.append(ReceivedMessage(topic, payload, qos, retain, properties, self.connections))
        self._notify()

    # API --------------------------------------------------------------------------------------------------
    async def start(self) -> MqttCollector:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._first = self._loop.create_future()
        if self._tls is not None:
            await asyncio.to_thread(self._check_tls)
        # the first connect in a worker thread: socket errors surface here as themselves
        await asyncio.to_thread(functools.partial(self._client.connect, self.host, self.port, self.keepalive_s,
                                                  **self._connect_options))
        self._client.loop_start()
        self._running = True
        try:
            await asyncio.wait_for(asyncio.shield(self._first), self.connect_timeout_s)
        except BaseException:
            if not self._first.done():
                self._first.cancel()
            await self.stop()
            raise
        return self

    def _check_tls(self) -> None:
        """One TLS handshake of our own first: a verification error raises here as itself, and the socket
        is closed (paho 2.2 leaves it open when its handshake fails)."""
        assert self._tls is not None
        with socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s) as raw, \
                self._tls.wrap_socket(raw, server_hostname=self.host):
            pass

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def __aenter__(self) -> MqttCollector:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def of(self, topic: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [m.payload for m in self.messages if topic is None or m.topic == topic]

    def clear(self) -> None:
        self.messages.clear()

    def _describe(self) -> str:
        topics = sorted({m.topic for m in self.messages})
        return (f"{len(self.messages)} messages on {len(topics)} topics {topics[:5]}"
                f"{' ...' if len(topics) > 5 else ''}; connected={self.connected}, "
                f"connections={self.connections}, subscribe_rounds={self.subscribe_rounds}, errors={self.errors}")

    async def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        if self._changed is None:
            raise RuntimeError("the collector is not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; {self._describe()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for(self, predicate: Callable[[list[ReceivedMessage]], bool], timeout_s: float = 10.0,
                       what: str = "the predicate") -> list[ReceivedMessage]:
        """Wait until ``predicate(messages)`` holds; returns the messages."""
        await self._wait(lambda: predicate(self.messages), timeout_s, what)
        return list(self.messages)

    async def wait_count(self, n: int, timeout_s: float = 10.0, topic: str | None = None) -> list[ReceivedMessage]:
        """Wait for at least ``n`` messages (on ``topic`` when given); returns those messages."""
        def selected() -> list[ReceivedMessage]:
            return list(self.messages) if topic is None else self.of(topic)

        await self._wait(lambda: len(selected()) >= n, timeout_s,
                         f"{n} messages" + (f" on {topic!r}" if topic else ""))
        return selected()

    async def wait_message(self, match: Callable[[ReceivedMessage], bool], timeout_s: float = 10.0,
                           what: str = "a matching message") -> ReceivedMessage:
        """Wait for the first message for which ``match(message)`` holds and return it."""
        await self._wait(lambda: any(match(m) for m in self.messages), timeout_s, what)
        return next(m for m in self.messages if match(m))

    async def wait_subscribed(self, rounds: int, timeout_s: float = 15.0) -> None:
        """Wait until the subscriptions were acknowledged ``rounds`` times in total (1 after start,
        2 after the first reconnect, ...)."""
        await self._wait(lambda: self.subscribe_rounds >= rounds, timeout_s, f"subscription round {rounds}")


def publish(broker: Any, topic: str, *payloads: bytes) -> None:
    """Publish with QoS 1 from a separate paho client and wait for each PUBACK (blocking)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"commander-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv311)
    client.connect(broker.host, broker.port, 30)
    client.loop_start()
    try:
        for payload in payloads:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
