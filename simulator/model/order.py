"""A validated production order, ready to become a lot."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.model.records import quick_init


@quick_init  # one per order taken in (see quick_init)
@dataclass(frozen=True, slots=True)
class Order:
    lot_code: str
    customer: str
    quantity: int
    location: str  # canonical location name
    priority: str  # alta | normale | bassa
    timestamp: str | None = None  # as given by the sender (ISO-8601)
