"""The orders factorysim takes in (:mod:`simulator.orders`), in either dialect.

Field names and bounds come from the parser (``ORDER_KEYS``, ``MAX_LOT_CODE``, ``MAX_QUANTITY``,
the priorities' aliases, the config's locations and their aliases).  The parser reads names of
locations and priorities without regard to case; the schema says the same with a pattern.  It
describes what a sender should send: one dialect per message and no other field (the service
ignores fields it does not know and accepts both dialects' keys in one order when their values
agree).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from simulator.adapters.openapi import NO_CONTROL_CHARACTERS
from simulator.config.plant import PRIORITY_ALIASES
from simulator.config.schema import Config
from simulator.contracts.model import Message
from simulator.contracts.schema import Schema, one_of, strict
from simulator.orders import DIALECTS, MAX_LOT_CODE, MAX_QUANTITY, ORDER_KEYS, Dialect

MAX_CUSTOMER = 256  # simulator.orders.OrderParser.from_mapping
# an ISO-8601 date and time of day, the offset optional (UTC without one; its minutes 00-59)
ISO_INSTANT = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])([Tt ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
               r"([Zz]|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?)?$")


def caseless(words: Iterable[str]) -> str:
    """A pattern matching any of ``words`` whatever the case of its letters."""
    def letters(word: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.upper() != c.lower() else re.escape(c) for c in word)
    return "^(" + "|".join(letters(word) for word in words) + ")$"


def _text(max_length: int, description: str, *, min_length: int = 1) -> Schema:
    return {"type": "string", "minLength": min_length, "maxLength": max_length, "pattern": NO_CONTROL_CHARACTERS,
            "description": f"{description}; no control characters"}


def order_payload(config: Config, dialect: Dialect) -> Schema:
    code, customer, quantity, priority = ORDER_KEYS[dialect]
    names = [name for location_name, location in config.locations.items()
             for name in (location_name, *location.aliases)]
    lot_code = _text(MAX_LOT_CODE, "the lot code, unique while the lot is in the plant")
    lot_code["not"] = {"pattern": r"^\s*$"}
    return strict({
        code: lot_code,
        customer: {"anyOf": [_text(MAX_CUSTOMER, "the customer", min_length=0), {"type": "null"}]},
        quantity: {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
        "location": {"type": "string", "pattern": caseless(names), "examples": list(config.locations),
                     "description": "a location's name or alias, in any case"},
        priority: {"anyOf": [{"type": "string", "pattern": caseless(PRIORITY_ALIASES),
                              "examples": list(PRIORITY_ALIASES)}, {"type": "null"}],
                   "description": "default normale; any case"},
        "timestamp": {"anyOf": [{"type": "string", "pattern": ISO_INSTANT,
                                 "description": "ISO-8601; without a UTC offset it is UTC"}, {"type": "null"}]},
    }, title=f"order ({dialect})", optional=(customer, priority, "timestamp"))


def order_message(config: Config) -> Message:
    it, en = (order_payload(config, dialect) for dialect in DIALECTS)
    key = {"type": "string", "description": "any; lot-sender uses the location, so a location's lots stay in order"}
    return Message("order", "Production order", "A lot to make, in the Italian or the English dialect",
                   one_of([it, en], "An order in one of the two dialects"), key=key)
