"""Dead letters that never fail for their size.  Pure: a consumed record in, a wire message out.

A dead letter keeps the original key, value and headers when the whole record fits the byte
budget.  Otherwise the key is cut to a bounded length, original headers are kept only while they
fit a bounded share of the budget, and the value is cut to the prefix that fits; headers say what
was cut:

- ``dlq.truncated: true``, ``dlq.original_size`` (decimal bytes of the original value) and
  ``dlq.original_sha256`` (hex SHA-256 of the original value) when the value is a prefix;
- ``dlq.key_truncated: true`` and ``dlq.original_key_size`` when the key is a prefix;
- ``dlq.headers_dropped`` (how many) when original headers were left out.

Every letter carries ``dlq.reason`` (a reason code), ``dlq.detail`` (at most 1,000 bytes of text)
and where the record was: ``dlq.topic``, ``dlq.partition``, ``dlq.offset``.  Original headers whose
key starts with ``dlq.`` are never copied (a sender cannot forge them).

The budget bounds the record as Kafka frames it (key, value, headers and their length prefixes,
what aiokafka's ``estimate_size_in_bytes`` adds its fixed overhead to).  :func:`letter_budget`
derives it from the producer's maximum request size minus :data:`BATCH_OVERHEAD_BYTES`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from simulator.formats import WireMessage

DEFAULT_MAX_REQUEST_BYTES = 1_048_576  # aiokafka's and Kafka's default max_request_size
# What a record batch adds around one record: aiokafka estimates 61 bytes of batch header plus at
# most 21 bytes of record framing (length, attributes, timestamp and offset deltas); the rest is
# room to spare.  A letter's record is at most ``max_request_bytes - BATCH_OVERHEAD_BYTES`` bytes.
BATCH_OVERHEAD_BYTES = 1024
MIN_BUDGET = 4096  # the smallest budget a letter is built for (its own headers need about 1.7 KiB)
SMALLER_LETTER_BYTES = 64 * 1024  # the budget of the second attempt when the broker refuses a letter as too large
MAX_KEY_BYTES = 1024  # a key longer than this is cut when the letter does not fit as it is
MAX_ORIGINAL_HEADER_BYTES = 16 * 1024  # original headers kept when the letter does not fit as it is
MAX_DETAIL_BYTES = 1000
_MAX_REASON_BYTES = 64
_MAX_TOPIC_BYTES = 255  # Kafka allows 249 characters

Header = tuple[str, bytes]


class Consumed(Protocol):
    """What a dead letter is made from (aiokafka's ``ConsumerRecord`` has all of it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Unread:
    """A record the consumer could not read: only where it was is known."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[Header, ...] = ()


def letter_budget(max_request_bytes: int) -> int:
    """The budget of a dead letter's record for a producer whose requests are at most ``max_request_bytes``."""
    return max(MIN_BUDGET, max_request_bytes - BATCH_OVERHEAD_BYTES)


def letter_attempts(max_request_bytes: int) -> tuple[tuple[int, bool], ...]:
    """(budget, keep the value) of each attempt at a letter: as large as the producer may send,
    then, each time the broker refuses it as too large, a 64 KiB prefix, then no value at all."""
    budget = letter_budget(max_request_bytes)
    return (budget, True), (min(budget, SMALLER_LETTER_BYTES), True), (MIN_BUDGET, False)


def dead_letter(record: Consumed, *, topic: str, reason: str, detail: str, budget: int,
                keep_value: bool = True) -> WireMessage:
    """The dead letter of ``record`` for ``topic``: at most ``budget`` bytes as Kafka frames the
    record (see :func:`record_size`).  ``keep_value=False`` leaves the value out (an empty prefix)."""
    if budget < MIN_BUDGET:
        raise ValueError(f"a dead letter needs a budget of at least {MIN_BUDGET} bytes, got {budget}")
    key = record.key or b""
    value = record.value or b""
    origin: list[Header] = [
        ("dlq.reason", _cut(reason, _MAX_REASON_BYTES)),
        ("dlq.detail", _cut(detail, MAX_DETAIL_BYTES)),
        ("dlq.topic", _cut(record.topic, _MAX_TOPIC_BYTES)),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
    ]
    originals = [(k, v) for k, v in record.headers if not k.startswith("dlq.")]
    if keep_value and record_size(key, value, [*originals, *origin]) <= budget:
        return WireMessage(topic, key, (*originals, *origin), value)  # as it came

    notes: list[Header] = []
    key_limit = min(MAX_KEY_BYTES, budget // 8)
    if len(key) > key_limit:
        notes += [("dlq.key_truncated", b"true"), ("dlq.original_key_size", str(len(key)).encode())]
        key = key[:key_limit]
    allowance, kept = min(MAX_ORIGINAL_HEADER_BYTES, budget // 8), []
    for header in originals:
        size = _header_size(*header)
        if size <= allowance:
            kept.append(header)
            allowance -= size
    if len(kept) < len(originals):
        notes.append(("dlq.headers_dropped", str(len(originals) - len(kept)).encode()))
    headers = [*kept, *origin, *notes]
    if value and not (keep_value and record_size(key, value, headers) <= budget):
        headers += [("dlq.truncated", b"true"), ("dlq.original_size", str(len(value)).encode()),
                    ("dlq.original_sha256", hashlib.sha256(value).hexdigest().encode())]
        room = budget - record_size(key, b"", headers) + 1  # bytes for the value and its length prefix
        value = value[:max(0, room - _varint_size(room))] if keep_value else b""
    letter = WireMessage(topic, key, tuple(headers), value)
    # holds for any input: the key and the kept headers take at most a quarter of a budget of at
    # least MIN_BUDGET, this module's own headers at most about 1.7 KiB
    assert record_size(letter.key, letter.value, letter.headers) <= budget, "dead letter over its budget"
    return letter


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """Bytes of a record's key, value and headers as Kafka frames them (record format v2, the
    size aiokafka's ``DefaultRecordBatchBuilder.size_of`` computes)."""
    size = 1 if key is None else _varint_size(len(key)) + len(key)
    size += 1 if value is None else _varint_size(len(value)) + len(value)
    size += _varint_size(len(headers))
    for h_key, h_value in headers:
        size += _header_size(h_key, h_value)
    return size


def _header_size(key: str, value: bytes | None) -> int:
    key_len = len(key.encode("utf-8"))
    return _varint_size(key_len) + key_len + (1 if value is None else _varint_size(len(value)) + len(value))


def _varint_size(value: int) -> int:
    """Bytes of ``value`` as a zigzag varint."""
    value = (value << 1) ^ (value >> 63)
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _cut(text: str, limit: int) -> bytes:
    """``text`` as UTF-8, at most ``limit`` bytes, cut on a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")
