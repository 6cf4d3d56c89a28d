"""Parsing and validating order messages (both dialects).  Pure: bytes in, Order or
OrderRejected(reason) out.

Dialects: ``{"codice_lotto","cliente","quantita","location","priorita","timestamp"}`` and
``{"lot_code","customer","quantity","location","priority","timestamp"}``.

Reason codes (stable, machine-readable): ``empty``, ``oversized``, ``not_json``, ``not_object``,
``missing_field``, ``invalid_field``, ``unknown_location``, ``unknown_priority``,
``ambiguous_dialect``, ``duplicate_lot`` (raised by the model/service, not here).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, Literal

import orjson

from simulator.config.plant import DEFAULT_PRIORITY, PRIORITY_ALIASES, PRIORITY_ENGLISH
from simulator.errors import OrderRejected
from simulator.limits import CONTROL_CHARACTER, control_characters
from simulator.model.order import Order

MAX_LOT_CODE = 128
MAX_QUANTITY = 1_000_000
DEFAULT_MAX_BYTES = 64 * 1024

Dialect = Literal["it", "en"]
DIALECTS: tuple[Dialect, ...] = ("it", "en")
# lot code, customer, quantity, priority in each dialect (``location`` and ``timestamp`` are shared)
ORDER_KEYS: dict[Dialect, tuple[str, str, str, str]] = {
    "it": ("codice_lotto", "cliente", "quantita", "priorita"),
    "en": ("lot_code", "customer", "quantity", "priority"),
}
_IT, _EN = ORDER_KEYS["it"], ORDER_KEYS["en"]
_MISSING = object()
_KNOWN_NAMES = 256  # location spellings remembered by a parser


class OrderParser:
    """Validates order messages against a plant's locations."""

    def __init__(self, location_of: Callable[[str], str | None], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.location_of = location_of
        self.max_bytes = max_bytes
        self._locations: dict[str, str] = {}  # names seen -> canonical name (known ones only, bounded)

    def parse(self, raw: bytes) -> Order:
        if not raw or not raw.strip():
            raise OrderRejected("empty", "the message is empty")
        if len(raw) > self.max_bytes:
            raise OrderRejected("oversized", f"{len(raw)} bytes, the limit is {self.max_bytes}")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise OrderRejected("not_json", f"not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise OrderRejected("not_object", f"expected a JSON object, got {type(data).__name__}")
        return self.from_mapping(data)

    def from_mapping(self, data: dict[str, Any]) -> Order:
        lot_code = _text(_pick(data, _IT[0], _EN[0], required=True), "lot_code", MAX_LOT_CODE)
        customer_raw = _pick(data, _IT[1], _EN[1], required=False)
        customer = "" if customer_raw is None else _text(customer_raw, "customer", 256, allow_empty=True)
        quantity = _pick(data, _IT[2], _EN[2], required=True)
        if type(quantity) is not int and (isinstance(quantity, bool) or not isinstance(quantity, int)):
            raise OrderRejected("invalid_field", f"quantity must be an integer, got {_shown(quantity)}")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise OrderRejected("invalid_field", f"quantity must be 1..{MAX_QUANTITY}, got {quantity}")
        location = self._location(data.get("location"))
        priority_raw = _pick(data, _IT[3], _EN[3], required=False)
        if priority_raw is None:
            priority = DEFAULT_PRIORITY
        else:
            known = PRIORITY_ALIASES.get(priority_raw) if isinstance(priority_raw, str) else None
            if known is None:
                if not isinstance(priority_raw, str) or priority_raw.casefold() not in PRIORITY_ALIASES:
                    raise OrderRejected("unknown_priority", f"priority must be one of "
                                        f"{', '.join(PRIORITY_ALIASES)}, got {_shown(priority_raw, as_text=True)}")
                known = PRIORITY_ALIASES[priority_raw.casefold()]
            priority = known
        timestamp = data.get("timestamp")
        if timestamp is not None:
            if not isinstance(timestamp, str):
                raise OrderRejected("invalid_field", f"timestamp must be an ISO-8601 string, got {_shown(timestamp)}")
            parse_timestamp(timestamp)
        return Order(lot_code, customer, quantity, location, priority, timestamp)

    def _location(self, name: Any) -> str:
        """The canonical name of a location name or alias (remembered for the next orders)."""
        if name is None:
            raise OrderRejected("missing_field", "location is missing")
        if not isinstance(name, str):
            raise OrderRejected("invalid_field", f"location must be a string, got {_shown(name)}")
        location = self._locations.get(name)
        if location is None:
            location = self.location_of(name)
            if location is None:
                raise OrderRejected("unknown_location", f"unknown location {name[:100]!r}")
            if len(self._locations) >= _KNOWN_NAMES:
                self._locations.clear()  # spellings are few; this only bounds a hostile sender's variants
            self._locations[name] = location
        return location


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO-8601 instant; without an offset it is taken as UTC.  An offset's minutes and seconds
    are 00..59 (Python would read ``-00:60`` as ``-01:00``)."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise OrderRejected("invalid_field", f"timestamp is not ISO-8601: {text[:64]!r}") from exc
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if text[-1] in "Zz":
        return value
    offset = _OFFSET.search(text, max(0, len(text) - 20))  # an offset is at most 16 characters
    if offset is not None and max(offset.group(2) or "00", offset.group(3) or "00") > "59":  # two digits each
        raise OrderRejected("invalid_field", f"timestamp has an impossible UTC offset {offset.group(0)!r}: "
                                             f"minutes and seconds are 00..59")
    return value


# the UTC offset at the end of a date-time (after the time of day): [+-]HH[[:]MM[[:]SS[.ffffff]]]
_OFFSET = re.compile(r"(?<=\d)[+-](\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.\d{1,6})?)?)?$")


def _pick(data: dict[str, Any], italian: str, english: str, *, required: bool) -> Any:
    """A field given in either dialect (both only with the same value)."""
    value = data.get(italian, _MISSING)
    other = data.get(english, _MISSING)
    if value is _MISSING:
        if other is _MISSING:
            if required:
                raise OrderRejected("missing_field", f"{italian} / {english} is missing")
            return None
        return other
    # containers are never compared: a deeply nested one would exceed the recursion limit
    if other is not _MISSING and (isinstance(value, dict | list) or isinstance(other, dict | list) or other != value):
        raise OrderRejected("ambiguous_dialect", f"both {italian!r} and {english!r} given with different values")
    return value


def _shown(value: Any, limit: int = 50, *, as_text: bool = False) -> str:
    """A JSON value for a rejection's detail: short, and a container only by its kind (the repr of
    a deeply nested one would exceed the recursion limit); ``as_text`` quotes a scalar's text."""
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "an array"
    text = repr(str(value) if as_text else value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def _text(value: Any, name: str, limit: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise OrderRejected("invalid_field", f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and (not value or value.isspace()):
        raise OrderRejected("invalid_field", f"{name} must not be empty")
    if len(value) > limit:
        raise OrderRejected("invalid_field", f"{name} is longer than {limit} characters")
    # they would reach logs, keys and terminals as they are (printable ASCII has none: no search)
    if not (value.isascii() and value.isprintable()) and CONTROL_CHARACTER.search(value) is not None:
        raise OrderRejected("invalid_field", f"{name} must not contain control characters "
                                             f"(found {', '.join(sorted(set(control_characters(value)))[:5])})")
    return value


def order_body(order: Order, dialect: Dialect = "en", timestamp: str | None = None) -> dict[str, Any]:
    """An order's message fields in ``dialect`` (English priorities in English); ``timestamp``
    replaces the order's own."""
    code, customer, quantity, priority = ORDER_KEYS[dialect]
    body: dict[str, Any] = {
        code: order.lot_code,
        customer: order.customer,
        quantity: order.quantity,
        "location": order.location,
        priority: order.priority if dialect == "it" else PRIORITY_ENGLISH.get(order.priority, order.priority),
    }
    if timestamp is not None or order.timestamp is not None:
        body["timestamp"] = timestamp or order.timestamp
    return body


def order_to_json(order: Order, dialect: Dialect = "en", timestamp: str | None = None) -> bytes:
    """An order as a message (what :meth:`OrderParser.parse` reads back)."""
    return orjson.dumps(order_body(order, dialect, timestamp))
