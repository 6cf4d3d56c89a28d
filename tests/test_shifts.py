"""Shift calendars in plant-local time: DST-correct boundaries, capacity, weekends, holidays."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytz

from simulator.config.plant import ShiftCalendar
from simulator.model.order import Order
from simulator.model.records import ListSink, LotEvent
from simulator.model.shifts import CalendarClock, machines_allowed
from simulator.model.simulation import Simulation

from plants import plant

ROME = pytz.timezone("Europe/Rome")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_shift_start_follows_local_time_across_the_dst_change() -> None:
    calendar = ShiftCalendar.model_validate({"shifts": [{"name": "day", "start": "06:00", "end": "14:00"}]})
    start = utc("2025-03-28T00:00:00")  # Friday; Rome moves to summer time on Sunday 30 March
    clock = CalendarClock(calendar, "Europe/Rome", start)
    factor, first_change = clock.factor_and_next_change(0.0)
    assert factor == 0.0
    assert start + dt.timedelta(seconds=first_change) == utc("2025-03-28T05:00:00")  # 06:00 CET
    monday = (utc("2025-03-31T00:00:00") - start).total_seconds()
    _, change = clock.factor_and_next_change(monday)
    assert start + dt.timedelta(seconds=change) == utc("2025-03-31T04:00:00")  # 06:00 CEST
    factor, end = clock.factor_and_next_change(change)
    assert factor == 1.0
    assert start + dt.timedelta(seconds=end) == utc("2025-03-31T12:00:00")


def test_nonexistent_local_time_moves_forward_and_night_shift_spans_midnight() -> None:
    calendar = ShiftCalendar.model_validate({"shifts": [{"name": "night", "start": "02:30", "end": "22:00"}]})
    start = utc("2025-03-30T00:00:00")  # 02:30 does not exist in Rome that day
    clock = CalendarClock(calendar, "Europe/Rome", start)
    _, change = clock.factor_and_next_change(0.0)
    assert start + dt.timedelta(seconds=change) == utc("2025-03-30T01:30:00")  # = 03:30 CEST
    overnight = ShiftCalendar.model_validate({"shifts": [{"name": "n", "start": "22:00", "end": "06:00",
                                                          "capacity": 0.5}]})
    clock = CalendarClock(overnight, "UTC", utc("2025-06-02T23:00:00"))
    factor, change = clock.factor_and_next_change(0.0)
    assert factor == 0.5
    assert change == 7 * 3600  # ends 06:00 the next day


def test_machines_allowed_rounds_and_keeps_one_when_open() -> None:
    assert machines_allowed(0.0, 4) == 0
    assert machines_allowed(0.5, 4) == 2
    assert machines_allowed(0.1, 4) == 1
    assert machines_allowed(0.5, 1) == 1
    assert machines_allowed(1.0, 3) == 3


def day_shift_plant(**calendar: object):  # type: ignore[no-untyped-def]
    return plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "constant", "value": 1800}}],
        locations={"A": {"timezone": "Europe/Rome", "machines": {"milling": 4}, "shift_calendar": "day"}},
        shift_calendars={"day": {"shifts": [{"name": "d", "start": "08:00", "end": "16:00", "capacity": 0.5}],
                                 **calendar}},
        simulation={"start": "2025-06-20T00:00:00Z"},  # a Friday
    )


def test_no_new_work_off_shift_and_capacity_limits_concurrency() -> None:
    sink = ListSink()
    sim = Simulation(day_shift_plant(weekend_factor=0.0), sink)
    for i in range(40):
        sim.admit(Order(f"L{i:02d}", "c", 1, "A", "normale"))
    sim.env.run(until=6 * 86400)
    events = [r for r in sink.records if isinstance(r, LotEvent)]
    running: dict[str, int] = defaultdict(int)
    concurrent = 0
    peak = 0
    for e in events:
        local = sim.calendar_time(e.sim_time).astimezone(ROME)
        if e.event_type == "stage.started":
            assert dt.time(8, 0) <= local.time() < dt.time(16, 0), local
            assert local.weekday() < 5, f"started on a weekend: {local}"
            concurrent += 1
            peak = max(peak, concurrent)
            running[e.machine_id or ""] += 1
        elif e.event_type == "stage.completed":
            concurrent -= 1
    assert peak == 2  # capacity 0.5 of 4 machines
    assert sim.stats.completed == 40  # Fri 16 lots, Mon 16, Tue 8
    off = [m.time_in("off_shift", sim.now) for m in sim.plant.machines.values()]
    assert all(t > 3 * 86400 for t in off)


def test_holiday_factor_closes_the_plant() -> None:
    sink = ListSink()
    sim = Simulation(day_shift_plant(holidays=["2025-06-20"]), sink)
    sim.admit(Order("L1", "c", 1, "A", "normale"))
    sim.env.run(until=3 * 86400)
    started = next(r for r in sink.records if isinstance(r, LotEvent) and r.event_type == "stage.started")
    assert sim.calendar_time(started.sim_time).astimezone(ROME).date() == dt.date(2025, 6, 21)  # Saturday
