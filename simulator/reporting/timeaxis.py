"""Simulated time as the HTML reports show it.

An instant is "day N HH:MM" counted from the run's start: day 1 00:00 is simulated time 0, day 2 00:00 is
24 h later (seconds are shown only when an instant is not a whole minute).  Time axes count hours for runs up
to two days and days beyond, with ticks at whole days ("day 1", "day 8", …) so that an axis label and a
tooltip name the same instant the same way.  The calendar instant of day 1 00:00 (``start_utc``) is given in
the axis title.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY = 86400.0
HOUR = 3600.0


def _whole_seconds(t: float) -> int:
    return math.floor(t + 0.5)


def clock(t: float) -> str:
    """``t`` simulated seconds as "day N HH:MM" (HH:MM:SS when not a whole minute)."""
    s = _whole_seconds(t)
    day, rest = divmod(s, 86400)
    hh, rest = divmod(rest, 3600)
    mm, ss = divmod(rest, 60)
    return f"day {day + 1} {hh:02d}:{mm:02d}" + (f":{ss:02d}" if ss else "")


def clock_span(t0: float, t1: float) -> str:
    """"day 3 14:05 – 14:41", or "day 3 23:50 – day 4 00:26" across midnight."""
    first, last = clock(t0), clock(t1)
    same_day = _whole_seconds(t0) // 86400 == _whole_seconds(t1) // 86400
    return f"{first} – {last.split(' ', 2)[2] if same_day else last}"


@dataclass(frozen=True, slots=True)
class TimeAxis:
    start: float
    end: float
    ticks: tuple[tuple[float, str], ...]
    title: str
    unit: str  # "day", "h", "min" or "s"


_DAY_STEPS = (1, 2, 7, 14, 28, 56, 91, 182, 364, 728)
_HOUR_STEPS = (1, 2, 3, 4, 6, 12)
_MINUTE_STEPS = (1, 2, 5, 10, 15, 20, 30, 60)
_SECOND_STEPS = (1, 2, 5, 10, 15, 20, 30, 60)


def _step(span: float, unit: float, steps: tuple[int, ...], max_ticks: int) -> float:
    return next((s * unit for s in steps if span / (s * unit) <= max_ticks), steps[-1] * unit)


def time_axis(start: float, end: float, *, start_utc: str | None = None, max_ticks: int = 6) -> TimeAxis:
    """An axis over ``start``..``end`` simulated seconds: days beyond two days, hours beyond two hours,
    minutes (or seconds) below."""
    end = end if end > start else start + 1.0
    span = end - start
    origin = f"; day 1 00:00 = {_calendar(start_utc)}" if start_utc else ""
    if span > 2 * DAY:
        step = _step(span, DAY, _DAY_STEPS, max_ticks)
        ticks = [(t, f"day {int(t // DAY) + 1}") for t in _multiples(start, end, step)]
        return TimeAxis(start, end, tuple(ticks), f"simulated time (days{origin})", "day")
    if span > 2 * HOUR:
        step = _step(span, HOUR, _HOUR_STEPS, max_ticks)
        ticks = [(t, f"{t / HOUR:g} h") for t in _multiples(start, end, step)]
        return TimeAxis(start, end, tuple(ticks), f"simulated time (hours since the start{origin})", "h")
    if span > 120:
        step = _step(span, 60.0, _MINUTE_STEPS, max_ticks)
        ticks = [(t, f"{t / 60:g} min") for t in _multiples(start, end, step)]
        return TimeAxis(start, end, tuple(ticks), f"simulated time (minutes since the start{origin})", "min")
    step = _step(span, 1.0, _SECOND_STEPS, max_ticks)
    ticks = [(t, f"{t:g} s") for t in _multiples(start, end, step)]
    return TimeAxis(start, end, tuple(ticks), f"simulated time (seconds since the start{origin})", "s")


def _multiples(start: float, end: float, step: float) -> list[float]:
    first = math.ceil(start / step - 1e-9)
    last = math.floor(end / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def _calendar(start_utc: str) -> str:
    """"2025-06-25T06:00:00Z" as "2025-06-25 06:00 UTC"."""
    text = start_utc.replace("T", " ").removesuffix("Z").removesuffix("+00:00")
    if text.endswith(":00") and text.count(":") == 2:
        text = text[:-3]
    return f"{text} UTC"
