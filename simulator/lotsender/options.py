"""Parsing and checking lot-sender's flags; every problem is a ``UsageError`` naming the flag
and what is allowed (exit code 2)."""

from __future__ import annotations

import math
import re

from simulator.config.plant import PRIORITY_ALIASES
from simulator.errors import UsageError

_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9_.:\-]+?\]?:(\d{1,5})$")


def parse_mix(flag: str, text: str) -> dict[str, float]:
    """``Italia=0.5,Brasile=0.3,Vietnam=0.2`` → weights (need not sum to 1)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight_text = part.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"{flag}: expected NAME=WEIGHT[,NAME=WEIGHT…], got {part.strip()!r}")
        try:
            weight = float(weight_text)
        except ValueError:
            raise UsageError(f"{flag}: the weight of {name!r} must be a number, got {weight_text!r}") from None
        if not math.isfinite(weight) or weight <= 0:
            raise UsageError(f"{flag}: the weight of {name!r} must be greater than 0, got {weight_text!r}")
        if name in mix:
            raise UsageError(f"{flag}: {name!r} is given twice")
        mix[name] = weight
    return mix


def parse_priorities(text: str) -> dict[str, float]:
    mix = parse_mix("--priorities", text)
    out: dict[str, float] = {}
    for name, weight in mix.items():
        canonical = PRIORITY_ALIASES.get(name.casefold())
        if canonical is None:
            raise UsageError(f"--priorities: unknown priority {name!r}; allowed: {', '.join(PRIORITY_ALIASES)}")
        out[canonical] = out.get(canonical, 0.0) + weight
    return out


def parse_quantity(text: str) -> tuple[int, int]:
    """``50-500`` or a single ``100``; 1..1,000,000."""
    low_text, sep, high_text = text.strip().partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise UsageError(f"--quantity: expected MIN-MAX in whole pieces (e.g. 50-500), got {text!r}") from None
    if not 1 <= low <= high <= 1_000_000:
        raise UsageError(f"--quantity: need 1 <= MIN <= MAX <= 1000000, got {text!r}")
    return low, high


def parse_customers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise UsageError("--customers: give at least one name (comma-separated)")
    return names


def check_broker(text: str) -> str:
    """``host:port[,host:port…]``."""
    parts = [p.strip() for p in text.split(",")]
    for part in parts:
        match = _HOST_PORT.match(part)
        if match is None or not 1 <= int(match.group(1)) <= 65535:
            raise UsageError(f"--broker: expected host:port[,host:port…] with a port 1..65535, got {part!r}")
    return ",".join(parts)


def positive(flag: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise UsageError(f"{flag}: must be greater than 0, got {value:g}")
