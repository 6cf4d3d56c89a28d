"""The pacing driver: steps the model's event calendar in step with asyncio.

- ``speed`` = simulated seconds per wall second, or ``None`` for as fast as possible.
- Paced mode waits on ``env.peek()`` with an interruptible wait (never ``time.sleep``), and
  re-anchors sim time to the wall clock after a pause or a speed change.  While it waits, the
  clock follows the wall clock (an idle plant's simulated time moves, as its health shows).  ``lag_s`` says how
  far behind schedule the driver runs.
- As-fast-as-possible mode steps in slices and yields to the event loop between slices so
  health checks and intake stay responsive.
- Lots and commands are injected only between steps (``call``/``inject``); in paced mode the
  environment is first advanced to the wall-clock-mapped simulated time, so a lot enters "now".
- ``schedule(at, fn, ready)`` runs ``fn`` at the stated simulated instant ``at``: after every event
  due at or before it, before any event after it, once ``ready`` is done.  Until then simulated
  time holds at ``at`` (a journaled input waits there for its acknowledgement: no output may
  depend on an input that is not in the journal yet).  ``stamp()`` is the instant an input given
  now applies at.
- With an outbox, stepping stops while it is full (backpressure: simulated time pauses), also
  while catching up before an injection: no command or speed makes one turn of the loop do
  unbounded work.
- A time lease (``set_lease``) bounds simulated time from outside: the driver does not pass the
  lease instant, and ``lease_wanted`` is set once it reaches the renewal instant given with it
  (or the lease holds it), so whoever grants leases can extend it before the driver waits.
- Simulated time ends at the end of the calendar (``limits.CALENDAR_END``): the run stops there
  (``StopReason.CALENDAR_END``) instead of producing timestamps no calendar can show.
- ``last_turn`` (the clock's time of the loop's latest turn) tells a watchdog that the loop lives:
  it turns at least every ``max_wait_s`` whatever it waits for.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from simulator.limits import MAX_SPEED, MIN_SPEED
from simulator.model.lot import Lot
from simulator.model.order import Order
from simulator.model.simulation import Simulation
from simulator.runtime.clock import Clock, MonotonicClock
from simulator.runtime.outbox import Outbox

T = TypeVar("T")
_EPSILON_S = 1e-6  # wall seconds: an event this close to due is due
PACED_TICK_S = 0.001  # wall seconds: the shortest wait of the paced loop for the next event


class StopReason(StrEnum):
    UNTIL_SIM = "until_sim"  # reached until_sim_s
    MAX_EVENTS = "max_events"
    WALL_TIMEOUT = "wall_timeout"
    CONDITION = "condition"  # the ``until`` predicate became true
    STOPPED = "stopped"  # stop() was called
    EXHAUSTED = "exhausted"  # nothing left to simulate and exit_when_idle was set
    CALENDAR_END = "calendar_end"  # simulated time reached the end of the calendar


def check_speed(speed: float | None) -> None:
    if speed is not None and not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be {MIN_SPEED:g}..{MAX_SPEED:g} simulated seconds per wall second "
                         f"(or None for as fast as possible), got {speed!r}")


class Driver:
    def __init__(self, sim: Simulation, *, speed: float | None, clock: Clock | None = None,
                 outbox: Outbox | None = None, slice_events: int = 2000, max_wait_s: float = 0.25) -> None:
        check_speed(speed)
        self.sim = sim
        self.env = sim.env
        self.speed = speed
        self.clock: Clock = clock or MonotonicClock()
        self.outbox = outbox
        self.slice_events = slice_events
        self.max_wait_s = max_wait_s
        self.end_s = sim.calendar_end_s
        self._pending: deque[tuple[Callable[[Simulation], Any], asyncio.Future[Any]]] = deque()
        self._scheduled: list[_Scheduled] = []  # heap by (at, order of scheduling)
        self._watched: list[tuple[float, int, asyncio.Future[None]]] = []  # heap: passed() by instant
        self._order = itertools.count()
        self._wake = asyncio.Event()
        if outbox is not None:
            outbox.wakers.append(self._wake)
        self._paused = False
        self._holds: set[str] = set()  # reasons outside the model to hold simulated time (e.g. "kafka")
        self._stopped = False
        self._anchor_wall = self.clock.now()
        self._anchor_sim = self.sim.now
        self.lag_s = 0.0
        self.max_lag_s = 0.0
        self.events = 0
        self.stalled_on_outbox = 0
        self.last_turn = self._anchor_wall
        self.on_clock: Callable[[], None] | None = None  # after a pause, resume or speed change
        self.lease = math.inf  # simulated time does not pass this instant (set_lease)
        self._renew_at = math.inf
        self.lease_wanted = asyncio.Event()  # the driver reached the renewal instant, or the lease holds it

    # -- control (call from any task) ----------------------------------------------------------
    def call(self, fn: Callable[[Simulation], T]) -> asyncio.Future[T]:
        """Run ``fn(sim)`` between two steps; the future carries its result or exception."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        self._wake.set()
        return future

    def inject(self, order: Order) -> asyncio.Future[Lot]:
        return self.call(lambda sim: sim.admit(order))

    def stamp(self) -> float:
        """The simulated instant at which an input given now applies: in paced mode the
        wall-clock-mapped time when the driver keeps pace; the current instant when it runs
        behind (events are due before the mapped time: they come first, at their own pace), when
        simulated time holds, and as fast as possible."""
        now = float(self.env.now)
        if self.speed is None or self._paused or self._holds:
            return now
        target = min(self._target(self.clock.now()), self.end_s)
        return now if self.env.peek() <= target else max(now, target)

    def schedule(self, at: float, fn: Callable[[Simulation], T],
                 ready: asyncio.Future[Any] | None = None) -> asyncio.Future[T]:
        """Run ``fn(sim)`` at simulated time ``at`` (not before the current instant): after every event
        due at or before ``at``, before any event after it, and not before ``ready`` is done (until
        then simulated time holds at ``at``; if ``ready`` fails, ``fn`` does not run and the future
        gets its exception)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        item = _Scheduled(max(at, float(self.env.now)), next(self._order), fn, future, ready)
        heapq.heappush(self._scheduled, item)
        if ready is not None:
            ready.add_done_callback(lambda _: self._wake.set())
        self._wake.set()
        return future

    def passed(self, sim_time: float) -> asyncio.Future[None]:
        """Done at the first turn at which simulated time is at or past ``sim_time`` (nothing is
        scheduled in the model: the model runs as it would without it)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.env.now >= sim_time:
            future.set_result(None)
        else:
            heapq.heappush(self._watched, (sim_time, next(self._order), future))
        return future

    def _notify_passed(self) -> None:
        watched, now = self._watched, self.env.now
        while watched and watched[0][0] <= now:
            future = heapq.heappop(watched)[2]
            if not future.done():
                future.set_result(None)

    @property
    def barrier(self) -> float:
        """Simulated time cannot pass this instant (the first scheduled call's, or the lease), or inf."""
        return min(self._scheduled[0].at, self.lease) if self._scheduled else self.lease

    @property
    def next_due(self) -> float:
        """The instant of the next event or scheduled call, or inf."""
        next_event = self.env.peek()
        return min(next_event, self._scheduled[0].at) if self._scheduled else next_event

    def set_lease(self, until: float, renew_at: float) -> None:
        """Simulated time may run up to ``until`` (no further); ``lease_wanted`` is set once it
        reaches ``renew_at``, or when the lease holds it."""
        self.lease = until
        self._renew_at = renew_at
        self.lease_wanted.clear()
        self._wake.set()

    def pause(self) -> None:
        self._paused = True
        self._wake.set()
        self._clock_changed()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self._holds:
                self._reanchor()
            self._wake.set()
            self._clock_changed()

    def hold(self, reason: str) -> None:
        """Hold simulated time for an outside reason (e.g. the system of record is unreachable)."""
        self._holds.add(reason)
        self._wake.set()

    def release(self, reason: str) -> None:
        if reason in self._holds:
            self._holds.discard(reason)
            if not self._holds and not self._paused:
                self._reanchor()  # paced mode continues from here instead of racing to catch up
            self._wake.set()

    @property
    def held(self) -> frozenset[str]:
        """Why simulated time holds: the outside reasons given, and "journal lease" while the driver
        waits at the time lease for the journal to acknowledge the next one."""
        held = set(self._holds)
        wants_past_lease = self.speed is None or self._target(self.clock.now()) > self.lease
        if self.lease < self.next_due < math.inf and wants_past_lease and not self._paused:
            held.add("journal lease")
        return frozenset(held)

    def set_speed(self, speed: float | None) -> None:
        check_speed(speed)
        self.speed = speed
        self._reanchor()
        self._wake.set()
        self._clock_changed()

    def continue_from(self, sim_time: float) -> None:
        """Pace on from now as if simulated time were ``sim_time`` at this wall instant: a time
        later than the current one makes the driver catch up (in slices, saying so in ``lag_s``)."""
        self._anchor_wall = self.clock.now()
        self._anchor_sim = max(self.sim.now, min(sim_time, self.end_s))
        self._wake.set()

    def _clock_changed(self) -> None:
        if self.on_clock is not None:
            self.on_clock()

    def stop(self) -> None:
        """Stop at the next step boundary (for good)."""
        self._stopped = True
        self._wake.set()

    def abandon(self) -> None:
        """Stopped for good: the calls and scheduled calls that did not run never will (their
        futures are cancelled, so nobody waits for them), and the outbox no longer wakes it."""
        self.stop()
        if self.outbox is not None and self._wake in self.outbox.wakers:
            self.outbox.wakers.remove(self._wake)
        for _, future in self._pending:
            future.cancel()
        for item in self._scheduled:
            item.future.cancel()
        for _, _, watched in self._watched:
            watched.cancel()
        self._pending.clear()
        self._scheduled.clear()
        self._watched.clear()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self, until_sim_s: float | None = None, max_events: int | None = None,
                  wall_timeout_s: float | None = None, until: Callable[[], bool] | None = None,
                  exit_when_idle: bool = False, paced_from: float | None = None) -> StopReason:
        """Simulate until one of the limits is reached; return which one.  ``paced_from``: pace
        as if simulated time were this at the start (see :meth:`continue_from`: a warm-up)."""
        limit = self.end_s if until_sim_s is None else min(until_sim_s, self.end_s)
        at_limit = StopReason.UNTIL_SIM if until_sim_s is not None and until_sim_s <= self.end_s \
            else StopReason.CALENDAR_END
        deadline = math.inf if wall_timeout_s is None else self.clock.now() + wall_timeout_s
        budget = math.inf if max_events is None else max_events
        done = 0
        self._reanchor()
        if paced_from is not None:
            self.continue_from(paced_from)
        while True:
            self.last_turn = self.clock.now()
            self._run_pending()
            self._run_scheduled()
            if self._watched:
                self._notify_passed()
            if self.env.now >= self._renew_at or self.lease < self.next_due < math.inf:
                self.lease_wanted.set()
            if until is not None and until():
                return StopReason.CONDITION
            if self._stopped:
                return StopReason.STOPPED
            if done >= budget:
                return StopReason.MAX_EVENTS
            now_wall = self.clock.now()
            if now_wall >= deadline:
                return StopReason.WALL_TIMEOUT
            if self._paused or self._holds or (self.outbox is not None and self.outbox.full):
                if not self._paused and not self._holds:
                    self.stalled_on_outbox += 1
                await self._sleep(min(self.max_wait_s, deadline - now_wall))
                continue
            next_t = self.env.peek()
            barrier = self.barrier
            if next_t > barrier:  # a scheduled call waits to be ready: time holds at its instant
                await self._sleep(min(self.max_wait_s, deadline - now_wall))
                continue
            if self.speed is None:
                idle_forever = next_t == math.inf and until_sim_s is None  # no limit to run to
                if next_t > limit and not idle_forever:
                    self._advance_to(limit)
                    return at_limit
                if next_t == math.inf:
                    if exit_when_idle:
                        return StopReason.EXHAUSTED
                    await self._sleep(min(self.max_wait_s, deadline - now_wall))
                    continue
                done += self._step_slice(min(limit, barrier), min(budget - done, self.slice_events), until)
                await asyncio.sleep(0)
                continue
            # due-ness is decided on the wall clock, with a tolerance for float rounding
            if next_t <= limit and self._due_wall(next_t) <= now_wall + _EPSILON_S:
                self.lag_s = max(0.0, now_wall - self._due_wall(next_t))
                self.max_lag_s = max(self.max_lag_s, self.lag_s)
                horizon = min(max(self._target(now_wall), next_t), limit, barrier)
                done += self._step_slice(horizon, min(budget - done, self.slice_events), until)
                await asyncio.sleep(0)
                continue
            self.lag_s = 0.0
            if self._due_wall(limit) <= now_wall + _EPSILON_S:
                self._advance_to(limit)
                return at_limit
            if next_t == math.inf and exit_when_idle:
                return StopReason.EXHAUSTED
            # nothing is due yet: the clock follows the wall clock meanwhile (an idle plant's time moves)
            self._advance_to(min(self._target(now_wall), limit, barrier))
            wake_at = self._due_wall(min(next_t, limit))
            # not for less than a tick: a big paced plant has an event due every few microseconds,
            # and one turn of the loop per event would cost more than the events (they come at most
            # a tick late, together)
            await self._sleep(min(self.max_wait_s, max(wake_at - now_wall, PACED_TICK_S), deadline - now_wall))

    # -- internals --------------------------------------------------------------------------------
    def _step_slice(self, horizon: float, count: float, until: Callable[[], bool] | None) -> int:
        env = self.env
        outbox = self.outbox
        steps = 0
        while steps < count and (next_t := env.peek()) <= horizon and next_t != math.inf:
            env.step()
            steps += 1
            if (until is not None and until()) or (outbox is not None and outbox.full):
                break
        self.events += steps
        return steps

    def _run_pending(self) -> None:
        if not self._pending:
            return
        if self.speed is not None and not self._paused and not self._holds:
            # paced: what is due comes first, then the calls enter at the wall-clock-mapped instant;
            # at most one slice of due events (and none once the outbox is full): when more are due,
            # the calls enter at the current instant, behind schedule, and ``lag_s`` says so
            now_wall = self.clock.now()
            target = min(self._target(now_wall), self.end_s, self.barrier)
            if self.env.peek() <= target and not (self.outbox is not None and self.outbox.full):
                self._step_slice(target, self.slice_events, None)
            if self.env.peek() <= target:  # still behind: say so
                self.lag_s = max(0.0, now_wall - self._due_wall(self.env.peek()))
                self.max_lag_s = max(self.max_lag_s, self.lag_s)
            self._advance_to(target)
        while self._pending:
            fn, future = self._pending.popleft()
            if future.cancelled():
                continue
            try:
                future.set_result(fn(self.sim))
            except Exception as exc:  # noqa: BLE001 - the caller gets it through the future
                future.set_exception(exc)

    def _run_scheduled(self) -> None:
        """Run the scheduled calls whose instant has come (nothing left due at or before it) and
        that are ready, in order."""
        scheduled, env = self._scheduled, self.env
        while scheduled:
            item = scheduled[0]
            if item.at > self.lease:
                return  # after the lease: it waits for the next one
            ready = item.ready
            if ready is not None and not ready.done():
                return  # time holds here until it is
            if env.peek() <= item.at:
                if item.at != env.now:
                    return  # events due before it come first (stepped in slices)
                while env.peek() == item.at:  # the rest of the current instant, also while paused or held
                    env.step()
                    self.events += 1
            heapq.heappop(scheduled)
            if item.future.cancelled():
                continue
            failure = None if ready is None else (asyncio.CancelledError() if ready.cancelled() else ready.exception())
            if failure is not None:
                item.future.set_exception(failure)
                continue
            self.sim.move_clock_to(item.at)
            try:
                item.future.set_result(item.fn(self.sim))
            except Exception as exc:  # noqa: BLE001 - the caller gets it through the future
                item.future.set_exception(exc)

    def _advance_to(self, sim_time: float) -> None:
        """Move simulated time forward to ``sim_time`` when nothing happens before it."""
        self.sim.move_clock_to(sim_time)

    def _target(self, now_wall: float) -> float:
        assert self.speed is not None
        return self._anchor_sim + (now_wall - self._anchor_wall) * self.speed

    def _due_wall(self, sim_time: float) -> float:
        assert self.speed is not None
        return self._anchor_wall + (sim_time - self._anchor_sim) / self.speed

    def _reanchor(self) -> None:
        self._anchor_wall = self.clock.now()
        self._anchor_sim = self.sim.now

    async def _sleep(self, seconds: float) -> None:
        await self.clock.wait(self._wake, max(0.0, seconds))
        self._wake.clear()


@dataclass(order=True, slots=True)
class _Scheduled:
    at: float
    order: int
    fn: Callable[[Simulation], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    ready: asyncio.Future[Any] | None = field(compare=False)
