"""Machine-level disruptions on the event calendar: time-based failures that stop work, planned
maintenance, the clock that makes maintenance due every N hours, and random anomalies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.limits import MAX_DURATION_S, MAX_SEVERITY
from simulator.model.control import allowed_anomalies, set_anomaly
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


# -- random anomalies --------------------------------------------------------------------------------
MIN_ANOMALY_S = 1.0  # a drawn duration is at least this long
MIN_SEVERITY = 0.1  # and a drawn severity at least this strong


def schedule_anomaly(sim: Simulation, machine: Machine, after_s: float = 0.0) -> None:
    """The machine's next random anomaly: ``after_s`` plus an exponential gap from now (none when the
    rate is 0)."""
    anomalies = sim.plant.machine_disruptions[machine.machine_type].anomalies
    assert anomalies is not None
    rate = anomalies.rate_per_s
    if rate > 0:
        sim.env.after(after_s + machine.rng_anomalies.expovariate(rate), anomaly_due, sim, machine)


@handler("machine.anomaly_due")
def anomaly_due(sim: Simulation, machine: Machine) -> None:
    """A random anomaly starts now, as an anomaly command would start it: a type the machine knows
    (among ``types`` when given), a drawn severity and duration.  A machine already showing an
    anomaly (a command's) keeps it.  The next one is drawn from the end of this one."""
    dis = sim.plant.machine_disruptions[machine.machine_type]
    if dis.anomalies is None:  # a warm start's config without them: the clock stops
        return
    assert dis.anomaly_duration is not None
    assert dis.anomaly_severity is not None
    rng = machine.rng_anomalies
    wanted = dis.anomalies.types
    kinds = [kind for kind in allowed_anomalies(machine) if wanted is None or kind in wanted]
    # every draw is made whether or not it is used, so that what a command does changes no later draw
    kind = kinds[rng.randrange(len(kinds))] if kinds else None
    severity = min(MAX_SEVERITY, max(MIN_SEVERITY, dis.anomaly_severity(rng)))
    duration = min(MAX_DURATION_S, max(MIN_ANOMALY_S, dis.anomaly_duration(rng)))
    if kind is not None and machine.active_anomaly(sim.env.now) is None:
        set_anomaly(sim, machine.id, kind, severity, duration)
        schedule_anomaly(sim, machine, duration)
    else:
        schedule_anomaly(sim, machine)
