"""Deliberately malformed order messages (``--bad-ratio``), and the send timestamp of orders.

Every bad kind names the reason code the service's dead-letter topic gives it, so a test (or
``--follow``) can check that each malformed message was rejected for the intended reason.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from simulator.model.order import Order
from simulator.orders import ORDER_KEYS, Dialect, order_body

OVERSIZED_BYTES = 80 * 1024  # above the service's default 64 KiB limit for one order
LOT_CODE, CUSTOMER, QUANTITY, PRIORITY = range(4)  # positions in ORDER_KEYS


def _key(body: dict[str, Any], field: int) -> str:
    """The name ``body``'s dialect gives a field."""
    italian, english = ORDER_KEYS["it"][field], ORDER_KEYS["en"][field]
    return italian if italian in body else english


class _UtcNowText:
    """The current UTC instant as ISO 8601 with milliseconds, formatted once per millisecond."""

    def __init__(self) -> None:
        self._ms = -1
        self._text = ""

    def __call__(self) -> str:
        now = time.time()
        ms = int(now * 1000)
        if ms != self._ms:
            self._ms = ms
            self._text = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        return self._text


utc_now_text = _UtcNowText()


# -- malformed messages -------------------------------------------------------------------------
def _truncated(body: dict[str, Any], rng: random.Random) -> bytes:
    raw = orjson.dumps(body)
    return raw[: rng.randint(1, len(raw) - 2)]


def _array(body: dict[str, Any], rng: random.Random) -> bytes:
    return orjson.dumps(list(body.values()))


def _without_quantity(body: dict[str, Any], rng: random.Random) -> bytes:
    quantity = _key(body, QUANTITY)
    return orjson.dumps({k: v for k, v in body.items() if k != quantity})


def _bad_quantity(body: dict[str, Any], rng: random.Random) -> bytes:
    key = _key(body, QUANTITY)
    return orjson.dumps({**body, key: rng.choice([-rng.randint(1, 500), 0, "cinquanta", 12.5])})


def _unknown_location(body: dict[str, Any], rng: random.Random) -> bytes:
    return orjson.dumps({**body, "location": rng.choice(["Atlantide", "Narnia", "Eldorado"])})


def _unknown_priority(body: dict[str, Any], rng: random.Random) -> bytes:
    key = _key(body, PRIORITY)
    return orjson.dumps({**body, key: rng.choice(["urgentissima", "asap", "7"])})


def _both_dialects(body: dict[str, Any], rng: random.Random) -> bytes:
    given = _key(body, LOT_CODE)
    other = ORDER_KEYS["en" if given == ORDER_KEYS["it"][LOT_CODE] else "it"][LOT_CODE]
    return orjson.dumps({**body, other: body[given] + "-X"})


def _bad_timestamp(body: dict[str, Any], rng: random.Random) -> bytes:
    return orjson.dumps({**body, "timestamp": rng.choice(["ieri", "2026-13-45T99:00:00Z", "soon"])})


def _empty(body: dict[str, Any], rng: random.Random) -> bytes:
    return b""


def _oversized(body: dict[str, Any], rng: random.Random) -> bytes:
    # the bulk is in the customer name, so a service with a higher size limit still rejects it
    key = _key(body, CUSTOMER)
    return orjson.dumps({**body, key: "x" * OVERSIZED_BYTES})


# kind -> (builder, the dead-letter reason the service gives it)
BAD_KINDS: dict[str, tuple[Callable[[dict[str, Any], random.Random], bytes], str]] = {
    "truncated_json": (_truncated, "not_json"),
    "json_array": (_array, "not_object"),
    "missing_quantity": (_without_quantity, "missing_field"),
    "bad_quantity": (_bad_quantity, "invalid_field"),
    "bad_timestamp": (_bad_timestamp, "invalid_field"),
    "unknown_location": (_unknown_location, "unknown_location"),
    "unknown_priority": (_unknown_priority, "unknown_priority"),
    "both_dialects": (_both_dialects, "ambiguous_dialect"),
    "empty": (_empty, "empty"),
    "oversized": (_oversized, "oversized"),
}
# oversized messages are rare: they cost the broker 80 KiB each
_KINDS = list(BAD_KINDS)
_KIND_WEIGHTS = [0.2 if kind == "oversized" else 1.0 for kind in BAD_KINDS]


def bad_message(order: Order, dialect: Dialect, rng: random.Random, timestamp: str | None = None) -> tuple[str, bytes]:
    """A malformed variant of ``order``: (kind, bytes)."""
    kind = rng.choices(_KINDS, weights=_KIND_WEIGHTS)[0]
    builder, _reason = BAD_KINDS[kind]
    return kind, builder(order_body(order, dialect, timestamp), rng)
