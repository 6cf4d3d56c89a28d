"""Wire formats: records -> (topic, key, headers, bytes).  Field names live here, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from simulator.model.records import Record, quick_init


@quick_init  # built for every message sent: through its slots, still frozen (see quick_init)
@dataclass(frozen=True, slots=True)
class WireMessage:
    topic: str
    key: bytes
    headers: tuple[tuple[str, bytes], ...]
    value: bytes
    retain: bool = False  # MQTT: keep as the topic's last known value (e.g. a machine's status)


class Format(Protocol):
    name: str

    def encode(self, record: Record) -> list[WireMessage]:
        """The messages one record becomes (none, one or several)."""
        ...
