"""The pacing driver: speed, limits, injection between steps, backpressure, pause and lag.

A manual clock makes paced runs instant: waiting jumps the clock to the deadline.
"""

from __future__ import annotations

import asyncio

import pytest

from simulator.model.order import Order
from simulator.model.records import ListSink, NullSink
from simulator.model.simulation import Simulation
from simulator.runtime.clock import ManualClock
from simulator.runtime.driver import Driver, StopReason
from simulator.runtime.outbox import Outbox

from harness.service import wait_for
from plants import plant


def quiet_plant(**sections):  # type: ignore[no-untyped-def]
    return plant(locations={"A": {"timezone": "UTC", "machines": {"milling": 2}}}, **sections)


async def test_paced_run_maps_sim_time_to_wall_time() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    sim.start_arrivals(limit=50)
    clock = ManualClock()
    driver = Driver(sim, speed=60.0, clock=clock)
    reason = await driver.run(until_sim_s=3600)
    assert reason is StopReason.UNTIL_SIM
    assert sim.now == 3600
    assert clock.now() == pytest.approx(60.0, abs=0.3)
    assert driver.max_lag_s == 0.0


async def test_max_speed_honours_max_events_and_wall_timeout() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    sim.start_arrivals()
    driver = Driver(sim, speed=None, slice_events=100)
    assert await driver.run(max_events=250) is StopReason.MAX_EVENTS
    assert driver.events == 250
    clock = ManualClock()
    idle = Driver(Simulation(quiet_plant(), NullSink()), speed=None, clock=clock)
    assert await idle.run(wall_timeout_s=2.0) is StopReason.WALL_TIMEOUT
    assert clock.now() >= 2.0


async def test_until_predicate_stops_exactly_when_true() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    sim.start_arrivals(limit=30)
    driver = Driver(sim, speed=None)
    reason = await driver.run(until=lambda: sim.stats.completed >= 30)
    assert reason is StopReason.CONDITION
    assert sim.stats.completed == 30
    assert sim.now == sim.stats.last_event_time


async def test_lot_injected_while_paced_enters_at_the_wall_mapped_sim_time() -> None:
    sink = ListSink()
    sim = Simulation(quiet_plant(), sink)
    clock = ManualClock()
    driver = Driver(sim, speed=10.0, clock=clock, max_wait_s=0.25)

    async def inject_later() -> float:
        while clock.now() < 30.0:  # noqa: ASYNC110 - polls a manual clock that only the driver moves
            await asyncio.sleep(0)
        lot = await driver.inject(Order("L1", "c", 5, "A", "alta"))
        return lot.arrived_at

    injector = asyncio.create_task(inject_later())
    await driver.run(until=lambda: sim.stats.completed == 1, wall_timeout_s=1000)
    arrived = await injector
    assert 300.0 <= arrived <= 303.0  # 30 wall seconds x speed 10
    assert sim.stats.completed == 1


async def test_injected_command_errors_reach_the_caller() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    driver = Driver(sim, speed=None)
    future = driver.inject(Order("L1", "c", 5, "Nowhere", "alta"))
    await driver.run(max_events=1, exit_when_idle=True)
    with pytest.raises(Exception, match="unknown location"):
        future.result()


async def test_full_outbox_pauses_simulated_time_and_loses_nothing() -> None:
    outbox = Outbox(capacity=50)
    sim = Simulation(quiet_plant(), outbox)
    sim.start_arrivals(limit=200)
    clock = ManualClock()
    driver = Driver(sim, speed=None, clock=clock, outbox=outbox)
    reason = await driver.run(until=lambda: sim.stats.completed == 200, wall_timeout_s=5.0)
    assert reason is StopReason.WALL_TIMEOUT  # nobody drains: the simulation waits
    assert driver.stalled_on_outbox > 0
    assert 50 <= len(outbox) < 50 + 20  # at most one step's records beyond capacity
    stalled_at = sim.now

    received: list[object] = []

    async def drain() -> None:
        while batch := await outbox.get_batch(7):
            received.extend(batch)

    consumer = asyncio.create_task(drain())
    reason = await driver.run(until=lambda: sim.stats.completed == 200)
    outbox.close()
    await consumer
    assert reason is StopReason.CONDITION
    assert sim.now > stalled_at
    assert len(received) == outbox.total
    assert [r.seq for r in received] == list(range(1, outbox.total + 1))  # type: ignore[attr-defined]


