"""The bounded buffer between the model and the publishers.

The model's sink puts records synchronously (it never blocks inside a step); the driver stops
stepping while the outbox is above its high-water mark, so simulated time pauses until the
publishers catch up (Kafka is the system of record: nothing is dropped).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from simulator.model.records import Record


class Tap(Protocol):
    """A second reader of every record (an in-process MQTT target).  ``full`` holds simulated time
    like a full outbox does (its ``block`` overflow policy); it calls ``on_room`` when it has room
    again."""

    on_room: Callable[[], None] | None

    @property
    def full(self) -> bool: ...

    def offer(self, record: Record) -> None: ...


class Outbox:
    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be at least 1")
        self.capacity = capacity
        self.low_water = capacity // 2
        self._items: deque[Record] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False
        self.total = 0
        self.wakers: list[asyncio.Event] = []  # set when room frees up (the drivers' wake events)
        self.taps: list[Tap] = []

    def add_tap(self, tap: Tap) -> None:
        tap.on_room = self.wake
        self.taps.append(tap)

    def wake(self) -> None:
        for waker in self.wakers:
            waker.set()

    # the model side ----------------------------------------------------------------------------
    def emit(self, record: Record) -> None:
        items = self._items
        items.append(record)
        self.total += 1
        size = len(items)
        if size == 1:  # it was empty: wake the publisher (``_ready`` stays set while records are waiting)
            self._ready.set()
        if size >= self.capacity:
            self._room.clear()
        for tap in self.taps:
            tap.offer(record)

    @property
    def full(self) -> bool:
        """True from reaching capacity until drained below the low-water mark (hysteresis), or while
        a tap is full."""
        if not self._room.is_set():
            return True
        return bool(self.taps) and any(tap.full for tap in self.taps)

    async def wait_for_room(self) -> None:
        """Return once the publishers drained the outbox below its low-water mark."""
        await self._room.wait()

    # the publisher side ------------------------------------------------------------------------
    async def get_batch(self, max_items: int = 1000) -> list[Record]:
        """Wait for records and take up to ``max_items``; an empty list means closed and drained."""
        while not self._items:
            if self.closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
        if len(self._items) <= self.low_water and not self._room.is_set():
            self._room.set()
            self.wake()
        return batch

    def take(self, max_items: int) -> list[Record]:
        """Up to ``max_items`` records that are waiting, without waiting for any."""
        batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
        if len(self._items) <= self.low_water and not self._room.is_set():
            self._room.set()
            self.wake()
        return batch

    def close(self) -> None:
        """No more records will come; waiting publishers drain and then get an empty batch."""
        self.closed = True
        self._ready.set()
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)
