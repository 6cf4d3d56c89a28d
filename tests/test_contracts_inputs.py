"""What the service takes in and what it refuses: orders (both dialects, as lot-sender sends them),
runtime commands (the README's examples) and dead letters.  The schemas agree with the parsers:
what a parser accepts validates, what it refuses for its form does not."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator.adapters.dead_letters import Unread, dead_letter, letter_attempts
from simulator.command_schema import parse_command
from simulator.config.loader import load
from simulator.contracts.commands import command_message
from simulator.contracts.dead_letters import headers
from simulator.contracts.orders import order_message
from simulator.errors import CommandRejected, OrderRejected
from simulator.lotsender.messages import BAD_KINDS
from simulator.lotsender.plan import BAD_HEADER, RUN_HEADER, SEQ_HEADER, GeneratedLots
from simulator.orders import OrderParser

from harness.contracts import problems, validator

ROOT = Path(__file__).resolve().parent.parent
CONFIG = load(ROOT / "config.yaml", environ={})
ORDER = validator(order_message(CONFIG).payload or {})
COMMAND = validator(command_message().payload or {})


def lots(dialect: str, bad_ratio: float, count: int = 300) -> list[Any]:
    generated = GeneratedLots(CONFIG.arrivals, {name: 1.0 for name in CONFIG.locations}, seed=17,
                              code_prefix="L-20261130-c0ffee", dialect=dialect,  # type: ignore[arg-type]
                              rate_per_min=None, bad_ratio=bad_ratio, timestamp=lambda: "2026-11-30T16:42:03.123Z")
    found = []
    for planned in generated:
        found.append(planned)
        if len(found) == count:
            return found
    return found


@pytest.mark.parametrize("dialect", ["it", "en"])
def test_lot_sender_orders_validate_and_the_service_takes_them(dialect: str) -> None:
    parser = OrderParser(CONFIG.location_of)
    for planned in lots(dialect, 0.0):
        body = orjson.loads(planned.value)
        assert problems(order_message(CONFIG).payload or {}, body) == []
        parser.parse(planned.value)  # (raises when the service would refuse it)
    assert {"codice_lotto" if dialect == "it" else "lot_code"} <= set(body)


@pytest.mark.parametrize("dialect", ["it", "en"])
def test_every_malformed_order_that_is_json_fails_the_schema(dialect: str) -> None:
    parser = OrderParser(CONFIG.location_of)
    seen = set()
    for planned in lots(dialect, 1.0, 400):
        with pytest.raises(OrderRejected):
            parser.parse(planned.value)
        try:
            body = orjson.loads(planned.value)
        except orjson.JSONDecodeError:
            continue  # truncated or empty: no JSON at all
        assert not ORDER.is_valid(body), (planned.bad_kind, body)
        seen.add(planned.bad_kind)
    assert seen == set(BAD_KINDS) - {"truncated_json", "empty"}


def test_orders_in_any_case_and_by_alias_are_valid_as_the_parser_reads_them() -> None:
    alias = next(alias for location in CONFIG.locations.values() for alias in location.aliases)
    for body in ({"lot_code": "L-1", "customer": "Bar", "quantity": 3, "location": alias.upper(), "priority": "HIGH"},
                 {"codice_lotto": "L-2", "quantita": 1, "location": "italia", "priorita": None,
                  "timestamp": "2026-11-30T10:00:00"},
                 {"lot_code": "L-3", "quantity": 1_000_000, "location": "Vietnam",
                  "timestamp": "2026-11-30T10:00+07:00"}):
        OrderParser(CONFIG.location_of).from_mapping(body)
        assert ORDER.is_valid(body), body
    for body in ({"lot_code": "L-1", "quantity": 0, "location": "Italia"},
                 {"lot_code": "   ", "quantity": 1, "location": "Italia"},
                 {"lot_code": "L-\x1b[31m", "quantity": 1, "location": "Italia"},
                 {"lot_code": "L-1", "quantity": True, "location": "Italia"},
                 {"lot_code": "L-1", "quantity": 1, "location": "Italia", "timestamp": "2026-11-30T10:00-00:60"},
                 {"lot_code": "x" * 129, "quantity": 1, "location": "Italia"}):
        with pytest.raises(OrderRejected):
            OrderParser(CONFIG.location_of).from_mapping(body)
        assert not ORDER.is_valid(body), body


# -- commands ---------------------------------------------------------------------------------------
def readme_commands() -> list[dict[str, Any]]:
    """The command objects of the README's "Runtime commands" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("The JSON schema (HTTP: the path gives", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return [json.loads(line) for line in block.strip().splitlines()]


