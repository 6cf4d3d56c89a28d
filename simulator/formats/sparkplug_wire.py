"""Sparkplug B payloads as bytes: the protobuf encoding of the ``Payload`` message (Eclipse Tahu's
``sparkplug_b.proto``), for the fields factorysim writes and reads.

Written by hand rather than generated: a DDATA message is a handful of metrics, and building
protobuf message objects field by field costs more than writing the few tags directly (see
BENCHMARKS.md, "Sparkplug library choice").  Fields are written in field-number order, each once,
so the same values always give the same bytes.

    Payload: 1 timestamp (uint64), 2 metrics (repeated Metric), 3 seq (uint64)
    Metric:  1 name, 2 alias, 3 timestamp, 4 datatype, 7 is_null,
             10 int_value (uint32), 11 long_value (uint64), 12 float_value, 13 double_value,
             14 boolean_value, 15 string_value

``seq`` goes last: the edge node stamps it when it publishes (:func:`with_seq`), after the rest
of the payload was written.  A protobuf decoder reads fields in any order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

# Sparkplug B data types (the ones factorysim uses, and those it decodes in commands)
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14
DATATYPE_NAMES = {INT64: "Int64", DOUBLE: "Double", BOOLEAN: "Boolean", STRING: "String"}
_U64 = (1 << 64) - 1
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a protobuf varint."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = tuple(bytes((n,)) for n in range(0x80))
_SEQ = tuple(b"\x18" + varint(n) for n in range(256))


def _text(tag: bytes, text: str) -> bytes:
    data = text.encode()
    return tag + varint(len(data)) + data


_TAGGED_DOUBLE = struct.Struct("<Bd")
_NULL = b"\x38\x01"


def value_field(datatype: int, value: Any) -> bytes:
    """A metric's value as its protobuf field (``is_null`` for None, or a value the datatype cannot hold)."""
    if value is None:
        return _NULL
    try:
        if datatype == DOUBLE:
            return _TAGGED_DOUBLE.pack(0x69, value)
        if datatype == STRING:
            return _text(b"\x7a", value)
        if datatype == BOOLEAN:
            return b"\x70\x01" if value else b"\x70\x00"
        if datatype == INT64:
            return b"\x58" + varint(int(value) & _U64)
    except (TypeError, ValueError, OverflowError, struct.error, AttributeError):
        pass
    return _NULL


def alias_field(alias: int) -> bytes:
    return b"\x10" + varint(alias)


def timestamp_field(ms: int) -> bytes:
    """A metric's timestamp field (milliseconds since the Unix epoch)."""
    return b"\x18" + varint(ms)


def data_metric(alias: bytes, timestamp: bytes, datatype: int, value: Any) -> bytes:
    """A metric of a DATA message as a payload field (tag, length, body), from its
    :func:`alias_field` and :func:`timestamp_field`: joined as they are into a payload."""
    if datatype == DOUBLE and type(value) is float:  # most metrics: the signals
        body = alias + timestamp + _TAGGED_DOUBLE.pack(0x69, value)
    else:
        body = alias + timestamp + value_field(datatype, value)
    n = len(body)
    return b"\x12" + (_SMALL[n] if n < 0x80 else varint(n)) + body


def birth_metric(name: str, alias: int | None, ms: int, datatype: int, value: Any) -> bytes:
    """A metric of a birth (name, alias, timestamp, datatype, value) as a payload field; a death's
    ``bdSeq`` has no alias."""
    body = _text(b"\x0a", name) + (alias_field(alias) if alias is not None else b"") + timestamp_field(ms) \
        + b"\x20" + varint(datatype) + value_field(datatype, value)
    return b"\x12" + varint(len(body)) + body


def payload_head(ms: int) -> bytes:
    """The payload's timestamp field: the start of every payload."""
    return b"\x08" + varint(ms)


def payload(ms: int, metrics: list[bytes] | tuple[bytes, ...], seq: int | None = None) -> bytes:
    """A payload of metric fields (:func:`data_metric`, :func:`birth_metric`); ``seq`` None: stamped later."""
    data = payload_head(ms) + b"".join(metrics)
    return data if seq is None else data + _SEQ[seq]


def with_seq(data: bytes, seq: int) -> bytes:
    """``data`` (a payload without ``seq``) with sequence number ``seq`` (0..255)."""
    return data + _SEQ[seq]


# --- decoding (commands: NCMD, DCMD) ------------------------------------------------------------
class DecodeError(ValueError):
    pass


@dataclass(slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    is_null: bool = False
    value: Any = None


@dataclass(slots=True)
class Payload:
    timestamp: int | None = None
    seq: int | None = None
    metrics: list[Metric] = field(default_factory=list)


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one protobuf message."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(data)
    try:
        while pos < end:
            key, pos = _read_varint(data, pos)
            number, wire = key >> 3, key & 7
            value: Any
            if wire == 0:
                value, pos = _read_varint(data, pos)
            elif wire == 1:
                value, pos = data[pos:pos + 8], pos + 8
            elif wire == 2:
                size, pos = _read_varint(data, pos)
                value, pos = data[pos:pos + size], pos + size
            elif wire == 5:
                value, pos = data[pos:pos + 4], pos + 4
            else:
                raise DecodeError(f"unsupported protobuf wire type {wire}")
            if pos > end:
                raise DecodeError("truncated protobuf message")
            out.append((number, wire, value))
    except IndexError:
        raise DecodeError("truncated protobuf message") from None
    return out


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint longer than 64 bits")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# the value fields of a Metric and their protobuf wire types (varint, 32-bit, 64-bit, length-delimited)
_VALUE_WIRE = {10: 0, 11: 0, 12: 5, 13: 1, 14: 0, 15: 2}


def _metric(data: bytes) -> Metric:
    m = Metric()
    raw: dict[int, Any] = {}
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            m.name = value.decode("utf-8", "replace")
        elif number == 2 and wire == 0:
            m.alias = value
        elif number == 3 and wire == 0:
            m.timestamp = value
        elif number == 4 and wire == 0:
            m.datatype = value
        elif number == 7 and wire == 0:
            m.is_null = bool(value)
        elif number in _VALUE_WIRE:
            if wire != _VALUE_WIRE[number]:
                raise DecodeError(f"metric value field {number} has wire type {wire}, not {_VALUE_WIRE[number]}")
            raw[number] = value
    if 14 in raw:
        m.value = bool(raw[14])
    elif 15 in raw:
        m.value = raw[15].decode("utf-8", "replace")
    elif 13 in raw and len(raw[13]) == 8:
        m.value = _DOUBLE.unpack(raw[13])[0]
    elif 12 in raw and len(raw[12]) == 4:
        m.value = _FLOAT.unpack(raw[12])[0]
    elif 11 in raw:
        m.value = _signed(raw[11], 64) if m.datatype in (INT64,) else raw[11]
    elif 10 in raw:
        bits = {INT8: 8, INT16: 16, INT32: 32}.get(m.datatype or 0)
        m.value = _signed(raw[10], bits) if bits else raw[10]
    return m


def decode(data: bytes) -> Payload:
    """A ``Payload`` (timestamp, seq, metrics); DecodeError when ``data`` is not one."""
    p = Payload()
    for number, wire, value in _fields(bytes(data)):
        if number == 1 and wire == 0:
            p.timestamp = value
        elif number == 2 and wire == 2:
            p.metrics.append(_metric(value))
        elif number == 3 and wire == 0:
            p.seq = value
    return p
