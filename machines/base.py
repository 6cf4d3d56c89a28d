"""The contract every machine type fulfils: from simulated state to signal values.

A machine type knows physics, not wire formats: it returns signal values keyed by the
semantic names in :data:`COMMON_SIGNALS` and its own ``signal_names``.  Formats in
``simulator.formats`` decide topics and field names.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Final

SignalValue = float | int | str | bool | None
Signals = dict[str, SignalValue]


class MachineState(StrEnum):
    """A machine's state as the model reports it (defined here so this package does not depend on
    the simulator).  Each member is the string of its value (``MachineState.RUNNING == "running"``),
    which records, wire formats and snapshots carry; iterating gives the states in this order."""

    IDLE = "idle"
    RUNNING = "running"
    BLOCKED = "blocked"
    MAINTENANCE = "maintenance"
    OFF_SHIFT = "off_shift"


# The signal code below compares a context's state several times per record.  Python 3.11 finds an enum
# member through EnumType.__getattr__, about 0.15 µs more than a module global, which adds up to a tenth
# of a record's signals: these module-private bindings keep those comparisons at a global's cost.
_IDLE: Final = MachineState.IDLE
_RUNNING: Final = MachineState.RUNNING
_BLOCKED: Final = MachineState.BLOCKED
_MAINTENANCE: Final = MachineState.MAINTENANCE
_OFF_SHIFT: Final = MachineState.OFF_SHIFT


# Signals every machine type reports (energy fields on every machine).
COMMON_SIGNALS: Final = (
    "power_kw",  # instantaneous active power
    "energy_kwh",  # energy drawn over the interval the record covers
    "voltage_v",
    "current_a",
    "power_factor",
)

NO_ALARM: Final = ""
# Anomalies every machine type shows (handled here, in MachineType.signals and power_kw), besides its own.
PLANT_WIDE_ANOMALIES: Final = ("bearing_fault", "energy_spike")

# Anomalies that are faults of the machine itself: it goes on working, but what it finishes while one
# is in force is bad (simulator/model/production.py) and formats that report faults report one.
FAULT_ANOMALIES: Final = frozenset({"bearing_fault"})
# States in which a machine is switched on, so a damaged bearing shows (heat, vibration).
_POWERED: Final = frozenset({_RUNNING, _IDLE, _BLOCKED})


@dataclass(frozen=True, slots=True)
class SignalContext:
    """What the model knows about a machine at the instant a record is made.

    ``interval_s`` is the span the record covers: the cycle time for a completed cycle,
    the sampling interval for a periodic sample.  Energy is integrated over it.
    """

    state: MachineState
    interval_s: float
    hours_since_maintenance: float
    pieces_since_maintenance: int
    load: float = 0.0  # 0..1, how hard the current job drives the machine
    quantity: int = 0  # pieces in the current lot (0 when idle)
    cycle_time_s: float | None = None
    block_reason: str | None = None
    test_outcome: str | None = None  # "pass" | "rework" | "scrap" on a test stage
    anomaly: str | None = None  # an injected anomaly type, see ``MachineType.anomalies``
    anomaly_severity: float = 1.0
    ambient_c: float = 22.0  # indoor temperature around the machine
    shift_factor: float = 1.0  # production factor of the current shift (0..1)
    outdoor_c: float | None = None  # outdoor temperature; None = the same as ambient_c
    progress: float | None = None  # how far the current job is (0..1) at a sample; None: no job

    @property
    def outdoor(self) -> float:
        """The outdoor temperature: ``outdoor_c``, or ``ambient_c`` when the location has no climate."""
        return self.ambient_c if self.outdoor_c is None else self.outdoor_c


class MachineType:
    """Base class of a machine type's signal model.

    Subclasses set the class attributes and implement :meth:`process_signals`.
    ``signals`` adds the common energy fields, so every machine carries them.
    """

    kind: ClassVar[str]  # registry name, e.g. "milling"
    label: ClassVar[str]  # human name, e.g. "CNC milling machine"
    signal_names: ClassVar[tuple[str, ...]]  # type-specific signal keys
    idle_power_kw: ClassVar[float]
    rated_power_kw: ClassVar[float]
    anomalies: ClassVar[tuple[str, ...]] = ()
    # temperatures a bearing fault heats (spindle, motor, oil …); never process or outdoor temperatures
    bearing_temps: ClassVar[tuple[str, ...]] = ()
    # signals whose value is a word (a phase, a load state), not a number: the words each one takes
    word_signals: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    nominal_voltage_v: ClassVar[float] = 400.0

    def signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        values = self.process_signals(ctx, rng)
        # every machine type, whenever it is switched on (its drives turn, or hold under load, even
        # between lots); a machine in maintenance or off shift is switched off and shows nothing
        if ctx.anomaly == "bearing_fault" and ctx.state in _POWERED:
            severity = ctx.anomaly_severity
            for key, value in values.items():
                if not isinstance(value, float):
                    continue
                if key in self.bearing_temps:
                    values[key] = round(value + severity * rng.uniform(15.0, 25.0), 2)
                elif key.startswith("vibration"):
                    values[key] = round(value + severity * rng.uniform(5.0, 10.0), 3)
        values.update(self.energy(ctx, rng))
        return values

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        raise NotImplementedError

    def alarm(self, ctx: SignalContext) -> str:
        """The alarm text a machine shows; empty when there is none."""
        if ctx.state == _BLOCKED:
            return f"BLOCK: {ctx.block_reason or 'unknown'}"
        if ctx.anomaly:
            return f"ANOMALY: {ctx.anomaly}"
        return NO_ALARM

    def power_kw(self, ctx: SignalContext, rng: random.Random) -> float:
        """Active power in the machine's state; subclasses refine for anomalies."""
        if ctx.state == _RUNNING:
            base = self.idle_power_kw + (self.rated_power_kw - self.idle_power_kw) * (0.55 + 0.45 * ctx.load)
        elif ctx.state in (_IDLE, _BLOCKED):
            base = self.idle_power_kw
        elif ctx.state == _MAINTENANCE:
            base = 0.15 * self.idle_power_kw
        else:  # off shift: standby
            base = 0.05 * self.idle_power_kw
        # a machine that is switched off draws no extra power
        if ctx.state in (_RUNNING, _IDLE, _BLOCKED):
            base *= self.anomaly_power_factor(ctx)
        if ctx.anomaly == "energy_spike" and ctx.state != _OFF_SHIFT:
            base *= 1.0 + ctx.anomaly_severity * rng.uniform(1.5, 3.0)
        return max(0.0, base * noise(rng, 0.03))

    def anomaly_power_factor(self, ctx: SignalContext) -> float:
        """Extra power drawn because of the type's own anomalies (1 = none)."""
        return 1.0

    def speed_percent(self, state: str, signals: Signals) -> float:
        """How hard the machine is driven, in % of its rated speed or capacity (0..100), read off its
        signals: 0 unless it runs; by default its power's share of the rated power.  Types with a
        speed or capacity signal of their own (a VFD's frequency, a compressor's flow, HVAC stages)
        use that instead."""
        if state != _RUNNING:
            return 0.0
        return share_percent(signals.get("power_kw"), self.rated_power_kw)

    def energy(self, ctx: SignalContext, rng: random.Random) -> Signals:
        power = self.power_kw(ctx, rng)
        if ctx.anomaly == "bearing_fault" and ctx.state == _RUNNING:  # friction of the damaged bearing
            power *= 1.0 + 0.1 * ctx.anomaly_severity
        pf = 0.0 if power <= 0 else min(0.99, 0.72 + 0.2 * min(1.0, power / self.rated_power_kw))
        voltage = self.nominal_voltage_v * noise(rng, 0.01)
        current = 0.0 if power <= 0 else power * 1000.0 / (math.sqrt(3) * voltage * pf)
        return {
            "power_kw": round(power, 3),
            "energy_kwh": round(power * ctx.interval_s / 3600.0, 4),
            "voltage_v": round(voltage, 1),
            "current_a": round(current, 2),
            "power_factor": round(pf, 3),
        }