def test_the_readme_command_examples_validate_and_are_accepted() -> None:
    examples = readme_commands()
    assert len(examples) >= 10
    for command in examples:
        parse_command(command)
        assert problems(command_message().payload or {}, command) == [], command


@pytest.mark.parametrize("command", [
    {"command": "block", "machine_id": "M", "colour": "red"},  # unknown field
    {"command": "block"},  # missing machine_id
    {"command": "teleport"},
    {"cmd": "pause", "command": "resume"},
    {"command": "speed", "speed": 0},
    {"command": "speed", "speed": "fast"},
    {"command": "anomaly", "machine_id": "M", "type": "leak", "severity": 0},
    {"command": "anomaly", "machine_id": "M", "type": "leak", "duration_s": -5},
    {"command": "block", "machine_id": "M\x1b[2J"},
    {"command": "block", "machine_id": "M", "reason": ""},
    {"cmd": "bearing_fault", "value": "yes"},
    {"cmd": "bearing_fault"},
    {"command": "delivery_faults", "duplicate": 1.5},
    {"command": "block", "machine_id": "M", "duration_s": 60, "duration_seconds": 60},
    {"machine_id": "M"},
])
def test_a_command_the_service_refuses_for_its_form_fails_the_schema(command: dict[str, Any]) -> None:
    with pytest.raises(CommandRejected):
        parse_command(command)
    assert not COMMAND.is_valid(command), command


@pytest.mark.parametrize("command", [
    {"cmd": "block", "machine_id": "M", "reason": None, "duration_s": None},
    {"command": "anomaly", "machine_id": "M", "anomaly_type": "leak", "duration_seconds": 60},
    {"command": "pause", "cmd": "pause"},
    {"command": "delivery_faults"},
    {"command": "speed", "speed": "max"},
])
def test_aliases_and_nulls_the_service_accepts_validate(command: dict[str, Any]) -> None:
    parse_command(command)
    assert COMMAND.is_valid(command), problems(command_message().payload or {}, command)


# -- dead letters -----------------------------------------------------------------------------------
HEADERS = validator(headers())


def letter_headers(record: Unread, reason: str, *, budget: int | None = None) -> dict[str, str]:
    size = budget if budget is not None else letter_attempts(1_048_576)[0][0]
    letter = dead_letter(record, topic="dlq", reason=reason, detail="what is wrong " * 200, budget=size)
    assert len({name for name, _ in letter.headers}) == len(letter.headers)  # a header once
    return {name: value.decode() for name, value in letter.headers}


def test_dead_letters_of_lot_sender_malformed_orders_have_valid_headers() -> None:
    for planned in lots("en", 1.0, 60):
        original = ((RUN_HEADER, b"c0ffee"), (SEQ_HEADER, str(planned.seq).encode()),
                    (BAD_HEADER, str(planned.bad_kind).encode()), ("dlq.reason", b"forged"))
        record = Unread("coffeemek.orders.new_lots", 2, 1000 + planned.seq, planned.key, planned.value, original)
        found = letter_headers(record, BAD_KINDS[str(planned.bad_kind)][1])
        assert HEADERS.is_valid(found), (found, problems(headers(), found))
        assert found["dlq.reason"] != "forged" and found[SEQ_HEADER] == str(planned.seq)


def test_a_cut_dead_letter_says_so_in_valid_headers() -> None:
    rng = random.Random(3)
    many = tuple((f"h{i}", bytes(rng.randrange(97, 123) for _ in range(300))) for i in range(200))
    record = Unread("orders", 0, 7, b"k" * 5000, b"{" * 200_000, many)
    found = letter_headers(record, "oversized", budget=65_536)
    assert {"dlq.truncated", "dlq.original_size", "dlq.original_sha256", "dlq.key_truncated",
            "dlq.original_key_size", "dlq.headers_dropped"} <= set(found)
    assert HEADERS.is_valid(found), problems(headers(), found)
    assert not HEADERS.is_valid({**found, "dlq.invented": "1"})
    assert not HEADERS.is_valid({k: v for k, v in found.items() if k != "dlq.offset"})
    assert not HEADERS.is_valid({**found, "dlq.partition": "two"})
    assert re.fullmatch(r"[0-9a-f]{64}", found["dlq.original_sha256"])
