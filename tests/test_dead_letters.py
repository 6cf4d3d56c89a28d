"""The dead-letter builder: original bytes when they fit, a marked prefix when not, never over budget."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder as PyBatchBuilder
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.adapters.dead_letters import (
    BATCH_OVERHEAD_BYTES,
    MAX_DETAIL_BYTES,
    MAX_KEY_BYTES,
    MIN_BUDGET,
    Unread,
    dead_letter,
    letter_budget,
    record_size,
)
from simulator.formats import WireMessage

BUDGET = letter_budget(1_048_576)
DLQ = "orders.dead_letter"


def record(value: bytes | None, key: bytes | None = b"L-1", headers: tuple[tuple[str, bytes], ...] = (),
           offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("orders", 2, offset, 0, 0, key, value, None, len(key or b""), len(value or b""), headers)


def letter(rec: ConsumerRecord[bytes, bytes] | Unread, budget: int = BUDGET, keep_value: bool = True,
           reason: str = "oversized", detail: str = "too big") -> WireMessage:
    return dead_letter(rec, topic=DLQ, reason=reason, detail=detail, budget=budget, keep_value=keep_value)


def size(message: WireMessage) -> int:
    return record_size(message.key, message.value, message.headers)


def test_a_letter_that_fits_keeps_the_original_key_value_and_headers() -> None:
    rec = record(b'{"lot_code": "L-1"}', headers=(("trace", b"abc"), ("none", None)))  # type: ignore[arg-type]
    message = letter(rec)
    headers = dict(message.headers)
    assert (message.topic, message.key, message.value) == (DLQ, b"L-1", rec.value)
    assert message.headers[:2] == (("trace", b"abc"), ("none", None))
    assert headers["dlq.reason"] == b"oversized"
    assert headers["dlq.detail"] == b"too big"
    assert (headers["dlq.topic"], headers["dlq.partition"], headers["dlq.offset"]) == (b"orders", b"2", b"7")
    assert not {"dlq.truncated", "dlq.headers_dropped", "dlq.key_truncated"} & set(headers)


def test_original_dlq_headers_are_never_copied() -> None:
    message = letter(record(b"x", headers=(("dlq.reason", b"forged"), ("dlq.truncated", b"true"))))
    assert [k for k, _ in message.headers].count("dlq.reason") == 1
    assert dict(message.headers)["dlq.reason"] == b"oversized"
    assert "dlq.truncated" not in dict(message.headers)


@pytest.mark.parametrize("length", [1_048_500, 2 * 1024 * 1024])
def test_a_value_too_large_becomes_a_marked_prefix(length: int) -> None:
    value = bytes(range(256)) * (length // 256) + b"z" * (length % 256)
    message = letter(record(value))
    headers = dict(message.headers)
    assert headers["dlq.truncated"] == b"true"
    assert headers["dlq.original_size"] == str(length).encode()
    assert headers["dlq.original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert value.startswith(message.value)
    assert BUDGET - 16 <= size(message) <= BUDGET  # the prefix fills the budget
    assert message.key == b"L-1"


def test_the_budget_keeps_aiokafka_under_its_max_request_size() -> None:
    message = letter(record(b"v" * 3_000_000, headers=(("h", b"x" * 100),)))
    estimate = PyBatchBuilder.estimate_size_in_bytes(message.key, message.value, list(message.headers))
    assert estimate <= 1_048_576 - BATCH_OVERHEAD_BYTES + 82


def test_a_huge_key_is_cut() -> None:
    key = b"k" * 2_000_000
    message = letter(record(b'{"a": 1}', key=key))
    headers = dict(message.headers)
    assert message.key == key[:MAX_KEY_BYTES]
    assert headers["dlq.key_truncated"] == b"true"
    assert headers["dlq.original_key_size"] == b"2000000"
    assert message.value == b'{"a": 1}'  # the value still fits: not truncated
    assert "dlq.truncated" not in headers
    assert size(message) <= BUDGET


def test_huge_headers_are_dropped_and_counted() -> None:
    headers = (("small", b"s"), ("huge", b"h" * 1_500_000), *[(f"h{i}", b"x" * 1000) for i in range(40)])
    message = letter(record(b'{"a": 1}', headers=headers))
    kept = dict(message.headers)
    copied = [k for k, _ in message.headers if not k.startswith("dlq.")]
    assert kept["small"] == b"s"
    assert "huge" not in kept
    assert copied == ["small", *[f"h{i}" for i in range(len(copied) - 1)]]  # in their order, while they fit
    assert kept["dlq.headers_dropped"] == str(len(headers) - len(copied)).encode()
    assert message.value == b'{"a": 1}'
    assert size(message) <= BUDGET


def test_an_unread_record_has_an_empty_value_and_its_origin() -> None:
    message = letter(Unread("orders", 1, 99), reason="unreadable", detail="cannot decode")
    headers = dict(message.headers)
    assert (message.key, message.value) == (b"", b"")
    assert (headers["dlq.reason"], headers["dlq.partition"], headers["dlq.offset"]) == (b"unreadable", b"1", b"99")
    assert "dlq.truncated" not in headers


def test_without_the_value_the_headers_still_say_what_it_was() -> None:
    value = b"v" * 200_000
    message = letter(record(value), budget=MIN_BUDGET, keep_value=False)
    headers = dict(message.headers)
    assert message.value == b""
    assert headers["dlq.original_size"] == b"200000"
    assert headers["dlq.original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert size(message) <= MIN_BUDGET


def test_a_long_detail_is_cut_on_a_character_boundary() -> None:
    message = letter(record(b"x"), detail="é" * 5000)
    detail = dict(message.headers)["dlq.detail"]
    assert len(detail) <= MAX_DETAIL_BYTES
    assert detail.decode("utf-8") == "é" * (len(detail) // 2)


def test_a_budget_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        letter(record(b"x"), budget=MIN_BUDGET - 1)


@given(key=st.one_of(st.none(), st.binary(max_size=10)))
def test_record_size_is_aiokafkas(key: bytes | None) -> None:
    for value in (None, b"", b"v" * 200, b"w" * 70_000):
        headers: list[tuple[str, bytes | None]] = [("a", b"1"), ("é" * 70, None), ("b", b"x" * 300)]
        assert record_size(key, value, headers) == PyBatchBuilder.size_of(key, value, headers)


HEADER_KEYS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
BIG = st.sampled_from([0, 1, 100, 5_000, 70_000, 1_100_000, 2_200_000])


@settings(max_examples=150, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=64), BIG.map(lambda n: b"k" * n)),
       value=st.one_of(st.none(), st.binary(max_size=64), BIG.map(lambda n: b"v" * n)),
       headers=st.lists(st.tuples(HEADER_KEYS, st.one_of(st.binary(max_size=32), BIG.map(lambda n: b"h" * n))),
                        max_size=30),
       budget=st.one_of(st.just(MIN_BUDGET), st.integers(MIN_BUDGET, 2_000_000)),
       keep_value=st.booleans(),
       detail=st.text(max_size=3000), topic=HEADER_KEYS.filter(bool),
       offset=st.integers(0, 2**63 - 1), partition=st.integers(0, 100_000))
def test_any_record_gives_a_letter_within_its_budget(key: bytes | None, value: bytes | None,
                                                     headers: list[tuple[str, bytes]], budget: int, keep_value: bool,
                                                     detail: str, topic: str, offset: int, partition: int) -> None:
    rec = ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, 0, 0, tuple(headers))
    message = letter(rec, budget=budget, keep_value=keep_value, detail=detail)
    got = dict(message.headers)
    original = value or b""
    assert size(message) <= budget
    assert original.startswith(message.value)
    if message.value != original:
        assert got["dlq.truncated"] == b"true"
        assert got["dlq.original_size"] == str(len(original)).encode()
        assert got["dlq.original_sha256"] == hashlib.sha256(original).hexdigest().encode()
    else:
        assert "dlq.truncated" not in got
    assert (key or b"").startswith(message.key)
    assert ("dlq.key_truncated" in got) == (message.key != (key or b""))
    assert got["dlq.offset"] == str(offset).encode()
    copied = [h for h in message.headers if not h[0].startswith("dlq.")]
    originals = [h for h in headers if not h[0].startswith("dlq.")]
    assert int(got.get("dlq.headers_dropped", b"0")) == len(originals) - len(copied)
    if keep_value and record_size(key or b"", original, [*originals, *message.headers[len(copied):]]) <= budget:
        assert (message.key, message.value, copied) == (key or b"", original, originals)  # fits: as it came
