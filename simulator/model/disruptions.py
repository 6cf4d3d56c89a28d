"""Machine-level processes: time-based failures that interrupt work, planned maintenance; how a
blocked machine comes back."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from simulator.model.machine import BLOCKED, IDLE, MAINTENANCE, RUNNING, Machine
from simulator.model.production import Failure, Process, wait_repair

if TYPE_CHECKING:
    import simpy

    from simulator.model.plant import MachineDisruptions
    from simulator.model.simulation import Simulation


def break_down(sim: Simulation, machine: Machine, dis: MachineDisruptions) -> Process:
    """Fail every exponential(MTBF) hours.  A running machine interrupts its lot, which waits
    for the repair; an idle one leaves its pool for the repair.  A machine already down,
    in maintenance, off shift or between two cycles at that instant does not fail then."""
    assert dis.failures is not None
    assert dis.failure_repair is not None
    env = sim.env
    rng = machine.rng_failures
    rate = 1.0 / (dis.failures.mtbf_h * 3600.0)
    reason = dis.failures.reason
    pool = sim.plant.pool(machine.location, machine.machine_type)
    while True:
        yield env.timeout(rng.expovariate(rate))
        repair = dis.failure_repair(rng)
        lot = machine.current_lot
        stage = lot.stage if lot else None
        if machine.state == RUNNING and machine.in_work:
            assert machine.current_process is not None
            repaired = env.event()
            machine.block_reason = reason
            machine.set_state(BLOCKED, env.now)
            sim.recorder.machine_event("machine.blocked", machine, stage, reason=reason, cause="failure")
            machine.current_process.interrupt(Failure(repaired, reason, dis.failures.on_interrupt == "restart"))
            finish = partial(end_running_block, sim, machine, stage, reason, "failure", repaired)
            yield from wait_repair(env, machine, "failure", reason, repair, finish)
        elif machine.state == IDLE and pool.take_idle(machine):
            machine.block_reason = reason
            machine.set_state(BLOCKED, env.now)
            sim.recorder.machine_event("machine.blocked", machine, None, reason=reason, cause="failure")
            finish = partial(end_idle_block, sim, machine, reason, "failure")
            yield from wait_repair(env, machine, "failure", reason, repair, finish)


def end_running_block(sim: Simulation, machine: Machine, stage: str | None, reason: str, cause: str,
                      repaired: simpy.Event) -> None:
    """A machine that was blocked while working a lot runs again; the lot resumes."""
    machine.block_reason = None
    machine.set_state(RUNNING, sim.env.now)
    sim.recorder.machine_event("machine.repaired", machine, stage, reason=reason, cause=cause)
    repaired.succeed()


def end_idle_block(sim: Simulation, machine: Machine, reason: str, cause: str) -> None:
    """A machine that was blocked while idle goes back to its pool."""
    machine.block_reason = None
    sim.recorder.machine_event("machine.repaired", machine, None, reason=reason, cause=cause)
    sim.plant.pool(machine.location, machine.machine_type).release(machine)


def maintain(sim: Simulation, machine: Machine, dis: MachineDisruptions) -> Process:
    """Planned maintenance of a free machine; it returns to its pool afterwards."""
    assert dis.maintenance_duration is not None
    env = sim.env
    machine.maintenance_due = False
    machine.set_state(MAINTENANCE, env.now)
    started = env.now
    sim.recorder.machine_event("maintenance.started", machine, None)
    yield env.timeout(dis.maintenance_duration(machine.rng_failures))
    machine.last_maintenance = env.now
    machine.cycles_since_maintenance = 0
    machine.pieces_since_maintenance = 0
    machine.maintenance_log.append((started, env.now))
    sim.recorder.machine_event("maintenance.completed", machine, None)
    done, machine.on_maintained = machine.on_maintained, None
    if done is not None:
        done.succeed()
    sim.plant.pool(machine.location, machine.machine_type).release(machine)


def maintenance_clock(sim: Simulation, machine: Machine, dis: MachineDisruptions) -> Process:
    """Make maintenance due every N operating-calendar hours; an idle machine goes at once, a
    busy one after its cycle."""
    assert dis.maintenance is not None
    assert dis.maintenance.every_hours is not None
    env = sim.env
    period = dis.maintenance.every_hours * 3600.0
    pool = sim.plant.pool(machine.location, machine.machine_type)
    while True:
        due_at = machine.last_maintenance + period
        if env.now < due_at:
            yield env.timeout(due_at - env.now)
            continue
        machine.maintenance_due = True
        machine.on_maintained = env.event()
        waiting = machine.on_maintained
        if pool.take_idle(machine):
            pool.release(machine)  # the pool starts the maintenance
        yield waiting
