"""Order validation (both dialects, every reason code) and order files for offline replay."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.schema import Config
from simulator.errors import OrderRejected
from simulator.model.order import Order
from simulator.orders import MAX_LOT_CODE, MAX_QUANTITY, OrderParser, parse_timestamp
from simulator.programs.offline import load_orders, run_offline

ITALIAN = {"codice_lotto": "L-1", "cliente": "Bar Roma", "quantita": 120, "location": "Italia",
           "priorita": "alta", "timestamp": "2025-06-25T08:00:00Z"}
ENGLISH = {"lot_code": "L-1", "customer": "Bar Roma", "quantity": 120, "location": "Italy",
           "priority": "high", "timestamp": "2025-06-25T08:00:00Z"}


@pytest.fixture(scope="module")
def parser(default_config: Config) -> OrderParser:
    return OrderParser(default_config.location_of, max_bytes=4096)


def _raw(data: Any) -> bytes:
    return orjson.dumps(data)


def _reason(parser: OrderParser, raw: bytes) -> OrderRejected:
    with pytest.raises(OrderRejected) as caught:
        parser.parse(raw)
    return caught.value


def test_both_dialects_give_the_same_order(parser: OrderParser) -> None:
    expected = Order("L-1", "Bar Roma", 120, "Italia", "alta", "2025-06-25T08:00:00Z")
    assert parser.parse(_raw(ITALIAN)) == expected
    assert parser.parse(_raw(ENGLISH)) == expected


@pytest.mark.parametrize(("given_name", "canonical"), [
    ("Italia", "Italia"), ("italy", "Italia"), ("BRASILE", "Brasile"), ("Brazil", "Brasile"), ("vietnam", "Vietnam"),
])
def test_location_names_and_aliases(parser: OrderParser, given_name: str, canonical: str) -> None:
    assert parser.parse(_raw({**ENGLISH, "location": given_name})).location == canonical


@pytest.mark.parametrize(("given_priority", "canonical"), [
    ("alta", "alta"), ("HIGH", "alta"), ("normale", "normale"), ("normal", "normale"), ("bassa", "bassa"),
    ("Low", "bassa"),
])
def test_priority_names(parser: OrderParser, given_priority: str, canonical: str) -> None:
    assert parser.parse(_raw({**ENGLISH, "priority": given_priority})).priority == canonical


def test_optional_fields_default(parser: OrderParser) -> None:
    order = parser.parse(_raw({"lot_code": "L-9", "quantity": 1, "location": "Vietnam"}))
    assert (order.customer, order.priority, order.timestamp) == ("", "normale", None)


def test_boundaries_that_are_accepted(parser: OrderParser) -> None:
    assert parser.parse(_raw({**ENGLISH, "lot_code": "x" * MAX_LOT_CODE})).lot_code == "x" * MAX_LOT_CODE
    assert parser.parse(_raw({**ENGLISH, "quantity": MAX_QUANTITY})).quantity == MAX_QUANTITY
    assert parser.parse(_raw({**ENGLISH, "quantity": 1})).quantity == 1
    # the same value under both dialect keys is not ambiguous
    assert parser.parse(_raw({**ENGLISH, "codice_lotto": "L-1"})).lot_code == "L-1"


@pytest.mark.parametrize(("raw", "reason", "detail"), [
    (b"", "empty", "empty"),
    (b"   \n", "empty", "empty"),
    (b"x" * 5000, "oversized", "5000 bytes, the limit is 4096"),
    (b"{not json", "not_json", "not valid JSON"),
    (b"\xff\xfe", "not_json", "not valid JSON"),
    (b"[1, 2]", "not_object", "got list"),
    (b'"text"', "not_object", "got str"),
    (_raw({"quantity": 1, "location": "Italia"}), "missing_field", "codice_lotto / lot_code is missing"),
    (_raw({"lot_code": "L", "location": "Italia"}), "missing_field", "quantita / quantity is missing"),
    (_raw({"lot_code": "L", "quantity": 1}), "missing_field", "location is missing"),
    (_raw({**ENGLISH, "lot_code": ""}), "invalid_field", "lot_code must not be empty"),
    (_raw({**ENGLISH, "lot_code": "   "}), "invalid_field", "lot_code must not be empty"),
    (_raw({**ENGLISH, "lot_code": 17}), "invalid_field", "lot_code must be a string, got int"),
    (_raw({**ENGLISH, "lot_code": "x" * (MAX_LOT_CODE + 1)}), "invalid_field", "longer than 128 characters"),
    (_raw({**ENGLISH, "quantity": 0}), "invalid_field", "quantity must be 1..1000000, got 0"),
    (_raw({**ENGLISH, "quantity": MAX_QUANTITY + 1}), "invalid_field", "quantity must be 1..1000000"),
    (_raw({**ENGLISH, "quantity": -5}), "invalid_field", "quantity must be 1..1000000, got -5"),
    (_raw({**ENGLISH, "quantity": 2.5}), "invalid_field", "quantity must be an integer, got 2.5"),
    (_raw({**ENGLISH, "quantity": "10"}), "invalid_field", "quantity must be an integer, got '10'"),
    (_raw({**ENGLISH, "quantity": True}), "invalid_field", "quantity must be an integer, got True"),
    (b'{"lot_code": "L", "quantity": 99999999999999999999999, "location": "Italia"}', "invalid_field",
     "quantity must be an integer"),
    (b'{"lot_code": "L", "quantity": 1e999, "location": "Italia"}', "not_json", "infinity"),
    (_raw({**ENGLISH, "customer": ["a"]}), "invalid_field", "customer must be a string"),
    (_raw({**ENGLISH, "location": 3}), "invalid_field", "location must be a string, got 3"),
    (_raw({**ENGLISH, "location": "Atlantis"}), "unknown_location", "unknown location 'Atlantis'"),
    (_raw({**ENGLISH, "priority": "urgent"}), "unknown_priority", "got 'urgent'"),
    (_raw({**ENGLISH, "priority": 1}), "unknown_priority", "got '1'"),
    (_raw({**ENGLISH, "timestamp": "yesterday"}), "invalid_field", "timestamp is not ISO-8601: 'yesterday'"),
    (_raw({**ENGLISH, "timestamp": 1750838400}), "invalid_field", "timestamp must be an ISO-8601 string"),
    (_raw({**ENGLISH, "codice_lotto": "L-2"}), "ambiguous_dialect", "both 'codice_lotto' and 'lot_code'"),
    (_raw({**ENGLISH, "lot_code": "L-\x1b[31m1"}), "invalid_field", "lot_code must not contain control characters"),
    (_raw({**ENGLISH, "customer": "Bar\u202eSport"}), "invalid_field", "customer must not contain control characters"),
])
def test_every_bad_order_has_a_reason(parser: OrderParser, raw: bytes, reason: str, detail: str) -> None:
    rejected = _reason(parser, raw)
    assert rejected.reason == reason
    assert detail in rejected.detail


def test_timestamps_without_offset_are_utc() -> None:
    assert parse_timestamp("2025-06-25T08:00:00").isoformat() == "2025-06-25T08:00:00+00:00"
    assert parse_timestamp("2025-06-25T10:00:00+02:00").utcoffset() is not None
    assert parse_timestamp("2025-06-25T08:00:00z").isoformat() == "2025-06-25T08:00:00+00:00"


@pytest.mark.parametrize("text", ["2025-06-25T08:00:00-00:60", "2025-06-25T08:00:00+0160", "2025-06-25T08:00+01:00:60",
                                  "20250625T080000+0099"])
def test_an_impossible_utc_offset_is_refused_not_read_as_another(text: str) -> None:
    with pytest.raises(OrderRejected, match="impossible UTC offset"):
        parse_timestamp(text)


@pytest.mark.parametrize(("text", "hours"), [("2025-06-25T08:00:00-01:00", -1.0), ("2025-06-25T08:00:00+0530", 5.5),
                                             ("2025-06-25T08:00:00+01", 1.0), ("2025-06-25", 0.0),
                                             ("2025-06-25T08:00:00.123456+14:00", 14.0)])
def test_possible_utc_offsets_are_read(text: str, hours: float) -> None:
    offset = parse_timestamp(text).utcoffset()
    assert offset is not None
    assert offset.total_seconds() == hours * 3600


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(["codice_lotto", "lot_code", "cliente", "customer", "quantita", "quantity",
                               "location", "priorita", "priority", "timestamp", "extra"])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_accepted_or_rejected_with_a_known_reason(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(FIELD_NAMES, JSON_VALUES | st.sampled_from(["Italia", "Brazil", "alta", "low", "L-7", 5]),
                       max_size=8))
def test_near_valid_objects_are_accepted_or_rejected_with_a_known_reason(data: dict[str, Any]) -> None:
    _check(json.dumps(data).encode())  # the stdlib also writes integers beyond 64 bits


KNOWN_REASONS = {"empty", "oversized", "not_json", "not_object", "missing_field", "invalid_field",
                 "unknown_location", "unknown_priority", "ambiguous_dialect"}
_FUZZ_PARSER = OrderParser(lambda name: {"italia": "Italia", "brazil": "Brasile"}.get(name.casefold()), 4096)


def _check(raw: bytes) -> None:
    try:
        order = _FUZZ_PARSER.parse(raw)
    except OrderRejected as exc:
        rejected = exc
    else:
        rejected = None
    if rejected is not None:
        assert rejected.reason in KNOWN_REASONS
        assert rejected.detail
        return
    assert order.lot_code.strip() and len(order.lot_code) <= MAX_LOT_CODE
    assert 1 <= order.quantity <= MAX_QUANTITY
    assert order.location in ("Italia", "Brasile")
    assert order.priority in ("alta", "normale", "bassa")


# --- order files ---------------------------------------------------------------------------------
def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_order_file_times_are_relative_to_the_earliest_timestamp(tmp_path: Path, parser: OrderParser) -> None:
    path = _write_lines(tmp_path / "orders.jsonl", [
        _raw({**ENGLISH, "lot_code": "B", "timestamp": "2025-06-25T09:30:00Z"}),
        _raw({**ENGLISH, "lot_code": "A", "timestamp": "2025-06-25T08:00:00Z"}),
        _raw({**ENGLISH, "lot_code": "C", "timestamp": "2025-06-25T10:00:00+02:00"}),
        _raw({"lot_code": "D", "quantity": 3, "location": "Vietnam"}),
    ])
    timed, rejected = load_orders(path, parser)
    assert rejected == []
    assert [(at, order.lot_code) for at, order in timed] == [(0.0, "A"), (0.0, "C"), (0.0, "D"), (5400.0, "B")]


def test_order_file_rejects_lines_with_their_numbers(tmp_path: Path, parser: OrderParser) -> None:
    path = _write_lines(tmp_path / "orders.jsonl", [
        _raw({**ENGLISH, "lot_code": "A"}),
        b"",
        b"{broken",
        _raw({**ENGLISH, "lot_code": "A"}),
        _raw({**ENGLISH, "lot_code": "B", "location": "Mars"}),
        _raw({**ITALIAN, "codice_lotto": "C"}),
    ])
    timed, rejected = load_orders(path, parser)
    assert [o.lot_code for _, o in timed] == ["A", "C"]
    assert [(r.line, r.reason) for r in rejected] == [(3, "not_json"), (4, "duplicate_lot"), (5, "unknown_location")]


def test_replayed_orders_all_finish_at_their_locations(tmp_path: Path, default_config: Config) -> None:
    lines = [_raw({"lot_code": f"R-{i}", "quantity": 50 + i, "location": loc, "priority": prio,
                   "timestamp": f"2025-06-25T{8 + i // 4:02d}:{(i % 4) * 15:02d}:00Z"})
             for i, (loc, prio) in enumerate([("Italia", "alta"), ("Brazil", "low"), ("Vietnam", "normal")] * 4)]
    path = _write_lines(tmp_path / "orders.jsonl", [*lines, b"not json"])
    result = asyncio.run(run_offline(default_config, seed=3, orders=path))
    stats = result.sim.stats
    assert stats.completed + stats.scrapped == 12
    assert {loc: counts["received"] for loc, counts in stats.by_location.items()} == \
        {"Italia": 4, "Brasile": 4, "Vietnam": 4}
    assert result.rejected_by_reason == {"not_json": 1}
    assert result.sim.now > 2 * 3600  # the last order arrives 2 h 45 min after the first
