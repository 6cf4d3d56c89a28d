"""A delivery target's outgoing queue: in memory (:class:`MemoryQueue`, this module) or on disk
(:class:`simulator.adapters.delivery.spool.SpoolQueue`), behind one interface (:class:`DeliveryQueue`).

The producer side (the outbox tap in the service, the Kafka reader in the bridge) calls
:meth:`DeliveryQueue.put` synchronously: it never blocks.  What happens when the queue is full is
the target's overflow policy:

- ``block``: nothing is dropped; while the queue is full, ``full`` is true, so simulated time holds
  (in the service) or the bridge stops reading Kafka, until ``on_room`` is called;
- ``drop-oldest`` / ``drop-newest``: the oldest waiting item or the new one is dropped and counted.

A put item's ``on_done`` runs once the item is *handed over*: for the memory queue when all of its
messages are delivered (or dropped), for the spool once it is written to disk.  The bridge commits
Kafka offsets only then.

The sending side (:class:`simulator.adapters.delivery.target.DeliveryTarget`) takes
:class:`Taken` items in order; each one's ``done`` is called when its messages are delivered (or
given up); the spool removes them from disk only then.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from simulator.asyncio_waits import wait_for
from simulator.formats import WireMessage
from simulator.model.records import Record

log = logging.getLogger(__name__)
Done = Callable[[], None] | None
Encode = Callable[[Record], list[WireMessage]]  # a record -> its messages ([] when it cannot be encoded)
Mark = tuple[str, int]  # (origin, position): a put item's place in its source, e.g. ("run-7:Italia", seq)


@dataclass(slots=True)
class Taken:
    """Messages taken from the queue to be delivered, in order; ``done()`` once all are delivered
    or given up (exactly once)."""

    messages: list[WireMessage]
    done: Callable[[], None]


def _nothing() -> None:
    pass


class DeliveryQueue(Protocol):
    on_room: Callable[[], None] | None

    def put(self, item: Record | list[WireMessage], on_done: Done = None, mark: Mark | None = None) -> None:
        """Queue a record (encoded by the queue) or messages already encoded (never blocks).  ``mark``:
        an item at or before the last mark of its origin that was put is skipped (it was handed over
        before a restart); ``on_done`` is called for it at once."""

    @property
    def full(self) -> bool:
        """True while the ``block`` policy holds the producer."""

    async def wait_for_room(self) -> None: ...

    async def take(self, limit: int, timeout_s: float | None = None) -> list[Taken]:
        """Up to ``limit`` items, oldest first; waits for one at most ``timeout_s`` (None: for ever).
        An empty list: nothing came in time, or the queue is closed and nothing is left."""

    def close(self) -> None:
        """No more puts: ``take`` returns what is left, then empty lists."""

    @property
    def drained(self) -> bool:
        """Closed, and everything taken."""

    def __len__(self) -> int:
        """Items waiting to be taken."""

    def health(self) -> dict[str, Any]:
        """The queue's part of the target's /health view."""

    async def aclose(self) -> None:
        """Release what the queue holds (files); safe to call twice."""


class MemoryQueue:
    """The in-memory queue: ``capacity`` records (or encoded items), encoded when taken."""

    def __init__(self, capacity: int, overflow: str, encode: Encode, *, name: str = "") -> None:
        self.capacity = capacity
        self.overflow = overflow
        self.low_water = capacity // 2
        self.encode = encode
        self.name = name
        self.on_room: Callable[[], None] | None = None
        self.dropped = {"oldest": 0, "newest": 0}
        self._items: deque[tuple[Record | list[WireMessage], Done]] = deque()
        self._has_items = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def put(self, item: Record | list[WireMessage], on_done: Done = None, mark: Mark | None = None) -> None:
        if len(self._items) >= self.capacity:
            if self.overflow == "drop-newest":
                self._drop("newest", on_done)
                return
            if self.overflow == "drop-oldest":
                _, old_done = self._items.popleft()
                self._drop("oldest", old_done)
        self._items.append((item, on_done))
        self._has_items.set()
        if self.overflow == "block" and len(self._items) >= self.capacity:
            self._room.clear()

    def _drop(self, which: str, on_done: Done) -> None:
        self.dropped[which] += 1
        if self.dropped[which] == 1 or self.dropped[which] % 10_000 == 0:
            log.warning("target %s: queue full (%d), dropped %d %s record(s) so far (overflow %s)",
                        self.name, self.capacity, self.dropped[which], which, self.overflow)
        if on_done is not None:
            on_done()

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    async def take(self, limit: int, timeout_s: float | None = None) -> list[Taken]:
        if not self._items and not self._closed:
            self._has_items.clear()
            if timeout_s is None:
                await self._has_items.wait()
            else:
                try:
                    await wait_for(self._has_items.wait(), timeout_s)
                except TimeoutError:
                    return []
        taken: list[Taken] = []
        items = self._items
        while items and len(taken) < limit:
            item, on_done = items.popleft()
            messages = item if isinstance(item, list) else self.encode(item)
            taken.append(Taken(messages, on_done or _nothing))
        if not self._room.is_set() and len(items) <= self.low_water:
            self._room.set()
            if self.on_room is not None:
                self.on_room()
        return taken

    def close(self) -> None:
        self._closed = True
        self._has_items.set()

    @property
    def drained(self) -> bool:
        return self._closed and not self._items

    def __len__(self) -> int:
        return len(self._items)

    def health(self) -> dict[str, Any]:
        return {"queue_depth": len(self._items), "queue_capacity": self.capacity, "overflow": self.overflow,
                "dropped_oldest": self.dropped["oldest"], "dropped_newest": self.dropped["newest"]}

    async def aclose(self) -> None:
        self._items.clear()
