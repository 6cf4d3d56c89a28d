"""Continuous-duty machines (``machine_types.<t>.duty: continuous``): compressors, HVAC, a
conveyor motor … — utilities that work no lots.

Such a machine runs whenever its location's shift calendar allows, driven at a load equal to
the calendar's production factor (0.5 in a half-capacity night shift, the weekend factor on
weekends …), and is off shift while the factor is 0; without a calendar it runs around the
clock at load 1.  It is not steered by its pool's shift limit (:func:`follow_shifts` skips
continuous types), so one process decides its state: :func:`run_utility`.

Time accounting: running time is booked in duty cycles of at most :data:`DUTY_CYCLE_S` (or up
to the next shift change), each a good cycle whose ideal time is its running time, so a
utility's performance and quality are 1 and its OEE equals its availability (time-based failures
and every-hours maintenance are the losses; off-shift time is not scheduled time).  A failure
interrupts it like a working machine (``in_work``/``current_process``, see
``disruptions.break_down``); planned maintenance that falls due (``every_hours``; it runs no lot
cycles, so ``every_cycles`` never triggers) starts at the end of the current duty cycle.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import simpy

from simulator.model.machine import IDLE, OFF_SHIFT, RUNNING, Machine
from simulator.model.production import Failure, Process

if TYPE_CHECKING:
    from simulator.config_schema import Config
    from simulator.model.shifts import CalendarClock
    from simulator.model.simulation import Simulation

DUTY_CYCLE_S = 600.0


def continuous_types(config: Config) -> frozenset[str]:
    """The machine types configured with ``duty: continuous``."""
    return frozenset(name for name, settings in config.machine_types.items() if settings.duty == "continuous")


def _book(machine: Machine, planned_s: float) -> None:
    """Book a good duty cycle of ``planned_s`` seconds as it starts (so the ideal time never lags
    the running time: performance stays 1); an interrupted one gives back what it did not run."""
    machine.cycles += 1
    machine.good_cycles += 1
    machine.ideal_time_s += planned_s


def start_utility(sim: Simulation, machine: Machine, clock: CalendarClock | None) -> None:
    """Take ``machine`` from its pool (which never assigns it: no route stage uses a continuous
    type) and start :func:`run_utility`.  Done before the run starts, so no other process finds
    the machine idle in its pool."""
    env = sim.env
    sim.plant.pool(machine.location, machine.machine_type).take_idle(machine)
    factor = clock.factor_and_next_change(env.now)[0] if clock is not None else 1.0
    machine.load = factor
    machine.set_state(RUNNING if factor > 0 else OFF_SHIFT, env.now)
    machine.current_process = env.process(run_utility(sim, machine, clock))


def run_utility(sim: Simulation, machine: Machine, clock: CalendarClock | None) -> Process:
    """Keep ``machine`` running at the shift factor of its location (24/7 at 1 without ``clock``)."""
    env = sim.env
    factor, change = 1.0, math.inf
    if clock is not None:
        factor, change = clock.factor_and_next_change(env.now)
    while True:
        if env.now >= change:
            assert clock is not None
            factor, change = clock.factor_and_next_change(env.now)
        machine.load = factor
        if factor <= 0.0:
            if machine.state != OFF_SHIFT:
                machine.set_state(OFF_SHIFT, env.now)
            yield env.timeout(change - env.now)
            continue
        if machine.maintenance_due:
            yield from _maintain(sim, machine)
            continue
        if machine.state != RUNNING:
            machine.set_state(RUNNING, env.now)
        ends = min(change, env.now + DUTY_CYCLE_S)
        _book(machine, ends - env.now)
        machine.current_process = env.active_process  # the pool clears it after maintenance
        machine.in_work = True
        try:
            yield env.timeout(ends - env.now)
        except simpy.Interrupt as interrupt:  # a failure: the repair ends with the machine running
            machine.in_work = False
            machine.ideal_time_s -= ends - env.now
            failure = interrupt.cause
            assert isinstance(failure, Failure)
            yield failure.repaired
            continue
        machine.in_work = False


def _maintain(sim: Simulation, machine: Machine) -> Process:
    """Run the planned maintenance that fell due, then take the machine back from its pool (which
    receives every machine after maintenance)."""
    pool = sim.plant.pool(machine.location, machine.machine_type)
    if machine.on_maintained is None:
        machine.on_maintained = sim.env.event()
    done = machine.on_maintained
    assert pool.start_maintenance is not None
    pool.start_maintenance(machine)
    yield done
    if machine.state == IDLE:
        pool.take_idle(machine)
