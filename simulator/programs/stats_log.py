"""The periodic statistics line of the service and the bridge (``logging.stats_interval_s``).

Every interval one INFO line says how far the program is: counts since the start and how much each
grew since the line before (per second for message flows), so that a log alone — ``kubectl logs``,
``journalctl``, ``docker logs`` — shows whether the program makes progress and how fast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.adapters.delivery.target import DeliveryTarget

log = logging.getLogger(__name__)


class Growth:
    """What a counter grew by since the previous line; the compose function of :class:`StatsLog`
    asks for each counter it shows (by a name of its own) and gets the text to show."""

    def __init__(self, previous: dict[str, float], elapsed_s: float | None) -> None:
        self._previous = previous
        self._elapsed_s = elapsed_s
        self.seen: dict[str, float] = {}

    def added(self, name: str, value: float) -> str:
        """``12 (+3)``: the count and what it grew by since the previous line."""
        self.seen[name] = value
        return f"{value:.0f} (+{value - self._previous.get(name, 0):.0f})"

    def rate(self, name: str, value: float) -> str:
        """``1234 (41.1/s)``: the count and its rate since the previous line (since the start for
        the first line)."""
        self.seen[name] = value
        grown = value - self._previous.get(name, 0)
        per_s = grown / self._elapsed_s if self._elapsed_s else 0.0
        return f"{value:.0f} ({per_s:.1f}/s)"


class StatsLog:
    """Logs ``compose(growth)`` every ``interval_s`` wall seconds (``run``); ``line`` makes one now."""

    def __init__(self, interval_s: float, compose: Callable[[Growth], str], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.compose = compose
        self.clock = clock
        self._previous: dict[str, float] = {}
        self._since = clock()

    def line(self) -> str:
        now = self.clock()
        growth = Growth(self._previous, now - self._since)
        text = self.compose(growth)
        self._previous, self._since = growth.seen, now
        return text

    async def run(self) -> None:
        if self.interval_s <= 0:
            return
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                text = self.line()
            except Exception:  # a view that fails must not stop the program it describes
                log.exception("the statistics line could not be made")
                continue
            log.info("%s", text)


def dropped_note(target: DeliveryTarget) -> str:
    """``, dropped 12`` when a target's overflow policy has dropped records, else nothing."""
    count = sum(target.dropped.values())
    return f", dropped {count}" if count else ""


def outage_note(target: DeliveryTarget) -> str:
    """``, NETWORK OUTAGE (command), 1200 waiting`` during an outage; ``, FAULTS ON`` with delivery faults."""
    note = f", NETWORK OUTAGE ({target.outage.reason}), {len(target)} waiting" if target.outage.active else ""
    return note + (", DELIVERY FAULTS ON" if target.faults_on else "")
