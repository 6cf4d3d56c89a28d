"""A delivery target's link, down on purpose: on command or on a schedule.

While an :class:`OutageSwitch` is active its target sends nothing (its queue, or its spool, keeps
the messages, and sends them once the link is back), as if the network between the plant and its
receiver were down.  The link is down while either is true:

- a **command** (:meth:`OutageSwitch.begin`) is on: until :meth:`OutageSwitch.end`, or for
  ``duration_s`` seconds when it is given (a new command replaces the one before);
- a **scheduled outage** (:class:`~simulator.config.delivery.ScheduledOutage`) is on: from
  ``after_s`` seconds after the switch started (or after its schedule was last changed), for
  ``duration_s`` seconds, and again every ``every_s`` seconds when it is given.  Outages of a
  schedule may overlap one another and a command: the link is down while any of them is.

``end()`` ends the command only; a scheduled outage goes on.  Times are the monotonic clock's
(seconds of wall time passing, whatever happens to the time of day); ``since`` and ``until`` are
told as wall times for people.  An outage counts once however many causes it has at a time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from simulator.config.delivery import ScheduledOutage
from simulator.utc import wall_text

_LOOKAHEAD = 1000  # boundaries looked through for the next change (overlapping periodic outages)


def _window(outage: ScheduledOutage, origin: float, t: float) -> tuple[float, float] | None:
    """The window [start, end) of ``outage`` that contains ``t``, else the next one; None when
    none is left.  The same arithmetic for every ``t``, so that boundaries fall where they are
    computed."""
    base = origin + outage.after_s
    every = outage.every_s
    if every is None:
        return (base, base + outage.duration_s) if t < base + outage.duration_s else None
    k = max(0, math.floor((t - base) / every))
    while base + (k + 1) * every <= t:
        k += 1
    while k > 0 and base + k * every > t:
        k -= 1
    start = base + k * every
    if t >= start + outage.duration_s:
        start = base + (k + 1) * every
    return start, start + outage.duration_s


class OutageSwitch:
    """Whether a target's link is down now, when that changes, and a wait until it is up."""

    def __init__(self, schedule: Iterable[ScheduledOutage] = (), *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self.schedule: tuple[ScheduledOutage, ...] = tuple(schedule)
        self._origin = clock()
        self._seen = self._origin  # the state below is the state at this time
        self._on = False
        self._on_since = self._origin
        self._commanded = False
        self._command_until: float | None = None
        self._outages = 0
        self._past_seconds = 0.0  # of the outages that ended
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiters = 0
        self._advance()

    # --- commands ---

    def start(self) -> None:
        """The schedule counts from now."""
        self.set_schedule(self.schedule)

    def begin(self, duration_s: float | None = None) -> None:
        """The link is down until :meth:`end`, or for ``duration_s`` seconds."""
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"duration_s must be a positive number of seconds, not {duration_s!r}")
        now = self._advance()
        self._commanded = True
        self._command_until = None if duration_s is None else now + duration_s
        self._changes()

    def end(self) -> bool:
        """End the commanded outage (a scheduled one goes on); False when none was on."""
        self._advance()
        was = self._commanded
        self._commanded = False
        self._command_until = None
        self._changes()
        return was

    def set_schedule(self, schedule: Iterable[ScheduledOutage]) -> None:
        """Replace the schedule; it counts from now."""
        now = self._advance()
        self.schedule = tuple(schedule)
        self._origin = now
        self._changes()

    # --- state ---

    @property
    def active(self) -> bool:
        self._advance()
        return self._on

    @property
    def reason(self) -> str | None:
        """``command``, ``schedule`` (when only the schedule holds the link down) or None."""
        now = self._advance()
        if not self._on:
            return None
        return "command" if self._command_on(now) else "schedule"

    def next_change(self) -> float | None:
        """The (monotonic) time the link next goes down or up; None when nothing is due (or
        only :meth:`end` can change it)."""
        t = self._advance()
        if self._on and self._commanded and self._command_until is None:
            return None
        for _ in range(_LOOKAHEAD):
            boundary = self._next_boundary(t)
            if boundary is None or self._active_at(boundary) != self._on:
                return boundary
            t = boundary
        return None

    @property
    def outages(self) -> int:
        """Outages begun (one however many causes it has at a time)."""
        self._advance()
        return self._outages

    @property
    def outage_seconds(self) -> float:
        """Seconds the link has been down so far, the current outage included."""
        now = self._advance()
        return self._past_seconds + (now - self._on_since if self._on else 0.0)

    @property
    def since(self) -> float | None:
        """The wall time the current outage began."""
        now = self._advance()
        return self._wall() - (now - self._on_since) if self._on else None

    @property
    def until(self) -> float | None:
        """The wall time the current outage ends, when that is known."""
        change = self.next_change()
        if not self._on or change is None:
            return None
        return self._wall() + (change - self._clock())

    def health(self) -> dict[str, Any]:
        since, until = self.since, self.until
        return {"active": self.active, "reason": self.reason,
                "since": None if since is None else wall_text(since),
                "until": None if until is None else wall_text(until),
                "outages": self.outages, "outage_seconds": round(self.outage_seconds, 3),
                "schedule": [outage.model_dump() for outage in self.schedule]}

    async def wait_clear(self) -> None:
        """Return when the link is up: at once when it is, else as soon as the outage ends."""
        if not self.active:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an event and a timer belong to one loop
            self._loop, self._changed = loop, None
        self._waiters += 1
        try:
            if self._timer is None:
                self._arm()
            while self.active:
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()
        finally:
            self._waiters -= 1
            if not self._waiters and self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # --- inside ---

    def _command_on(self, t: float) -> bool:
        return self._commanded and (self._command_until is None or t < self._command_until)

    def _active_at(self, t: float) -> bool:
        if self._command_on(t):
            return True
        for outage in self.schedule:
            window = _window(outage, self._origin, t)
            if window is not None and window[0] <= t:
                return True
        return False

    def _next_boundary(self, t: float) -> float | None:
        """The first time after ``t`` a cause of outage begins or ends."""
        boundaries = [self._command_until] if self._command_on(t) and self._command_until is not None else []
        for outage in self.schedule:
            window = _window(outage, self._origin, t)
            if window is not None:
                boundaries.append(window[0] if t < window[0] else window[1])
        return min(boundaries, default=None)

    def _advance(self) -> float:
        """Bring the state (and the counters) up to the clock, through every change since last
        time; returns the time now."""
        now = self._clock()
        if not (self._on or self._commanded or self.schedule):  # nothing can change: the usual case
            self._seen = max(self._seen, now)
            return now
        t = self._seen
        while True:
            if self._active_at(t) != self._on:
                self._flip(t)
            boundary = self._next_boundary(t)
            if boundary is None or boundary > now:
                break
            t = boundary
        self._seen = max(self._seen, now)
        if self._command_until is not None and self._command_until <= now:
            self._commanded = False
            self._command_until = None
        return now

    def _flip(self, t: float) -> None:
        if self._on:
            self._past_seconds += t - self._on_since
        else:
            self._outages += 1
            self._on_since = t
        self._on = not self._on
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _changes(self) -> None:
        """After a command: the state follows at once, and the timer the new next change."""
        self._advance()
        if self._waiters:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        change = self.next_change()
        if change is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, change - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._advance()
        if self._waiters:
            self._arm()
