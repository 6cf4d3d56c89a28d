"""Timestamps and event ids shared by the formats (deterministic per run).

Several records share an instant (a stage completes, the next is queued, a machine is released),
so the last conversion per location is cached.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytz


class Timestamps:
    """Sim time -> ISO-8601 strings in UTC and in a location's own zone (millisecond precision)."""

    def __init__(self, start: dt.datetime, zones: dict[str, str]) -> None:
        self.start = start
        self.zones = {name: pytz.timezone(tz) for name, tz in zones.items()}
        self._utc_key = -1.0
        self._utc_text = ""
        self._local: dict[str, tuple[float, str]] = {}

    def utc(self, sim_time: float) -> str:
        if sim_time != self._utc_key:
            instant = self.start + dt.timedelta(seconds=sim_time)
            self._utc_key = sim_time
            self._utc_text = f"{instant:%Y-%m-%dT%H:%M:%S}.{instant.microsecond // 1000:03d}Z"
        return self._utc_text

    def local(self, sim_time: float, location: str) -> str:
        cached = self._local.get(location)
        if cached is not None and cached[0] == sim_time:
            return cached[1]
        instant = (self.start + dt.timedelta(seconds=sim_time)).astimezone(self.zones[location])
        text = instant.isoformat(timespec="milliseconds")
        self._local[location] = (sim_time, text)
        return text


class EventIds:
    """UUID-shaped ids: a per-run prefix (from the seed) and the record's sequence number.

    Unique within a run, identical for the same seed and sequence, different across seeds.  A
    service passes a per-process ``instance`` so that ids stay unique across restarts."""

    def __init__(self, seed: int, instance: str = "") -> None:
        salt = f":{instance}" if instance else ""
        digest = hashlib.blake2b(f"factorysim:{seed}{salt}".encode(), digest_size=10).hexdigest()
        variant = "89ab"[int(digest[16], 16) % 4]
        self.prefix = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-{variant}{digest[17:20]}-"

    def __call__(self, seq: int) -> str:
        return f"{self.prefix}{seq:012x}"
