"""Runtime control of the model: block and repair machines, inject and clear anomalies.

Every function here runs between two steps of the event calendar (the runtime calls it through
``Driver.call``), changes the model at the current simulated instant and returns a small
JSON-able view of the result.  A command that cannot apply raises :class:`CommandRejected`.
Nothing here schedules an event unless a command is given, so runs without commands are unchanged.

A block command on a working machine interrupts its lot like a time-based failure (the lot waits,
BLOCKED, and resumes its work after the repair); an idle machine leaves its pool until repaired.
A repair command ends any block early: a command block, a failure's repair or a per-cycle block.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from simulator.errors import CommandRejected
from simulator.limits import MAX_DURATION_S, MAX_SEVERITY, MAX_TEXT_CHARS, control_characters
from simulator.model.lot import LotState
from simulator.model.machine import Machine, MachineState
from simulator.model.production import COMMAND, end_stoppage, interrupt_lot, schedule_stoppage
from simulator.model.utilities import interrupt_utility

if TYPE_CHECKING:
    from simulator.model.simulation import Simulation

# Anomalies every machine type shows (see machines/base.py), besides its own ``anomalies``.
PLANT_WIDE_ANOMALIES = ("bearing_fault", "energy_spike")


def machine_of(sim: Simulation, machine_id: str) -> Machine:
    machine = sim.plant.machines.get(machine_id)
    if machine is None:
        raise CommandRejected("unknown_machine", f"no machine {machine_id!r}")
    return machine


def allowed_anomalies(machine: Machine) -> tuple[str, ...]:
    """The anomaly types ``machine`` can show: its type's own, then the plant-wide ones."""
    own = machine.model.anomalies
    return own + tuple(a for a in PLANT_WIDE_ANOMALIES if a not in own)


