"""An individual machine: state, counters, time accounting and maintenance history."""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from machines.base import MachineState, MachineType
from simulator.model.records import MachineCounters

if TYPE_CHECKING:
    from simulator.model.events import Entry
    from simulator.model.lot import Lot
    from simulator.model.production import Stoppage


class Timeline:
    """Machine state intervals inside a window of simulated time (for Gantt charts).

    Kept compactly, as a run of 100,000 lots books millions of intervals: per machine, the start and end
    of each interval in two ``array('d')`` and its state as one byte; an interval continuing the
    previous one in the same state (the next lot on a busy machine) extends it.  The lot of an interval
    is not kept (the charts aggregate the intervals into cells of time)."""

    __slots__ = ("end", "rows", "start")

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.rows: dict[str, tuple[array[float], array[float], bytearray]] = {}

    def add(self, machine_id: str, start: float, end: float, state: str, lot: str | None) -> None:
        if end > start and end > self.start and start < self.end:
            start, end = max(start, self.start), min(end, self.end)
            row = self.rows.get(machine_id)
            if row is None:
                row = self.rows[machine_id] = (array("d"), array("d"), bytearray())
            starts, ends, states = row
            code = _STATE_CODES[state]
            if states and states[-1] == code and ends[-1] == start:
                ends[-1] = end
            else:
                starts.append(start)
                ends.append(end)
                states.append(code)

    def intervals_of(self, machine_id: str) -> Iterator[tuple[float, float, str]]:
        """The machine's intervals in the window, in time order: (start, end, state)."""
        row = self.rows.get(machine_id)
        if row is not None:
            for start, end, code in zip(*row, strict=True):
                yield start, end, _STATE_NAMES[code]

    def __len__(self) -> int:
        return sum(len(states) for _, _, states in self.rows.values())


_STATE_NAMES: Final = tuple(state.value for state in MachineState)
_STATE_CODES: Final = {name: i for i, name in enumerate(_STATE_NAMES)}

__all__ = ["Machine", "MachineState", "Timeline"]

