"""The event calendar: simulated time and what happens when.

Every change inside the model is an *entry*: at a simulated instant, call a named handler with a
few arguments (the simulation, a lot, a machine, a location).  Entries due at the same instant run
in the order they were scheduled (a sequence number decides ties), so a run is a deterministic
function of its inputs.  Because entries are data — an instant, a number, a handler's registered
name and plain arguments — the calendar can be written into a snapshot and rebuilt exactly
(:mod:`simulator.model.snapshot`), which a calendar of generator processes could not.

An entry is a list ``[time, seq, handler, args]``; a cancelled one has ``handler`` None and is
dropped when it comes up.  The API mirrors the small part of SimPy's environment the runtime uses
(``now``, ``peek``, ``step``, ``run``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

Entry = list[Any]  # [time, seq, handler | None, args]
Handler = Callable[..., None]

HANDLERS: dict[str, Handler] = {}  # registered name -> handler
HANDLER_NAMES: dict[Handler, str] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    """Register a function as the handler ``name`` of calendar entries (names are what snapshots
    store, so they must stay stable)."""

    def register(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise ValueError(f"handler {name!r} registered twice")
        HANDLERS[name] = fn
        HANDLER_NAMES[fn] = name
        return fn

    return register


class EmptyCalendar(Exception):
    """``step()`` with nothing scheduled."""


class Calendar:
    __slots__ = ("_heap", "now", "seq")

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self._heap: list[Entry] = []
        self.seq = 0  # the number the next entry gets

    def at(self, time: float, fn: Handler, *args: Any) -> Entry:
        """Call ``fn(*args)`` at simulated ``time`` (not before now)."""
        entry = [time if time > self.now else self.now, self.seq, fn, args]
        self.seq += 1
        heapq.heappush(self._heap, entry)
        return entry

    def after(self, delay: float, fn: Handler, *args: Any) -> Entry:
        """Call ``fn(*args)`` ``delay`` simulated seconds from now."""
        entry = [self.now + delay, self.seq, fn, args]
        self.seq += 1
        heapq.heappush(self._heap, entry)
        return entry

    @staticmethod
    def cancel(entry: Entry | None) -> None:
        if entry is not None:
            entry[2] = None

    def peek(self) -> float:
        """The instant of the next entry (inf: none)."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def step(self) -> None:
        """Run the next entry."""
        heap = self._heap
        while True:
            if not heap:
                raise EmptyCalendar("nothing is scheduled")
            entry = heapq.heappop(heap)
            fn = entry[2]
            if fn is not None:
                break
        self.now = entry[0]
        entry[2] = None  # done: cancelling it later is harmless
        fn(*entry[3])

    def run(self, until: float | None = None) -> None:
        """Run every entry (``until``: every entry before that instant, then move the clock to it)."""
        if until is None:
            while self.peek() != math.inf:
                self.step()
            return
        while self.peek() < until:
            self.step()
        if until > self.now:
            self.now = until

    def pending(self) -> list[Entry]:
        """The live entries in the order they will run."""
        return sorted(e for e in self._heap if e[2] is not None)

    def load(self, entries: list[Entry], seq: int) -> None:
        """Replace the calendar's entries (restoring a snapshot); ``seq`` is the next number."""
        self._heap = list(entries)  # the same lists: lots and machines hold some of them
        heapq.heapify(self._heap)
        self.seq = seq

    def __len__(self) -> int:
        return sum(1 for e in self._heap if e[2] is not None)
