"""An individual machine: state, counters, time accounting and maintenance history."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from machines.base import MachineState, MachineType
from simulator.model.records import MachineCounters

if TYPE_CHECKING:
    from simulator.model.events import Entry
    from simulator.model.lot import Lot
    from simulator.model.production import Stoppage


class Timeline:
    """Machine state intervals inside a window of simulated time (for Gantt charts)."""

    __slots__ = ("end", "intervals", "start")

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.intervals: list[tuple[str, float, float, str, str | None]] = []

    def add(self, machine_id: str, start: float, end: float, state: str, lot: str | None) -> None:
        if end > start and end > self.start and start < self.end:
            self.intervals.append((machine_id, max(start, self.start), min(end, self.end), state, lot))

__all__ = ["Machine", "MachineState", "Timeline"]


class Machine:
    """One machine of a pool (e.g. ``Italia-fresa_cnc-02``)."""

    __slots__ = (
        "anomaly",
        "anomaly_severity",
        "anomaly_until",
        "bad_pieces",
        "block_reason",
        "clock_waiting",
        "current_lot",
        "cycles",
        "cycles_since_maintenance",
        "good_cycles",
        "good_pieces",
        "id",
        "ideal_time_s",
        "in_work",
        "last_maintenance",
        "load",
        "location",
        "machine_type",
        "maintenance_due",
        "maintenance_log",
        "maintenance_started",
        "model",
        "pieces_since_maintenance",
        "rng_blocks",
        "rng_failures",
        "rng_signals",
        "sample_interval",
        "since",
        "state",
        "state_lot",
        "state_time",
        "stoppage",
        "timeline",
        "utility_change",
        "utility_ends",
        "utility_entry",
        "utility_factor",
    )

    def __init__(self, machine_id: str, location: str, machine_type: str, model: MachineType,
                 rng_blocks: random.Random, rng_failures: random.Random, rng_signals: random.Random,
                 last_maintenance: float) -> None:
        self.id = machine_id
        self.location = location
        self.machine_type = machine_type
        self.model = model
        self.rng_blocks = rng_blocks
        self.rng_failures = rng_failures
        self.rng_signals = rng_signals
        self.state = MachineState.IDLE
        self.since = 0.0
        # seconds spent in each state before ``since``, keyed by the states' values: plain strings, so a snapshot
        # writes it as it is (orjson takes no str subclass as a key)
        self.state_time = {state.value: 0.0 for state in MachineState}
        self.current_lot: Lot | None = None
        self.block_reason: str | None = None
        self.stoppage: Stoppage | None = None  # why and until when a blocked machine is down
        self.cycles = 0
        self.good_cycles = 0
        self.good_pieces = 0
        self.bad_pieces = 0
        self.anomaly: str | None = None  # an injected anomaly (see MachineType.anomalies)
        self.anomaly_severity = 1.0
        self.anomaly_until = math.inf  # sim time the anomaly ends by itself
        self.ideal_time_s = 0.0  # sum of ideal cycle times of the cycles run
        self.cycles_since_maintenance = 0
        self.pieces_since_maintenance = 0
        self.last_maintenance = last_maintenance  # sim time, negative = before the run
        self.maintenance_due = False
        self.maintenance_log: list[tuple[float, float]] = []  # (start, end)
        self.in_work = False  # inside a processing segment (a failure may interrupt it)
        self.clock_waiting = False  # the every-hours maintenance clock waits for this maintenance to end
        self.maintenance_started = 0.0
        self.sample_interval = 0.0  # seconds between periodic samples (0: none)
        # a continuous-duty machine's shift factor, when it next changes, when its duty cycle ends and
        # the calendar entry of its next step (see simulator.model.utilities)
        self.utility_factor = 1.0
        self.utility_change = math.inf
        self.utility_ends = 0.0
        self.utility_entry: Entry | None = None
        self.state_lot: str | None = None  # lot being worked in the current state
        self.timeline: Timeline | None = None
        # how hard the machine is driven (0..1) when no lot decides it: a continuous-duty
        # machine's shift factor (see simulator.model.utilities); None = from the current lot
        self.load: float | None = None

    def set_state(self, state: MachineState, now: float) -> None:
        if self.timeline is not None:
            self.timeline.add(self.id, self.since, now, self.state, self.state_lot)
        self.state_time[self.state] += now - self.since
        self.state = state
        self.since = now
        self.state_lot = self.current_lot.code if self.current_lot is not None else None

    def time_in(self, state: MachineState, now: float) -> float:
        """Seconds spent in ``state`` up to ``now``."""
        extra = now - self.since if self.state == state else 0.0
        return self.state_time[state] + extra

    def active_anomaly(self, now: float) -> str | None:
        """The injected anomaly in force at ``now`` (None once its duration is over)."""
        if self.anomaly is not None and now >= self.anomaly_until:
            self.anomaly = None
            self.anomaly_until = math.inf
        return self.anomaly

    def counters(self, now: float) -> MachineCounters:
        off_shift = self.time_in(MachineState.OFF_SHIFT, now)
        return MachineCounters(
            cycles=self.cycles, good_cycles=self.good_cycles, good_pieces=self.good_pieces,
            bad_pieces=self.bad_pieces, running_s=self.time_in(MachineState.RUNNING, now),
            blocked_s=self.time_in(MachineState.BLOCKED, now),
            planned_s=now - off_shift - self.time_in(MachineState.MAINTENANCE, now), ideal_s=self.ideal_time_s,
        )

    def hours_since_maintenance(self, now: float) -> float:
        return max(0.0, now - self.last_maintenance) / 3600.0

    def __repr__(self) -> str:
        return f"Machine({self.id!r}, {self.state})"
