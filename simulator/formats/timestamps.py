"""Timestamps and event ids shared by the formats (deterministic per run).

Formatting dates is a large part of encoding a record, so the work is shared: the offset of the
last sim time is kept (a record asks for it several times), UTC strings are cached by sim time
(records repeat instants: a stage completes, the next is queued, a machine is released; and
every record of a machine shows its last maintenance), and each location keeps the UTC offset of
the period between two of its zone's transitions that it is in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import pytz

_CACHE_MAX = 4096  # cached UTC strings before starting over
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def epoch_ms(start: dt.datetime) -> Callable[[float], int]:
    """Sim time -> milliseconds since the Unix epoch of the instant the payloads' timestamps show
    (``start`` plus the sim time, floored to the millisecond): a record's event time for Kafka."""
    start_us = (start - _EPOCH) // _US
    return lambda sim_time: (start_us + dt.timedelta(seconds=sim_time) // _US) // 1000


@dataclass(frozen=True, slots=True)
class _Period:
    """Wall times (UTC) ``low <= t < high`` that a zone shows with one offset (``suffix`` in ISO)."""

    low: dt.datetime
    high: dt.datetime
    offset: dt.timedelta
    suffix: str


class Timestamps:
    """Sim time -> ISO-8601 strings in UTC and in a location's own zone (millisecond precision)."""

    def __init__(self, start: dt.datetime, zones: dict[str, str]) -> None:
        self.start = start
        self.zones = {name: pytz.timezone(tz) for name, tz in zones.items()}
        self._wall_start = start.replace(tzinfo=None)  # start's own wall time: what ``start + offset`` shows
        self._is_utc = start.utcoffset() == dt.timedelta(0)
        self._offset_key = math.nan  # equal to no sim time
        self._offset = dt.timedelta(0)
        self._utc: dict[float, str] = {}
        self._local: dict[str, tuple[float, str]] = {}
        self._periods: dict[str, _Period] = {}

    def offset(self, sim_time: float) -> dt.timedelta:
        """``sim_time`` as a timedelta (rounded to the microsecond)."""
        if sim_time != self._offset_key:
            self._offset = dt.timedelta(seconds=sim_time)
            self._offset_key = sim_time
        return self._offset

    def utc(self, sim_time: float) -> str:
        text = self._utc.get(sim_time)
        if text is None:
            if len(self._utc) >= _CACHE_MAX:
                self._utc.clear()
            wall = self._wall_start + self.offset(sim_time)
            if wall.year >= 1000:  # four-digit years: the ISO form is the one below
                text = wall.isoformat("T", "milliseconds") + "Z"  # positional: cheaper than timespec=
            else:
                text = f"{wall:%Y-%m-%dT%H:%M:%S}.{wall.microsecond // 1000:03d}Z"
            self._utc[sim_time] = text
        return text

    def local(self, sim_time: float, location: str) -> str:
        cached = self._local.get(location)
        if cached is not None and cached[0] == sim_time:
            return cached[1]
        offset = self.offset(sim_time)
        period = self._periods.get(location)
        if self._is_utc:
            wall = self._wall_start + offset
            if period is None or not period.low <= wall < period.high:
                period = self._period(wall, location)
            text = (wall + period.offset).isoformat("T", "milliseconds") + period.suffix
        else:
            text = (self.start + offset).astimezone(self.zones[location]).isoformat(timespec="milliseconds")
        self._local[location] = (sim_time, text)
        return text

    def _period(self, wall: dt.datetime, location: str) -> _Period:
        """The period of ``location``'s zone around ``wall`` (UTC), as pytz's ``fromutc`` finds it."""
        zone = self.zones[location]
        shown = wall.replace(tzinfo=dt.UTC).astimezone(zone)
        offset = shown.utcoffset() or dt.timedelta(0)
        suffix = shown.isoformat(timespec="milliseconds")[len(shown.replace(tzinfo=None).isoformat(
            timespec="milliseconds")):]
        # pytz's own table (UTC instants), the one its ``fromutc`` bisects; fixed zones have none
        transitions: list[dt.datetime] | None = getattr(zone, "_utc_transition_times", None)
        low, high = dt.datetime.min, dt.datetime.max
        if transitions:
            k = bisect_right(transitions, wall)
            low = transitions[k - 1] if k > 1 else dt.datetime.min  # before the second: the first offset
            high = transitions[k] if k < len(transitions) else dt.datetime.max
        period = self._periods[location] = _Period(low, high, offset, suffix)
        return period


class EventIds:
    """UUID-shaped ids: a prefix from the run (its seed and ``run_id``) and the record's plant,
    then the record's sequence number within that plant.

    Unique within a run, identical for the same run, plant and sequence number wherever and
    whenever they are made (a plant restored in another process gives its records the same ids),
    different across runs."""

    def __init__(self, seed: int, run_id: str = "") -> None:
        self._salt = f"{seed}:{run_id}" if run_id else str(seed)
        self._prefixes: dict[str, str] = {}

    def __call__(self, plant: str, seq: int) -> str:
        prefix = self._prefixes.get(plant)
        if prefix is None:
            digest = hashlib.blake2b(f"factorysim:{self._salt}:{plant}".encode(), digest_size=10).hexdigest()
            variant = "89ab"[int(digest[16], 16) % 4]
            prefix = self._prefixes[plant] = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-{variant}{digest[17:20]}-"
        return f"{prefix}{seq:012x}"
