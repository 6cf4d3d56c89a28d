"""The chart data of a finished run that its JSON report does not carry: the lead times of the completed lots
(for the histogram) and the machine Gantt, aggregated to cells of time.

JSON-able, so that a replicated study can carry its first replication's charts, and deterministic.  The
Gantt covers the simulation's whole timeline window (by default the whole run) in at most ``columns``
cells per machine; a cell is a round length of time (1 h, 2 h, 1 day, …), so that its tooltip names exact
clock times, and holds the share of its time the machine spent in each state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from simulator.model.machine import Machine, MachineState
from simulator.model.simulation import Simulation
from simulator.reporting.pools import ordered_machines

MAX_LEAD_TIMES = 50_000
CELL_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600,
                28800, 43200, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400)
_STATES = tuple(state.value for state in MachineState)


def thin(values: Sequence[float], limit: int = MAX_LEAD_TIMES) -> list[float]:
    """``values`` in ascending order, or ``limit`` evenly spaced order statistics of them (the smallest and
    the largest included): the same distribution in a bounded size, the same for the same input."""
    ordered = sorted(values)
    if len(ordered) <= limit:
        return ordered
    last = len(ordered) - 1
    return [ordered[(i * last) // (limit - 1)] for i in range(limit)]


def cell_length(span_s: float, columns: int) -> float:
    """The shortest round cell length that covers ``span_s`` in at most ``columns`` cells."""
    raw = span_s / max(1, columns)
    return float(next((s for s in CELL_STEPS_S if s >= raw), math.ceil(raw / 86400) * 86400))


def run_charts(sim: Simulation, *, columns: int = 600) -> dict[str, Any]:
    """``{lead_times: [...], lead_times_total, gantt: {...} | None}`` for the HTML report."""
    values = sim.stats.lead_time.values
    return {
        "lead_times": [round(v, 3) for v in thin(values)],
        "lead_times_total": len(values),
        "gantt": gantt(sim, columns),
    }


def gantt(sim: Simulation, columns: int) -> dict[str, Any] | None:
    """The Gantt of the timeline window (None without a timeline or when the run ended before it)."""
    timeline = sim.timeline
    if timeline is None:
        return None
    start, end = timeline.start, min(timeline.end, sim.now)
    if end <= start:
        return None
    cell = cell_length(end - start, columns)
    first = math.floor(start / cell)
    count = max(1, math.ceil(end / cell - 1e-9) - first)
    bounds = [(max(start, (first + i) * cell), min(end, (first + i + 1) * cell)) for i in range(count)]
    machines = []
    for machine in ordered_machines(sim):  # the report's order
        shares = [[0.0] * len(_STATES) for _ in range(count)]
        for t0, t1, state in _intervals(sim, machine, start, end):
            code = _STATES.index(state)
            i = min(count - 1, max(0, int(t0 // cell) - first))
            while t0 < t1 and i < count:
                seg_end = min(t1, bounds[i][1])
                shares[i][code] += seg_end - t0
                t0, i = seg_end, i + 1
        cells = []
        for (lo, hi), times in zip(bounds, shares, strict=True):
            span = hi - lo
            ranked = sorted(((t / span, s) for s, t in zip(_STATES, times, strict=True) if t > 0),
                            key=lambda item: (-item[0], _STATES.index(item[1])))
            cells.append([x for share, state in ranked for x in (state, round(share, 4))])
        machines.append({"id": machine.id, "location": machine.location, "type": machine.machine_type,
                         "cells": cells})
    return {"start_s": start, "end_s": round(end, 3), "cell_s": cell,
            "start_utc": sim.start.isoformat().replace("+00:00", "Z"), "machines": machines}


def _intervals(sim: Simulation, machine: Machine, start: float, end: float) -> list[tuple[float, float, str]]:
    """The machine's booked intervals in the window, and its current one when the run did not close it."""
    assert sim.timeline is not None
    booked = list(sim.timeline.intervals_of(machine.id))
    booked_to = booked[-1][1] if booked else start
    since = max(machine.since, booked_to, start)
    if since < end:
        booked.append((since, end, machine.state.value if isinstance(machine.state, MachineState)
                       else str(machine.state)))
    return booked