# Bindings of the states for the transitions and counters below, which run for every lot-stage pass and
# record: Python 3.11 finds an enum member through EnumType.__getattr__, about 0.15 µs more than a global.
_IDLE: Final = MachineState.IDLE
_RUNNING: Final = MachineState.RUNNING
_BLOCKED: Final = MachineState.BLOCKED
_MAINTENANCE: Final = MachineState.MAINTENANCE
_OFF_SHIFT: Final = MachineState.OFF_SHIFT


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
        "rng_anomalies",
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
                 last_maintenance: float, rng_anomalies: random.Random) -> None:
        self.id = machine_id
        self.location = location
        self.machine_type = machine_type
        self.model = model
        self.rng_blocks = rng_blocks
        self.rng_failures = rng_failures
        self.rng_signals = rng_signals
        # random anomalies (their onsets, types, severities and durations): a stream of their own, so that
        # turning them on changes no other draw
        self.rng_anomalies = rng_anomalies
        self.state = _IDLE
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

    # -- state transitions -----------------------------------------------------------------------
    # Every change of a machine's fields is one of these methods (tests/test_machine_behaviour.py checks
    # that no other module assigns them); each is one step of the machine's life and makes all of
    # that step's changes.

    def _enter(self, state: MachineState, now: float) -> None:
        """Close the interval of the current state at ``now`` and enter ``state``."""
        if self.timeline is not None:
            self.timeline.add(self.id, self.since, now, self.state, self.state_lot)
        self.state_time[self.state] += now - self.since
        self.state = state
        self.since = now
        self.state_lot = self.current_lot.code if self.current_lot is not None else None

    def close_interval(self, now: float) -> None:
        """Book the current state's interval up to ``now`` (and onto the timeline); the machine stays
        in its state, a new interval of it starting at ``now``."""
        self._enter(self.state, now)

    # lots, as the pool hands them out
    def assign(self, lot: Lot, now: float) -> None:
        """The pool gives the machine ``lot``: it runs from ``now``."""
        self.current_lot = lot
        self._enter(_RUNNING, now)

    def go_idle(self, now: float) -> None:
        """Free and waiting in its pool from ``now``, without a lot."""
        self.current_lot = None
        self._enter(_IDLE, now)

    def go_off_shift(self, now: float) -> None:
        """Off shift from ``now`` (the shift allows fewer machines, or a utility's shift factor is 0)."""
        self.current_lot = None
        self._enter(_OFF_SHIFT, now)

    def begin_work(self) -> None:
        """A processing segment of the current lot starts (a failure or a block may interrupt it)."""
        self.in_work = True

    def end_work(self) -> None:
        """The processing segment (or a utility's duty cycle) ends or is interrupted."""
        self.in_work = False

    def finish_cycle(self, pieces: int, good: bool, ideal_s: float) -> None:
        """Count a finished cycle of a lot of ``pieces`` (good: its test passed, or it had none) whose
        ideal cycle time is ``ideal_s``."""
        self.cycles += 1
        self.cycles_since_maintenance += 1
        self.pieces_since_maintenance += pieces
        self.ideal_time_s += ideal_s
        if good:
            self.good_cycles += 1
            self.good_pieces += pieces
        else:
            self.bad_pieces += pieces

    # blocks: per-cycle blocks, failures, block commands
    def block(self, reason: str, stoppage: Stoppage, now: float) -> None:
        """Blocked from ``now`` for ``reason``, down as ``stoppage`` says (why, until when, what ends it)."""
        self.block_reason = reason
        self._enter(_BLOCKED, now)
        self.stoppage = stoppage

    def repair(self, now: float, *, back_to_work: bool) -> None:
        """The stoppage is over at ``now``: the machine runs again (``back_to_work``: it resumes the work
        it was stopped in) or stays blocked until its pool takes it back."""
        self.stoppage = None
        self.block_reason = None
        if back_to_work:
            self._enter(_RUNNING, now)

    # planned maintenance
    def mark_maintenance_due(self, *, clock_waits: bool = False) -> None:
        """Planned maintenance is due; it starts when the machine is next free.  ``clock_waits``: the
        every-hours maintenance clock waits for that maintenance to end."""
        self.maintenance_due = True
        if clock_waits:
            self.clock_waiting = True

    def start_maintenance(self, now: float) -> None:
        """Planned maintenance starts at ``now`` (the machine is free: no lot)."""
        self.current_lot = None
        self.maintenance_due = False
        self._enter(_MAINTENANCE, now)
        self.maintenance_started = now

    def end_maintenance(self, now: float) -> bool:
        """Planned maintenance ends at ``now``: wear starts again from zero and the maintenance is
        logged.  True if the every-hours clock waited for it (the caller restarts the clock)."""
        self.last_maintenance = now
        self.cycles_since_maintenance = 0
        self.pieces_since_maintenance = 0
        self.maintenance_log.append((self.maintenance_started, now))
        clock_waited = self.clock_waiting
        self.clock_waiting = False
        return clock_waited

    # anomalies
    def inject_anomaly(self, anomaly: str, severity: float, until: float) -> None:
        """Show ``anomaly`` at ``severity`` until sim time ``until`` (inf: until cleared)."""
        self.anomaly = anomaly
        self.anomaly_severity = severity
        self.anomaly_until = until

    def clear_anomaly(self) -> None:
        """Show no anomaly from now on."""
        self.anomaly = None
        self.anomaly_severity = 1.0
        self.anomaly_until = math.inf

    # continuous-duty machines (simulator.model.utilities)
    def enter_duty(self, load: float, entry: Entry, now: float) -> None:
        """A utility takes up its duty at ``now`` driven at ``load`` (its shift factor: running, or off
        shift at 0); ``entry`` is its first step."""
        self.load = load
        self._enter(_RUNNING if load > 0 else _OFF_SHIFT, now)
        self.utility_entry = entry

    def follow_shift(self, factor: float, next_change: float) -> None:
        """A utility's shift factor from now on, and the sim time it next changes."""
        self.utility_factor = factor
        self.utility_change = next_change

    def next_duty_step(self) -> float:
        """A utility's next step begins (no step of it is pending): it is driven at its shift factor,
        which this returns."""
        self.utility_entry = None
        factor = self.load = self.utility_factor
        return factor

    def pause_duty(self, entry: Entry, now: float) -> None:
        """A utility is off shift (its shift factor is 0) until its step ``entry``."""
        if self.state != _OFF_SHIFT:
            self._enter(_OFF_SHIFT, now)
        self.utility_entry = entry

    def start_duty_cycle(self, ends: float, entry: Entry, now: float) -> None:
        """A utility runs a duty cycle from ``now`` to ``ends`` (its step ``entry``).  The cycle is
        booked as it starts, a good one whose ideal time is its planned length (so the ideal time
        never lags the running time: performance stays 1); an interrupted one gives back what it did
        not run (:meth:`interrupt_duty_cycle`)."""
        if self.state != _RUNNING:
            self._enter(_RUNNING, now)
        self.cycles += 1
        self.good_cycles += 1
        self.ideal_time_s += ends - now
        self.utility_ends = ends
        self.in_work = True
        self.utility_entry = entry

    def interrupt_duty_cycle(self, now: float) -> None:
        """A failure or a block command stops the duty cycle at ``now`` (the caller cancels its step)."""
        self.in_work = False
        self.ideal_time_s -= self.utility_ends - now
        self.utility_entry = None

    # set-up, warm starts and snapshots
    def attach_timeline(self, timeline: Timeline | None) -> None:
        """Record the machine's state intervals on ``timeline`` (None: on none)."""
        self.timeline = timeline

    def preset_cycles_since_maintenance(self, cycles: int) -> None:
        """The cycles the machine ran since its last maintenance before the run started."""
        self.cycles_since_maintenance = cycles

    def sample_every(self, interval: float) -> None:
        """Report a periodic sample every ``interval`` seconds."""
        self.sample_interval = interval

    def join_at(self, now: float) -> None:
        """A machine a warm start adds at ``now``: idle from then on, its maintenance history (drawn
        relative to the run's start) moved to that instant."""
        self.state = _IDLE
        self.since = now
        self.last_maintenance += now

    def restore(self, *, state: MachineState, since: float, state_time: dict[str, float], state_lot: str | None,
                current_lot: Lot | None, block_reason: str | None, in_work: bool, load: float | None,
                cycles: int, good_cycles: int, good_pieces: int, bad_pieces: int, ideal_time_s: float,
                anomaly: str | None, anomaly_severity: float, anomaly_until: float,
                cycles_since_maintenance: int, pieces_since_maintenance: int, last_maintenance: float,
                maintenance_due: bool, maintenance_started: float, maintenance_log: list[tuple[float, float]],
                clock_waiting: bool, sample_interval: float, utility_factor: float, utility_change: float,
                utility_ends: float, utility_entry: Entry | None, stoppage: Stoppage | None) -> None:
        """Put back the state a snapshot holds (:mod:`simulator.model.snapshot`; the random streams'
        states are set on the streams themselves)."""
        self.state = state
        self.since = since
        self.state_time = state_time
        self.state_lot = state_lot
        self.current_lot = current_lot
        self.block_reason = block_reason
        self.in_work = in_work
        self.load = load
        self.cycles = cycles
        self.good_cycles = good_cycles
        self.good_pieces = good_pieces
        self.bad_pieces = bad_pieces
        self.ideal_time_s = ideal_time_s
        self.anomaly = anomaly
        self.anomaly_severity = anomaly_severity
        self.anomaly_until = anomaly_until
        self.cycles_since_maintenance = cycles_since_maintenance
        self.pieces_since_maintenance = pieces_since_maintenance
        self.last_maintenance = last_maintenance
        self.maintenance_due = maintenance_due
        self.maintenance_started = maintenance_started
        self.maintenance_log = maintenance_log
        self.clock_waiting = clock_waiting
        self.sample_interval = sample_interval
        self.utility_factor = utility_factor
        self.utility_change = utility_change
        self.utility_ends = utility_ends
        self.utility_entry = utility_entry
        self.stoppage = stoppage

    # -- views ---------------------------------------------------------------------------------------
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
        off_shift = self.time_in(_OFF_SHIFT, now)
        return MachineCounters(
            cycles=self.cycles, good_cycles=self.good_cycles, good_pieces=self.good_pieces,
            bad_pieces=self.bad_pieces, running_s=self.time_in(_RUNNING, now),
            blocked_s=self.time_in(_BLOCKED, now),
            planned_s=now - off_shift - self.time_in(_MAINTENANCE, now), ideal_s=self.ideal_time_s,
        )

    def hours_since_maintenance(self, now: float) -> float:
        return max(0.0, now - self.last_maintenance) / 3600.0

    def __repr__(self) -> str:
        return f"Machine({self.id!r}, {self.state})"