async def test_pause_freezes_and_resume_reanchors_without_catch_up() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    sim.start_arrivals()
    clock = ManualClock()
    driver = Driver(sim, speed=100.0, clock=clock)
    await driver.run(until_sim_s=1000)
    driver.pause()
    await driver.run(wall_timeout_s=50.0)
    assert sim.now == 1000  # paused for 50 wall seconds: no simulated time passed
    driver.resume()
    before = clock.now()
    await driver.run(until_sim_s=2000)
    assert clock.now() - before == pytest.approx(10.0, abs=0.3)  # 1000 sim s at speed 100
    assert driver.max_lag_s == 0.0


async def test_speed_change_takes_effect_and_lag_is_reported() -> None:
    sim = Simulation(quiet_plant(arrivals={"rate_per_hour": 3600, "process": "fixed"}), NullSink())
    sim.start_arrivals()
    clock = ManualClock()
    driver = Driver(sim, speed=10.0, clock=clock)
    await driver.run(until_sim_s=100)
    driver.set_speed(1000.0)
    before = clock.now()
    await driver.run(until_sim_s=10_100)
    assert clock.now() - before == pytest.approx(10.0, abs=0.3)
    # the event loop was held up for 5 wall seconds: the driver is late and says so
    driver.call(lambda _: clock.advance(5.0))
    await driver.run(until_sim_s=20_000)
    assert driver.max_lag_s == pytest.approx(5.0, abs=0.01)  # events every sim second
    for bad in (0, -1, 1e-4, 1e7, 1e308):
        with pytest.raises(ValueError, match=r"speed must be 0\.001\.\.1e\+06"):
            driver.set_speed(bad)


async def test_stop_ends_the_run_at_a_step_boundary() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    sim.start_arrivals()
    driver = Driver(sim, speed=None, slice_events=10)

    async def stop_soon() -> None:
        await asyncio.sleep(0)
        driver.stop()

    stopper = asyncio.create_task(stop_soon())
    assert await driver.run() is StopReason.STOPPED
    await stopper


async def test_a_run_stops_at_the_end_of_the_calendar_instead_of_overflowing_timestamps() -> None:
    # a processing time of 10^12 s (31,700 years) from a start in the year 8999: the lot's stage would
    # end after the year 9999, which no timestamp can show
    config = quiet_plant(simulation={"start": "8999-06-01T00:00:00Z"},
                         route=[{"name": "mill", "machine_type": "milling",
                                 "processing_time": {"distribution": "constant", "value": 1e12}}])
    sim = Simulation(config, ListSink())
    sim.admit(Order("L-1", "c", 1, "A", "normale"))
    for speed in (None, 1_000_000.0):
        driver = Driver(sim, speed=speed, clock=ManualClock())
        assert await driver.run() is StopReason.CALENDAR_END
        assert sim.now == sim.calendar_end_s
        assert sim.calendar_time().year == 9999  # 9999-01-01: every timestamp up to here prints
    assert await driver.run(until_sim_s=sim.calendar_end_s + 10) is StopReason.CALENDAR_END


async def test_an_injection_while_behind_schedule_does_at_most_one_slice_of_catch_up() -> None:
    # samples every second on every machine at the highest speed: a wall second holds a million
    # simulated seconds of work; an injection must not try to do it all in one turn of the loop
    config = quiet_plant(machine_types={"milling": {"sample_interval_s": 1}})
    outbox = Outbox(capacity=1_000_000)
    sim = Simulation(config, outbox)
    clock = ManualClock()
    driver = Driver(sim, speed=1_000_000.0, clock=clock, outbox=outbox, slice_events=100)
    entered: list[tuple[float, int]] = []
    held_up: list[int] = []

    def hold_up_the_loop(_: Simulation) -> None:  # the event loop was busy for a wall second
        clock.advance(1.0)
        held_up.append(driver.events)
        asyncio.get_running_loop().call_soon(driver.call, lambda s: entered.append((s.now, driver.events)))

    driver.call(hold_up_the_loop)
    assert await driver.run(until=lambda: bool(entered)) is StopReason.CONDITION
    (entered_at, events), before = entered[0], held_up[0]
    assert events - before <= 2 * 100  # the loop's own slice, then at most one slice of catch-up before the call
    assert entered_at < 1_000  # it entered behind schedule, at the current instant
    assert driver.lag_s > 0.9  # and the driver says it is behind


