"""The outage switch of a delivery target (:mod:`simulator.adapters.delivery.outage`): down on
command (until ended, or for a while) and on schedule; counters and /health; ``wait_clear`` wakes
its waiters as soon as the link is up."""

from __future__ import annotations

import asyncio
import time

import pytest

from simulator.adapters.delivery.outage import OutageSwitch
from simulator.asyncio_waits import wait_for
from simulator.config.delivery import ScheduledOutage

WALL0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    """A monotonic clock moved by hand, and the wall clock that goes with it."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.start = t

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL0 + (self.t - self.start)


def switch(clock: Clock, *schedule: ScheduledOutage) -> OutageSwitch:
    return OutageSwitch(schedule, clock=clock, wall=clock.wall)


def outage(after_s: float, duration_s: float, every_s: float | None = None) -> ScheduledOutage:
    return ScheduledOutage(after_s=after_s, duration_s=duration_s, every_s=every_s)


def test_a_command_holds_the_link_down_until_it_is_ended() -> None:
    clock = Clock()
    link = switch(clock)
    assert not link.active and link.reason is None and link.next_change() is None and link.since is None
    link.begin()
    assert link.active and link.reason == "command" and link.outages == 1
    assert link.since == WALL0 and link.until is None and link.next_change() is None
    clock.t += 5
    assert link.outage_seconds == 5
    assert link.end() is True
    assert not link.active and link.end() is False
    clock.t += 10
    assert link.outage_seconds == 5 and link.outages == 1


def test_a_command_with_a_duration_ends_by_itself_and_counts_only_its_duration() -> None:
    clock = Clock()
    link = switch(clock)
    link.begin(duration_s=30)
    assert link.next_change() == clock.t + 30 and link.until == WALL0 + 30
    clock.t += 29.9
    assert link.active
    clock.t += 100  # nobody looked when it ended
    assert not link.active and link.outage_seconds == pytest.approx(30)
    link.begin(duration_s=5)
    link.begin(duration_s=1)  # a new command replaces the one before
    assert link.next_change() == clock.t + 1 and link.outages == 2


@pytest.mark.parametrize("duration", [0, -1, float("nan"), float("inf")])
def test_a_command_refuses_a_duration_that_is_not_a_positive_number(duration: float) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        switch(Clock()).begin(duration)


def test_a_periodic_schedule_counts_from_the_start() -> None:
    clock = Clock()
    start = clock.t
    link = switch(clock, outage(after_s=10, duration_s=5, every_s=30))
    expected = {0: False, 9.9: False, 10: True, 14.9: True, 15: False, 39.9: False, 40: True, 45: False, 70: True}
    for at, active in expected.items():
        clock.t = start + at
        assert link.active is active, at
        if at == 10:
            assert link.next_change() == start + 15 and link.reason == "schedule" and link.until == WALL0 + 15
        if at == 15:
            assert link.next_change() == start + 40 and link.until is None and link.reason is None


def test_counters_follow_every_outage_even_unobserved() -> None:
    clock = Clock()
    start = clock.t
    link = switch(clock, outage(after_s=10, duration_s=5, every_s=30))
    clock.t = start + 102  # outages at 10, 40, 70 and the one from 100 on
    assert link.outages == 4 and link.outage_seconds == pytest.approx(17)
    assert link.since == WALL0 + 100


def test_a_schedule_from_zero_is_down_at_once_and_a_one_off_ends_for_good() -> None:
    clock = Clock()
    link = switch(clock, outage(after_s=0, duration_s=2))
    assert link.active and link.outages == 1 and link.reason == "schedule"
    clock.t += 2
    assert not link.active and link.next_change() is None


def test_a_command_over_a_scheduled_outage_is_one_outage_and_ending_it_leaves_the_schedule() -> None:
    clock = Clock()
    start = clock.t
    link = switch(clock, outage(after_s=10, duration_s=10))
    clock.t = start + 12
    link.begin()
    assert link.reason == "command" and link.outages == 1
    link.end()
    assert link.active and link.reason == "schedule" and link.next_change() == start + 20
    link.begin(duration_s=20)  # outlasts the scheduled one
    assert link.next_change() == start + 32
    clock.t = start + 25
    assert link.reason == "command"
    clock.t = start + 32
    assert not link.active and link.outages == 1 and link.outage_seconds == pytest.approx(22)


def test_overlapping_scheduled_outages_are_one() -> None:
    clock = Clock()
    start = clock.t
    link = switch(clock, outage(after_s=10, duration_s=10), outage(after_s=15, duration_s=10))
    assert link.next_change() == start + 10
    clock.t = start + 10
    assert link.next_change() == start + 25
    clock.t = start + 30
    assert link.outages == 1 and link.outage_seconds == pytest.approx(15)


def test_a_new_schedule_counts_from_the_change_and_start_restarts_it() -> None:
    clock = Clock()
    start = clock.t
    link = switch(clock, outage(after_s=0, duration_s=100))
    clock.t = start + 50
    link.set_schedule([outage(after_s=5, duration_s=5)])
    assert not link.active and link.next_change() == start + 55 and link.outage_seconds == pytest.approx(50)
    clock.t = start + 57
    assert link.active
    link.start()
    assert not link.active and link.next_change() == start + 62


def test_health_tells_the_state_in_utc_text_and_the_schedule() -> None:
    clock = Clock()
    link = switch(clock, outage(after_s=60, duration_s=30, every_s=3600))
    assert link.health() == {"active": False, "reason": None, "since": None, "until": None, "outages": 0,
                             "outage_seconds": 0.0,
                             "schedule": [{"after_s": 60.0, "duration_s": 30.0, "every_s": 3600.0}]}
    clock.t += 1.5
    link.begin(duration_s=90)
    clock.t += 0.25
    health = link.health()
    assert health["active"] is True and health["reason"] == "command"
    assert health["since"] == "2026-01-01T00:00:01.500Z" and health["until"] == "2026-01-01T00:01:31.500Z"
    assert health["outages"] == 1 and health["outage_seconds"] == 0.25


async def test_wait_clear_returns_at_once_when_the_link_is_up() -> None:
    await wait_for(OutageSwitch().wait_clear(), 1)


async def test_end_wakes_every_waiter_at_once() -> None:
    link = OutageSwitch()
    link.begin()
    waiters = [asyncio.create_task(link.wait_clear()) for _ in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)  # let them reach their wait
    assert not any(w.done() for w in waiters)
    link.end()
    await wait_for(asyncio.gather(*waiters), 5)


async def test_a_commanded_duration_running_out_wakes_the_waiters() -> None:
    link = OutageSwitch()
    began = time.monotonic()
    link.begin(duration_s=0.05)
    await wait_for(asyncio.gather(link.wait_clear(), link.wait_clear()), 5)
    assert time.monotonic() - began >= 0.05 and not link.active
    assert 0.05 <= link.outage_seconds < 5


async def test_ending_the_command_does_not_wake_waiters_while_a_scheduled_outage_goes_on() -> None:
    link = OutageSwitch([outage(after_s=0, duration_s=0.2)])
    began = time.monotonic()
    link.begin()
    waiter = asyncio.create_task(link.wait_clear())
    for _ in range(5):
        await asyncio.sleep(0)
    link.end()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done() and link.reason == "schedule"
    await wait_for(waiter, 5)
    assert time.monotonic() - began >= 0.2 and link.outages == 1


async def test_a_cancelled_waiter_leaves_the_others_waiting_and_woken() -> None:
    link = OutageSwitch()
    link.begin(duration_s=60)
    cancelled = asyncio.create_task(link.wait_clear())
    waiting = asyncio.create_task(link.wait_clear())
    for _ in range(5):
        await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not waiting.done()
    link.end()
    await wait_for(waiting, 5)
    link.begin(duration_s=0.05)  # the switch still wakes new waiters by time
    await wait_for(link.wait_clear(), 5)
