"""Bounds of the numbers factorysim takes from outside (config, runtime commands, orders).

One place, so that the config, the command schema, the HTTP API description and the README agree.
A value outside its bound is refused where it enters (a config error naming the key, a 400 naming
the bound, a dead letter), never taken and left to fail later.
"""

from __future__ import annotations

import datetime as dt
import re

# speed: simulated seconds per wall second ("max" aside).  Above MAX_SPEED a wall second would be
# more than eleven simulated days: use "max".
MIN_SPEED = 0.001
MAX_SPEED = 1_000_000.0

# durations given to commands (a block, an anomaly): ten years of 365 days
MAX_DURATION_S = 315_360_000.0

# severity of an injected anomaly
MAX_SEVERITY = 5.0

# text fields of commands (reason, machine id, anomaly type)
MAX_TEXT_CHARS = 200

# the simulated calendar: wall-clock instants are start + simulated time, and must stay printable
# as ISO-8601 timestamps in every time zone (Python's datetime ends with the year 9999)
EARLIEST_START = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST_START = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
CALENDAR_END = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def calendar_end_s(start: dt.datetime) -> float:
    """The simulated time at which a run that began at ``start`` reaches :data:`CALENDAR_END`."""
    return (CALENDAR_END - start).total_seconds()


# control characters refused in text fields: C0, DEL and C1, and the bidirectional embeddings,
# overrides and isolates that can make a log line show something else than it holds
CONTROL_RANGES = ((0x00, 0x1F), (0x7F, 0x9F), (0x202A, 0x202E), (0x2066, 0x2069))


CONTROL_CHARACTER = re.compile("[" + "".join(f"\\u{low:04x}-\\u{high:04x}" for low, high in CONTROL_RANGES) + "]")


def control_characters(text: str) -> list[str]:
    """The control characters in ``text`` (:data:`CONTROL_RANGES`) as escapes such as ``\\x1b``;
    empty when the text is printable."""
    return [repr(c)[1:-1] for c in CONTROL_CHARACTER.findall(text)]
