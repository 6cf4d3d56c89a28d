"""Instants as the project shows them (/health, logs): ISO-8601 UTC with a Z, to the millisecond."""

from __future__ import annotations

import datetime as dt


def utc_text(instant: dt.datetime) -> str:
    """An instant as ISO-8601 UTC with a Z, to the millisecond."""
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wall_text(seconds: float) -> str:
    """A wall time (``time.time()``) as :func:`utc_text` shows it."""
    return utc_text(dt.datetime.fromtimestamp(seconds, dt.UTC))


def now_text() -> str:
    """Now, as :func:`utc_text` shows it."""
    return utc_text(dt.datetime.now(dt.UTC))
