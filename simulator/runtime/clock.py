"""Wall clocks for the driver: the real monotonic one and a manual one that makes pacing tests fast."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from simulator.asyncio_waits import wait_event


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def wait(self, wake: asyncio.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` or until ``wake`` is set; True if woken."""
        ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def wait(self, wake: asyncio.Event, seconds: float) -> bool:
        return await wait_event(wake, seconds)


class ManualClock:
    """Time moves only when the driver waits: a wait jumps straight to its deadline."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.waited = 0.0

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def wait(self, wake: asyncio.Event, seconds: float) -> bool:
        await asyncio.sleep(0)
        if wake.is_set():
            return True
        self._now += seconds
        self.waited += seconds
        return False
