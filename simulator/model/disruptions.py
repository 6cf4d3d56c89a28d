"""Machine-level disruptions on the event calendar: time-based failures that stop work, planned
maintenance, and the clock that makes maintenance due every N hours."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.model.events import handler
from simulator.model.machine import Machine, MachineState
from simulator.model.production import FAILURE, interrupt_lot, schedule_stoppage

if TYPE_CHECKING:
    from simulator.model.simulation import Simulation


def schedule_failure(sim: Simulation, machine: Machine) -> None:
    """The machine's next failure, exponential(MTBF) hours from now."""
    failures = sim.plant.machine_disruptions[machine.machine_type].failures
    assert failures is not None
    sim.env.after(machine.rng_failures.expovariate(1.0 / (failures.mtbf_h * 3600.0)), failure_due, sim, machine)


@handler("machine.failure_due")
def failure_due(sim: Simulation, machine: Machine) -> None:
    """Fail now.  A working machine stops its lot (or duty cycle), which waits for the repair; an
    idle one leaves its pool for the repair.  A machine already down, in maintenance or off shift
    does not fail then.  The next failure is drawn when the repair ends (or now, if none)."""
    dis = sim.plant.machine_disruptions[machine.machine_type]
    assert dis.failures is not None
    assert dis.failure_repair is not None
    repair = dis.failure_repair(machine.rng_failures)
    reason = dis.failures.reason
    lot = machine.current_lot
    stage = lot.stage if lot else None
    now = sim.env.now
    if machine.state == MachineState.RUNNING and machine.in_work:
        stoppage = schedule_stoppage(sim, machine, FAILURE, reason, repair, working=True, stage=stage)
        machine.block(reason, stoppage, now)
        sim.recorder.machine_event("machine.blocked", machine, stage, reason=reason, cause=FAILURE)
        restart = dis.failures.on_interrupt == "restart"
        if lot is not None:
            interrupt_lot(sim, lot, restart)
        else:
            sim.interrupt_utility(machine)
    elif (machine.state == MachineState.IDLE
          and sim.plant.pool(machine.location, machine.machine_type).take_idle(machine)):
        stoppage = schedule_stoppage(sim, machine, FAILURE, reason, repair, working=False, stage=None)
        machine.block(reason, stoppage, now)
        sim.recorder.machine_event("machine.blocked", machine, None, reason=reason, cause=FAILURE)
    else:
        schedule_failure(sim, machine)


def maintain(sim: Simulation, machine: Machine) -> None:
    """Start the planned maintenance of a free machine; it returns to its pool afterwards."""
    dis = sim.plant.machine_disruptions[machine.machine_type]
    assert dis.maintenance_duration is not None
    machine.start_maintenance(sim.env.now)
    sim.recorder.machine_event("maintenance.started", machine, None)
    sim.env.after(dis.maintenance_duration(machine.rng_failures), maintenance_done, sim, machine)


@handler("machine.maintenance_done")
def maintenance_done(sim: Simulation, machine: Machine) -> None:
    clock_waited = machine.end_maintenance(sim.env.now)
    sim.recorder.machine_event("maintenance.completed", machine, None)
    if machine.machine_type in sim.continuous_types:
        sim.resume_utility(machine)
    else:
        sim.plant.pool(machine.location, machine.machine_type).release(machine)
    if clock_waited:
        maintenance_clock(sim, machine)


@handler("machine.maintenance_clock")
def maintenance_clock(sim: Simulation, machine: Machine) -> None:
    """Make maintenance due every N operating-calendar hours after the last one: an idle machine
    goes at once, a busy one after its cycle; the clock waits for that maintenance to end."""
    maintenance = sim.plant.machine_disruptions[machine.machine_type].maintenance
    assert maintenance is not None
    assert maintenance.every_hours is not None
    due_at = machine.last_maintenance + maintenance.every_hours * 3600.0
    if sim.env.now < due_at:
        sim.env.at(due_at, maintenance_clock, sim, machine)
        return
    machine.mark_maintenance_due(clock_waits=True)
    pool = sim.plant.pool(machine.location, machine.machine_type)
    if pool.take_idle(machine):
        pool.release(machine)  # the pool starts the maintenance