def noise(rng: random.Random, relative: float) -> float:
    """A multiplicative noise factor around 1 with the given relative std."""
    return 1.0 + rng.gauss(0.0, relative)


def share_percent(value: SignalValue, full_scale: float) -> float:
    """``value`` as a percentage of ``full_scale``, within 0..100 (0 for a missing or non-numeric value)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * value / full_scale)), 1)


def working(ctx: SignalContext) -> bool:
    return ctx.state == _RUNNING


def heat(ctx: SignalContext, hot_c: float, idle_rise_c: float = 3.0) -> float:
    """A temperature that sits at ``hot_c`` while working, a little above ambient when idle or
    blocked (cooling down), at ambient otherwise."""
    if ctx.state == _RUNNING:
        return hot_c
    if ctx.state in (_IDLE, _BLOCKED):
        return ctx.ambient_c + idle_rise_c
    return ctx.ambient_c


def vibration(ctx: SignalContext, rng: random.Random, running_mm_s: float, full_wear_h: float = 500.0) -> float:
    """Vibration: near zero when stopped, higher with wear; a blocked machine rattles."""
    worn = 1.0 + 1.5 * wear(ctx, full_wear_h)
    if ctx.state == _RUNNING:
        value = running_mm_s * worn
    elif ctx.state == _BLOCKED:
        value = running_mm_s * worn * 1.8
    elif ctx.state == _IDLE:
        value = 0.1 * running_mm_s
    else:
        value = 0.02 * running_mm_s
    return round(max(0.0, value * noise(rng, 0.08)), 3)


def r2(value: float) -> float:
    return round(value, 2)


def wear(ctx: SignalContext, full_wear_h: float) -> float:
    """0 right after maintenance, rising towards 1 as ``full_wear_h`` hours pass."""
    return min(1.0, ctx.hours_since_maintenance / full_wear_h)
