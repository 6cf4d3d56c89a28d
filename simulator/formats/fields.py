"""Reading typed fields of a decoded JSON object (the journal's entries, snapshot envelopes).

Each reader returns the field's value or raises ``KeyError`` (missing) / ``TypeError`` (wrong type
or range) naming the field; the codec turns those into its own error."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any


def text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def integer(data: Mapping[str, Any], key: str, *, minimum: int | None = None) -> int:
    return checked_integer(data[key], key, minimum=minimum)


def checked_integer(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise TypeError(f"{name} must be an integer" + ("" if minimum is None else f" of at least {minimum}"))
    return value


def seconds(data: Mapping[str, Any], key: str) -> float:
    """A finite, non-negative number of (simulated) seconds."""
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise TypeError(f"{key} must be a non-negative number")
    return float(value)


def instant(data: Mapping[str, Any], key: str) -> dt.datetime:
    """An ISO-8601 instant with a UTC offset (``Z`` allowed)."""
    value = dt.datetime.fromisoformat(text(data, key).replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{key} needs a UTC offset")
    return value
