"""What a delivery target delivered, compared with what the service published on Kafka (the system
of record): every record is there, none is extra, duplicates counted, each machine's order kept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson


def event_id(body: dict[str, Any]) -> str:
    """A coffeemek message's event id (telemetry ``id_evento``, lot events ``event_id``)."""
    value = body.get("id_evento", body.get("event_id"))
    assert isinstance(value, str), body
    return value


def stream_of(body: dict[str, Any]) -> str:
    """The stream whose order matters: the machine (telemetry, machine events), else the plant."""
    return str(body.get("id_macchina") or body.get("machine_id") or body.get("luogo") or body.get("location"))


def sequence(body: dict[str, Any]) -> int:
    """The record's number within its plant (the last group of its event id)."""
    return int(event_id(body).rpartition("-")[2], 16)


@dataclass
class Delivered:
    """``received``: the payloads in the order they arrived."""

    received: list[bytes]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(p) for p in self.received]

    @property
    def ids(self) -> set[str]:
        return {event_id(b) for b in self.bodies}

    @property
    def duplicates(self) -> int:
        """Messages received more than once (beyond the first copy)."""
        return sum(n - 1 for n in Counter(event_id(b) for b in self.bodies).values())

    def out_of_order(self) -> list[tuple[str, int, int]]:
        """(stream, previous seq, seq) wherever a stream's first copies arrived out of their order."""
        seen: set[str] = set()
        last: dict[str, int] = {}
        wrong = []
        for body in self.bodies:
            eid = event_id(body)
            if eid in seen:
                continue
            seen.add(eid)
            stream, seq = stream_of(body), sequence(body)
            if seq < last.get(stream, -1):
                wrong.append((stream, last[stream], seq))
            last[stream] = seq
        return wrong


def published_ids(bodies: Iterable[dict[str, Any]]) -> set[str]:
    return {event_id(b) for b in bodies}
