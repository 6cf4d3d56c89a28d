"""Timestamps and event ids shared by the formats (deterministic per run)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from functools import lru_cache

import pytz


class Timestamps:
    """Sim time -> ISO-8601 strings in UTC and in a location's own zone."""

    def __init__(self, start: dt.datetime, zones: dict[str, str]) -> None:
        self.start = start
        self.zones = {name: pytz.timezone(tz) for name, tz in zones.items()}

    def utc(self, sim_time: float) -> str:
        instant = self.start + dt.timedelta(seconds=sim_time)
        return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"

    def local(self, sim_time: float, location: str) -> str:
        instant = (self.start + dt.timedelta(seconds=sim_time)).astimezone(self.zones[location])
        return instant.isoformat(timespec="milliseconds")


@lru_cache(maxsize=8)
def _namespace(seed: int) -> bytes:
    return hashlib.blake2b(f"factorysim:{seed}".encode(), digest_size=16).digest()


def event_id(seed: int, seq: int) -> str:
    """A UUID unique within a run and stable for the same seed and record sequence number."""
    digest = hashlib.blake2b(seq.to_bytes(8, "big"), digest_size=16, key=_namespace(seed)).digest()
    return str(uuid.UUID(bytes=digest, version=4))
