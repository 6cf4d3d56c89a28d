"""``ConnectCapture``: a hand-written fake MQTT server (an asyncio TCP server speaking just enough
MQTT 3.1.1 / 5 for a real client to connect, publish and subscribe) for client tests.  It records
every CONNECT (including the MQTT 5 properties such as Authentication Method / Data) and PUBLISH, can
refuse the next CONNECT, hold acknowledgements and drop every connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson

from harness.mqtt_wire import LOOPBACK, encode_packet, encode_utf8, encode_varint

# MQTT 5 properties: id -> (name, type)
_PROPERTIES: dict[int, tuple[str, str]] = {
    0x01: ("payload_format_indicator", "u8"), 0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "utf8"), 0x08: ("response_topic", "utf8"), 0x09: ("correlation_data", "binary"),
    0x0B: ("subscription_identifier", "varint"), 0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "utf8"), 0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "utf8"), 0x16: ("authentication_data", "binary"),
    0x17: ("request_problem_information", "u8"), 0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "u8"), 0x1A: ("response_information", "utf8"),
    0x1C: ("server_reference", "utf8"), 0x1F: ("reason_string", "utf8"), 0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"), 0x23: ("topic_alias", "u16"), 0x24: ("maximum_qos", "u8"),
    0x25: ("retain_available", "u8"), 0x26: ("user_property", "pair"), 0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "u8"), 0x29: ("subscription_identifier_available", "u8"),
    0x2A: ("shared_subscription_available", "u8"),
}
_REPEATABLE = {"user_property", "subscription_identifier"}
# MQTT 5 CONNACK reason code -> the closest MQTT 3.1.1 return code (unknown codes: 3, server unavailable)
_V311_RETURN_CODES = {0x84: 1, 0x85: 2, 0x88: 3, 0x89: 3, 0x86: 4, 0x87: 5, 0x8C: 5}
PACKET_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
                7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
                12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}


class ProtocolError(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"packet truncated: wanted {n} bytes at offset {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value = 0
        for shift in range(0, 28, 7):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ProtocolError("malformed variable byte integer")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def utf8(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"invalid UTF-8 string: {exc}") from exc

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def properties(self) -> dict[str, Any]:
        end = self.varint()
        block = _Reader(self.take(end))
        found: dict[str, Any] = {}
        while not block.done:
            identifier = block.varint()
            if identifier not in _PROPERTIES:
                raise ProtocolError(f"unknown property identifier 0x{identifier:02X}")
            name, kind = _PROPERTIES[identifier]
            value: Any = (block.utf8(), block.utf8()) if kind == "pair" else getattr(block, kind)()
            if name in _REPEATABLE:
                found.setdefault(name, []).append(value)
            elif name in found:
                raise ProtocolError(f"property {name} appears twice")
            else:
                found[name] = value
        return found


@dataclass(frozen=True)
class CapturedConnect:
    connection: int  # 0 for the first TCP connection, 1 for the next, ...
    protocol_name: str  # "MQTT" (3.1.1, 5) or "MQIsdp" (3.1)
    protocol_level: int  # 3 = 3.1, 4 = 3.1.1, 5 = 5
    client_id: str
    clean_start: bool  # clean session in 3.1.1
    keepalive: int
    username: str | None
    password: bytes | None
    will_topic: str | None
    will_payload: bytes | None
    will_qos: int
    will_retain: bool
    will_properties: dict[str, Any]
    properties: dict[str, Any]  # MQTT 5 CONNECT properties by snake_case spec name
    raw: bytes  # the whole packet as received

    @property
    def protocol(self) -> str:
        return {3: "3.1", 4: "3.1.1", 5: "5"}.get(self.protocol_level, f"level {self.protocol_level}")

    @property
    def auth_method(self) -> str | None:
        method: str | None = self.properties.get("authentication_method")
        return method

    @property
    def auth_data(self) -> bytes | None:
        data: bytes | None = self.properties.get("authentication_data")
        return data


@dataclass(frozen=True)
class CapturedPublish:
    connection: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: dict[str, Any]

    def json(self) -> Any:
        return orjson.loads(self.payload)


@dataclass(frozen=True)
class CapturedSubscribe:
    connection: int
    packet_id: int
    filters: list[tuple[str, int]]  # (topic filter, options byte; the low two bits are the QoS)
    properties: dict[str, Any]


@dataclass
class _Connection:
    number: int
    writer: asyncio.StreamWriter
    level: int | None = None  # protocol level once CONNECT arrived
    aliases: dict[int, str] = field(default_factory=dict)


class ConnectCapture:
    """A recording MQTT server for client tests (not a broker: nothing is routed to subscribers).

    Answers CONNECT with a success CONNACK in the client's protocol version (echoing an MQTT 5
    Authentication Method), PINGREQ with PINGRESP, QoS 1 PUBLISH with PUBACK, QoS 2 with PUBREC and
    then PUBCOMP, SUBSCRIBE with SUBACK granting the requested QoS, UNSUBSCRIBE with UNSUBACK.

    Records: ``connects`` (``CapturedConnect``), ``publishes`` (``CapturedPublish``), ``subscribes``,
    ``packets`` (``(connection, packet name)`` for every packet received, e.g. to see DISCONNECT or
    AUTH), ``errors`` (protocol violations found while parsing; the connection is closed on one).

    Controls: ``reject_next(reason_code)`` refuses the next CONNECT; ``hold_acks = True`` keeps
    PUBACK/PUBREC back until ``release_acks()``; ``drop_clients()`` closes every connection (the
    client should reconnect); ``stop()`` then ``start()`` serve again on the same port.
    """

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        self.host, self.port = host, port
        self.connects: list[CapturedConnect] = []
        self.publishes: list[CapturedPublish] = []
        self.subscribes: list[CapturedSubscribe] = []
        self.packets: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.hold_acks = False
        self._held: list[tuple[_Connection, bytes]] = []
        self._rejections: deque[int] = deque()
        self._connections: dict[int, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    async def start(self) -> ConnectCapture:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self.drop_clients()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> ConnectCapture:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def reject_next(self, reason_code: int, count: int = 1) -> None:
        """Answer the next ``count`` CONNECTs with this MQTT 5 reason code (e.g. 0x87 not authorized,
        0x86 bad user name or password, 0x8C bad authentication method) and close the connection. An
        MQTT 3.1.1 client gets the closest 3.1.1 return code instead."""
        if reason_code < 0x80:
            raise ValueError("a refusal needs a failure reason code (>= 0x80)")
        self._rejections.extend([reason_code] * count)

    def release_acks(self) -> None:
        """Send the acknowledgements held back while ``hold_acks`` was set (and clear it)."""
        self.hold_acks = False
        held, self._held = self._held, []
        for connection, packet in held:
            if connection.number in self._connections:
                connection.writer.write(packet)

    async def drop_clients(self) -> None:
        """Close every client connection and wait until their handlers finished."""
        for connection in list(self._connections.values()):
            connection.writer.close()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=10)
            if pending:
                raise RuntimeError(f"{len(pending)} connection handlers did not finish")

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0,
                       what: str = "the condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; "
                                     f"{len(self.connects)} connects, {len(self.publishes)} publishes, "
                                     f"packets {self.packets[-10:]}, errors {self.errors}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_connects(self, n: int, timeout_s: float = 10.0) -> list[CapturedConnect]:
        await self.wait_for(lambda: len(self.connects) >= n, timeout_s, f"{n} CONNECTs")
        return self.connects

    async def wait_publishes(self, n: int, timeout_s: float = 10.0) -> list[CapturedPublish]:
        await self.wait_for(lambda: len(self.publishes) >= n, timeout_s, f"{n} PUBLISHes")
        return self.publishes

    async def wait_subscribes(self, n: int, timeout_s: float = 10.0) -> list[CapturedSubscribe]:
        await self.wait_for(lambda: len(self.subscribes) >= n, timeout_s, f"{n} SUBSCRIBEs")
        return self.subscribes

    # server side --------------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _Connection(next(self._numbers), writer)
        self._connections[connection.number] = connection
        try:
            while True:
                header = await reader.readexactly(1)
                length = 0
                for shift in range(0, 28, 7):
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                else:
                    raise ProtocolError("malformed remaining length")
                body = await reader.readexactly(length)
                if not self._handle(connection, header[0], body):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        except ProtocolError as exc:
            self.errors.append(f"connection {connection.number}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a harness bug must show up in errors, not only in a log
            self.errors.append(f"connection {connection.number}: {type(exc).__name__}: {exc}")
        finally:
            self._connections.pop(connection.number, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)
            self._changed.set()

    def _send_ack(self, connection: _Connection, packet: bytes) -> None:
        if self.hold_acks:
            self._held.append((connection, packet))
        else:
            connection.writer.write(packet)

    def _handle(self, connection: _Connection, first: int, body: bytes) -> bool:
        """Handle one packet; False closes the connection."""
        kind, flags = first >> 4, first & 0x0F
        name = PACKET_NAMES.get(kind, f"type {kind}")
        self.packets.append((connection.number, name))
        self._changed.set()
        if kind != 1 and connection.level is None:
            raise ProtocolError(f"{name} before CONNECT")
        v5 = connection.level == 5
        reader = _Reader(body)
        writer = connection.writer
        if kind == 1:  # CONNECT
            if connection.level is not None:
                raise ProtocolError("second CONNECT on one connection")
            return self._on_connect(connection, first, body)
        if kind == 3:  # PUBLISH
            qos = (flags >> 1) & 0x03
            topic = reader.utf8()
            packet_id = reader.u16() if qos else None
            properties = reader.properties() if v5 else {}
            alias = properties.get("topic_alias")
            if alias is not None:
                if topic:
                    connection.aliases[alias] = topic
                elif alias in connection.aliases:
                    topic = connection.aliases[alias]
                else:
                    raise ProtocolError(f"unknown topic alias {alias}")
            self.publishes.append(CapturedPublish(connection.number, topic, reader.rest(), qos, bool(flags & 1),
                                                  bool(flags & 0x08), packet_id, properties))
            if qos == 1:
                self._send_ack(connection, encode_packet(0x40, (packet_id or 0).to_bytes(2, "big")))
            elif qos == 2:
                self._send_ack(connection, encode_packet(0x50, (packet_id or 0).to_bytes(2, "big")))
        elif kind == 6:  # PUBREL -> PUBCOMP
            writer.write(encode_packet(0x70, reader.take(2)))
        elif kind == 8:  # SUBSCRIBE
            packet_id = reader.u16()
            properties = reader.properties() if v5 else {}
            filters = []
            while not reader.done:
                filters.append((reader.utf8(), reader.u8()))
            self.subscribes.append(CapturedSubscribe(connection.number, packet_id, filters, properties))
            granted = bytes(min(options & 0x03, 2) for _topic, options in filters)
            writer.write(encode_packet(0x90, packet_id.to_bytes(2, "big") + (b"\x00" if v5 else b"") + granted))
        elif kind == 10:  # UNSUBSCRIBE
            packet_id = reader.u16()
            properties = reader.properties() if v5 else {}
            count = 0
            while not reader.done:
                reader.utf8()
                count += 1
            writer.write(encode_packet(0xB0, packet_id.to_bytes(2, "big") + (b"\x00" + b"\x00" * count if v5 else b"")))
        elif kind == 12:  # PINGREQ
            writer.write(b"\xd0\x00")
        elif kind == 14:  # DISCONNECT
            return False
        elif kind in (4, 5, 7, 15):  # PUBACK/PUBREC/PUBCOMP (nothing is sent to clients), AUTH: recorded only
            pass
        else:
            raise ProtocolError(f"unexpected {name} from a client")
        return True

    def _on_connect(self, connection: _Connection, first: int, body: bytes) -> bool:
        if first != 0x10:
            raise ProtocolError(f"CONNECT with reserved flags 0x{first & 0x0F:X}")
        reader = _Reader(body)
        protocol_name = reader.utf8()
        level = reader.u8()
        flags = reader.u8()
        keepalive = reader.u16()
        properties = reader.properties() if level == 5 else {}
        client_id = reader.utf8()
        will_topic = will_payload = None
        will_properties: dict[str, Any] = {}
        if flags & 0x04:
            will_properties = reader.properties() if level == 5 else {}
            will_topic = reader.utf8()
            will_payload = reader.binary()
        username = reader.utf8() if flags & 0x80 else None
        password = reader.binary() if flags & 0x40 else None
        if not reader.done:
            raise ProtocolError(f"{len(body) - reader.pos} unexpected bytes after the CONNECT payload")
        connection.level = level
        self.connects.append(CapturedConnect(
            connection.number, protocol_name, level, client_id, bool(flags & 0x02), keepalive, username, password,
            will_topic, will_payload, (flags >> 3) & 0x03, bool(flags & 0x20), will_properties, properties,
            bytes([first]) + encode_varint(len(body)) + body))
        refusal = self._rejections.popleft() if self._rejections else None
        if level == 5:
            props = b""
            if refusal is None and "authentication_method" in properties:
                props = b"\x15" + encode_utf8(properties["authentication_method"])
            code = refusal or 0
            connection.writer.write(encode_packet(0x20, bytes([0, code]) + encode_varint(len(props)) + props))
        else:
            code = _V311_RETURN_CODES.get(refusal, 3) if refusal is not None else 0
            connection.writer.write(encode_packet(0x20, bytes([0, code])))
        return refusal is None
