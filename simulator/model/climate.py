"""Outdoor temperature of a location through the year and the day, in plant-local time.

The seasonal offset is ``summer_offset_c`` from June to August and ``winter_offset_c`` from
December to February; in spring (March-May) and autumn (September-November) it moves linearly
from one to the other, so the curve is continuous.  On top of that the daily swing is a cosine
of amplitude ``daily_swing_c`` peaking at 15:00 local time (lowest at 03:00).  Local time comes
from pytz, so the peak stays at 15:00 across DST changes.  Pure function of simulated time: no
randomness, no clock.
"""

from __future__ import annotations

import datetime as dt
import math

import pytz

from simulator.config.plant import Climate

PEAK_HOUR = 15.0


def _season_start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year, month, 1)


def seasonal_offset(climate: Climate, local: dt.datetime) -> float:
    """The seasonal offset (°C) on the naive local date-time ``local``."""
    month = local.month
    if month in (6, 7, 8):
        return climate.summer_offset_c
    if month in (12, 1, 2):
        return climate.winter_offset_c
    if month in (3, 4, 5):  # spring: winter -> summer between 1 March and 1 June
        begin, end = _season_start(local.year, 3), _season_start(local.year, 6)
        frm, to = climate.winter_offset_c, climate.summer_offset_c
    else:  # autumn: summer -> winter between 1 September and 1 December
        begin, end = _season_start(local.year, 9), _season_start(local.year, 12)
        frm, to = climate.summer_offset_c, climate.winter_offset_c
    share = (local - begin).total_seconds() / (end - begin).total_seconds()
    return frm + (to - frm) * share


def daily_offset(climate: Climate, local: dt.datetime) -> float:
    """The daily swing (°C) at the naive local date-time ``local``: +swing at 15:00, -swing at 03:00."""
    hour = local.hour + local.minute / 60.0 + local.second / 3600.0
    return climate.daily_swing_c * math.cos(2.0 * math.pi * (hour - PEAK_HOUR) / 24.0)


class OutdoorClimate:
    """The outdoor temperature of one location at any simulated time."""

    __slots__ = ("climate", "start", "tz")

    def __init__(self, climate: Climate, timezone: str, start: dt.datetime) -> None:
        self.climate = climate
        self.tz = pytz.timezone(timezone)
        self.start = start

    def local_time(self, sim_time: float) -> dt.datetime:
        """The naive plant-local wall time of ``sim_time``."""
        instant = self.start + dt.timedelta(seconds=sim_time)
        return instant.astimezone(self.tz).replace(tzinfo=None)

    def temperature_c(self, sim_time: float) -> float:
        local = self.local_time(sim_time)
        climate = self.climate
        return climate.mean_outdoor_c + seasonal_offset(climate, local) + daily_offset(climate, local)
