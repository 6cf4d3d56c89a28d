"""Shift calendars in plant-local time (pytz, DST-correct) and the pools following them.

A calendar gives a production factor at every instant: the capacity of the shift in force
(the largest, if shifts overlap), times the weekend factor on Saturday/Sunday or the holiday
factor on a holiday (the day a shift starts decides).  Outside every shift the factor is 0.
Each pool then lets ``round(factor × machines)`` machines work (at least one if the factor
is above 0); the others finish their cycle and go off shift.

Local wall times that do not exist (spring forward) move forward by the gap; ambiguous ones
(fall back) take their first occurrence.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

import pytz

from simulator.config.plant import WEEKDAYS, ShiftCalendar
from simulator.model.events import handler

if TYPE_CHECKING:
    from simulator.model.simulation import Simulation


def local_instant(tz: dt.tzinfo, day: dt.date, clock: str) -> dt.datetime:
    """The UTC instant of wall time ``clock`` (HH:MM) on ``day`` in ``tz``."""
    hour, minute = (int(x) for x in clock.split(":"))
    naive = dt.datetime.combine(day, dt.time(hour, minute))
    localize = tz.localize  # type: ignore[attr-defined]
    try:
        aware = localize(naive, is_dst=None)
    except pytz.AmbiguousTimeError:
        aware = localize(naive, is_dst=True)
    except pytz.NonExistentTimeError:
        aware = tz.normalize(localize(naive, is_dst=False))  # type: ignore[attr-defined]
    instant: dt.datetime = aware.astimezone(dt.UTC)
    return instant


class CalendarClock:
    """Answers "which factor now, and when does it change" in simulated seconds."""

    def __init__(self, calendar: ShiftCalendar, timezone: str, start: dt.datetime) -> None:
        self.calendar = calendar
        self.tz = pytz.timezone(timezone)
        self.start = start
        self.days = {WEEKDAYS.index(d) for d in calendar.days}
        self.holidays = set(calendar.holidays)

    def _sim(self, instant: dt.datetime) -> float:
        return (instant - self.start).total_seconds()

    def _intervals(self, day: dt.date) -> list[tuple[float, float, float]]:
        """(start, end, factor) of the shifts starting on local ``day``, in sim seconds."""
        if day.weekday() not in self.days:
            return []
        if day in self.holidays:
            day_factor = self.calendar.holiday_factor
        elif day.weekday() >= 5:
            day_factor = self.calendar.weekend_factor
        else:
            day_factor = 1.0
        out = []
        for shift in self.calendar.shifts:
            begin = local_instant(self.tz, day, shift.start)
            end_day = day if shift.end > shift.start else day + dt.timedelta(days=1)
            end = local_instant(self.tz, end_day, shift.end)
            out.append((self._sim(begin), self._sim(end), shift.capacity * day_factor))
        return out

    def _local_day(self, sim_time: float) -> dt.date:
        instant = self.start + dt.timedelta(seconds=sim_time)
        return instant.astimezone(self.tz).date()

    def factor_and_next_change(self, sim_time: float) -> tuple[float, float]:
        """The factor in force at ``sim_time`` and the next sim time it may change."""
        today = self._local_day(sim_time)
        factor = 0.0
        boundaries: list[float] = []
        for offset in (-1, 0, 1, 2):
            for begin, end, f in self._intervals(today + dt.timedelta(days=offset)):
                if begin <= sim_time < end:
                    factor = max(factor, f)
                boundaries.extend(b for b in (begin, end) if b > sim_time)
        upcoming = min(boundaries, default=math.inf)
        if upcoming == math.inf:  # no shift in the next days: look again tomorrow
            upcoming = sim_time + 86400.0
        return factor, upcoming


def machines_allowed(factor: float, machines: int) -> int:
    if factor <= 0.0:
        return 0
    return max(1, min(machines, math.floor(factor * machines + 0.5)))


@handler("plant.shift_change")
def shift_change(sim: Simulation, location: str) -> None:
    """Set every pool's working-machine limit for the shift in force, and come back at the next
    boundary (continuous-duty machines follow the calendar on their own, see
    ``simulator.model.utilities``)."""
    env = sim.env
    clock = sim.calendar_clocks[location]
    factor, change = clock.factor_and_next_change(env.now)
    sim.shift_factor[location] = factor
    for pool in sim.plant.pools_at(location):
        if pool.machine_type not in sim.continuous_types:
            pool.set_limit(machines_allowed(factor, len(pool.machines)))
    env.after(max(change - env.now, 1e-9), shift_change, sim, location)