async def test_the_catch_up_before_an_injection_stops_at_a_full_outbox() -> None:
    config = quiet_plant(machine_types={"milling": {"sample_interval_s": 1}})
    outbox = Outbox(capacity=50)  # nobody drains it here
    sim = Simulation(config, outbox)
    clock = ManualClock()
    driver = Driver(sim, speed=1_000_000.0, clock=clock, outbox=outbox, slice_events=10_000)
    clock.advance(1.0)
    applied = driver.call(lambda s: s.now)
    assert await driver.run(wall_timeout_s=1.0) is StopReason.WALL_TIMEOUT  # held by the full outbox
    assert applied.done()  # the call was applied all the same
    assert outbox.full
    assert len(outbox) <= 50 + 2  # a step adds a record or two: the catch-up stopped when it was full


async def test_a_scheduled_call_applies_at_its_instant_once_ready_and_time_holds_there_until_then() -> None:
    sim = Simulation(quiet_plant(arrivals={"rate_per_hour": 3600, "process": "fixed"}), NullSink())
    sim.start_arrivals()
    clock = ManualClock()
    driver = Driver(sim, speed=None, clock=clock)
    await driver.run(until_sim_s=100)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[tuple[float, float]] = []
    applied = driver.schedule(150.0, lambda s: seen.append((s.now, s.env.peek())), ready)
    assert await driver.run(until_sim_s=1_000, wall_timeout_s=5.0) is StopReason.WALL_TIMEOUT
    assert sim.now <= 150.0  # held at the call's instant while it is not ready
    assert not applied.done()
    ready.set_result(None)
    assert await driver.run(until_sim_s=1_000) is StopReason.UNTIL_SIM
    assert applied.done()
    assert seen[0][0] == 150.0  # at its instant ...
    assert seen[0][1] > 150.0  # ... after every event due at or before it


async def test_a_scheduled_call_whose_readiness_fails_does_not_run() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    driver = Driver(sim, speed=None, clock=ManualClock())
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ready.set_exception(RuntimeError("refused"))
    applied = driver.schedule(0.0, lambda s: pytest.fail("must not run"), ready)
    await driver.run(until_sim_s=10)
    with pytest.raises(RuntimeError, match="refused"):
        await applied


async def test_a_call_scheduled_now_applies_while_paused() -> None:
    sim = Simulation(quiet_plant(arrivals={"rate_per_hour": 3600, "process": "fixed"}), NullSink())
    sim.start_arrivals()
    clock = ManualClock()
    driver = Driver(sim, speed=60.0, clock=clock)
    await driver.run(until_sim_s=100)
    driver.pause()
    applied = driver.schedule(driver.stamp(), lambda s: s.now)
    await driver.run(wall_timeout_s=1.0)
    assert await applied == 100.0  # paused: simulated time stood still, the input entered all the same


async def test_an_idle_plants_simulated_time_follows_the_wall_clock_in_paced_mode() -> None:
    """No event is due for hours: the clock still moves with the wall clock (health shows it), it
    does not stand at 0 and jump when the next event comes."""
    sim = Simulation(quiet_plant(), NullSink())  # no arrivals, no samples: nothing is ever due
    clock = ManualClock()
    driver = Driver(sim, speed=60.0, clock=clock, max_wait_s=0.25)
    seen: list[tuple[float, float]] = []

    def watch() -> bool:
        seen.append((clock.now(), sim.now))
        return clock.now() >= 12.0

    await driver.run(until=watch, wall_timeout_s=100)
    assert sim.now == pytest.approx(12.0 * 60.0, abs=0.25 * 60.0)
    assert len({round(t, 1) for _, t in seen}) > 20  # many distinct instants, not one jump
    assert all(t <= wall * 60.0 + 1e-6 for wall, t in seen)  # never ahead of the wall clock


async def test_simulated_time_does_not_pass_the_lease_and_says_so_while_it_waits() -> None:
    sim = Simulation(quiet_plant(), NullSink())
    sim.start_arrivals(limit=50)
    driver = Driver(sim, speed=None)
    driver.set_lease(600.0, 300.0)
    run = asyncio.create_task(driver.run())
    await asyncio.wait_for(driver.lease_wanted.wait(), 10)  # asked for the next lease halfway
    await wait_for(lambda: "journal lease" in driver.held, 10, "the driver held at the lease")
    assert sim.now <= 600.0 < sim.env.peek()
    driver.set_lease(1200.0, 900.0)  # the next lease: time moves on, up to it
    await wait_for(lambda: sim.env.peek() > 1200.0, 10, "the driver at the next lease")
    assert sim.now <= 1200.0 and "journal lease" in driver.held
    driver.stop()
    await run