def _check_duration(duration_s: float | None) -> None:
    if duration_s is not None and not (math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
        raise CommandRejected("invalid_duration", f"duration_s must be more than 0 and at most {MAX_DURATION_S:.0f} "
                                                  f"simulated seconds (ten years; got {duration_s!r})")


def _until(sim: Simulation, duration_s: float | None) -> float:
    return math.inf if duration_s is None else sim.now + duration_s


def _time(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


# -- blocks ------------------------------------------------------------------------------------------
def block_machine(sim: Simulation, machine_id: str, reason: str = "manual",
                  duration_s: float | None = None) -> dict[str, Any]:
    """Block ``machine_id`` now; with ``duration_s`` the block ends by itself, else at a repair command."""
    machine = machine_of(sim, machine_id)
    _check_duration(duration_s)
    if not reason or len(reason) > MAX_TEXT_CHARS or control_characters(reason):
        raise CommandRejected("invalid_field", f"reason must be 1..{MAX_TEXT_CHARS} characters without control "
                                               f"characters")
    state = machine.state
    lot = machine.current_lot
    if state == MachineState.BLOCKED:
        cause = machine.stoppage.cause if machine.stoppage is not None else "block"
        raise CommandRejected("already_blocked",
                              f"machine {machine_id} is already blocked ({cause}: {machine.block_reason})")
    if state == MachineState.MAINTENANCE:
        raise CommandRejected("in_maintenance", f"machine {machine_id} is in planned maintenance")
    if state == MachineState.OFF_SHIFT:
        raise CommandRejected("off_shift", f"machine {machine_id} is off shift")
    if state == MachineState.RUNNING and not machine.in_work:  # (every running machine works: a lot or a duty cycle)
        raise CommandRejected("busy", f"machine {machine_id} is changing state; try again")
    stage = lot.stage if lot is not None else None
    working = state == MachineState.RUNNING
    if not working:
        pool = sim.plant.pool(machine.location, machine.machine_type)
        if machine not in pool.idle or not pool.take_idle(machine):
            raise CommandRejected("busy", f"machine {machine_id} is changing state; try again")
    stoppage = schedule_stoppage(sim, machine, COMMAND, reason, math.inf if duration_s is None else duration_s,
                                 working=working, stage=stage)
    machine.block(reason, stoppage, sim.env.now)
    if working:  # stop the work now (a lot's or a utility's duty cycle); it waits for the repair
        if lot is not None:
            lot.to(LotState.BLOCKED)
            interrupt_lot(sim, lot, restart=False)
        else:
            interrupt_utility(sim, machine)
    sim.recorder.machine_event("machine.blocked", machine, stage, reason=reason, cause=COMMAND)
    return {"machine_id": machine.id, "state": machine.state, "block": block_view(machine),
            "lot": lot.code if lot is not None else None}


def repair_machine(sim: Simulation, machine_id: str) -> dict[str, Any]:
    """End ``machine_id``'s block now, whatever caused it (command, failure, per-cycle block)."""
    machine = machine_of(sim, machine_id)
    stoppage = end_stoppage(sim, machine, early=True)
    if stoppage is None:
        raise CommandRejected("not_blocked", f"machine {machine_id} is {machine.state}, not blocked")
    return {"machine_id": machine.id, "state": machine.state, "repaired": stoppage.cause,
            "reason": stoppage.reason, "lot": machine.current_lot.code if machine.current_lot else None}


def block_view(machine: Machine) -> dict[str, Any] | None:
    """The block a machine is in: reason, cause and the sim time it ends by itself (None: not blocked)."""
    if machine.state != MachineState.BLOCKED:
        return None
    stoppage = machine.stoppage
    return {"reason": machine.block_reason, "cause": stoppage.cause if stoppage else None,
            "since_s": round(machine.since, 3), "until_s": _time(stoppage.until) if stoppage else None}


# -- anomalies ---------------------------------------------------------------------------------------
def set_anomaly(sim: Simulation, machine_id: str, anomaly_type: str, severity: float = 1.0,
                duration_s: float | None = None) -> dict[str, Any]:
    """Make ``machine_id`` show ``anomaly_type`` from now on (for ``duration_s``, or until cleared)."""
    machine = machine_of(sim, machine_id)
    allowed = allowed_anomalies(machine)
    if anomaly_type not in allowed:
        raise CommandRejected("unknown_anomaly", f"{machine.machine_type} machines know no anomaly "
                                                 f"{anomaly_type!r}; allowed: {', '.join(allowed)}")
    if not (math.isfinite(severity) and 0.0 < severity <= MAX_SEVERITY):
        raise CommandRejected("invalid_severity", f"severity must be in (0, {MAX_SEVERITY:g}] (got {severity!r})")
    _check_duration(duration_s)
    machine.inject_anomaly(anomaly_type, severity, _until(sim, duration_s))
    return {"machine_id": machine.id, "anomaly": anomaly_view(machine, sim.now)}


def clear_anomaly(sim: Simulation, machine_id: str, anomaly_type: str | None = None) -> dict[str, Any]:
    """End ``machine_id``'s anomaly now (only if it is ``anomaly_type``, when given).  Clearing a
    machine without one is not an error."""
    machine = machine_of(sim, machine_id)
    active = machine.active_anomaly(sim.now)
    cleared = None
    if active is not None and anomaly_type in (None, active):
        cleared = active
        machine.clear_anomaly()
    return {"machine_id": machine.id, "cleared": cleared, "anomaly": anomaly_view(machine, sim.now)}


def plant_anomaly(sim: Simulation, anomaly_type: str, on: bool, machine_id: str | None = None,
                  severity: float = 1.0, duration_s: float | None = None, *, plant: str | None = None,
                  ) -> dict[str, Any]:
    """The plant-wide switch (``bearing_fault``/``energy_spike`` on or off) for one machine, every
    machine of ``plant``, or (neither given) every machine."""
    if anomaly_type not in PLANT_WIDE_ANOMALIES:
        raise CommandRejected("unknown_anomaly", f"plant-wide anomalies are {', '.join(PLANT_WIDE_ANOMALIES)} "
                                                 f"(got {anomaly_type!r})")
    if machine_id is not None:
        ids = [machine_id]
    else:
        ids = sorted(mid for mid, m in sim.plant.machines.items() if plant is None or m.location == plant)
    changed = []
    for mid in ids:
        result = (set_anomaly(sim, mid, anomaly_type, severity, duration_s) if on
                  else clear_anomaly(sim, mid, anomaly_type))
        if on or result["cleared"] is not None:
            changed.append(mid)
    return {"anomaly": anomaly_type, "value": on, "machines": changed}


def anomaly_view(machine: Machine, now: float) -> dict[str, Any] | None:
    """The anomaly in force: type, severity and the sim time it ends by itself (None: none)."""
    active = machine.active_anomaly(now)
    if active is None:
        return None
    return {"type": active, "severity": machine.anomaly_severity, "until_s": _time(machine.anomaly_until)}
