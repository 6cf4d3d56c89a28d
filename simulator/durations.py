"""Parse human durations such as ``90s``, ``15m``, ``8h``, ``30d`` or plain seconds."""

from __future__ import annotations

import re

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``; raises ValueError naming the accepted units."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"duration must not be negative, got {text}")
        return float(text)
    match = _PATTERN.match(str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(
            f"not a duration: {text!r} (use a number of seconds or a number with one of the units "
            "s, m, h, d, w, e.g. 90s, 15m, 8h, 30d)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]
