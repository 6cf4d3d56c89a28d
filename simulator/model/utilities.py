"""Continuous-duty machines (``machine_types.<t>.duty: continuous``): compressors, HVAC, a
conveyor motor … — utilities that work no lots.

Such a machine runs whenever its location's shift calendar allows, driven at a load equal to
the calendar's production factor (0.5 in a half-capacity night shift, the weekend factor on
weekends …), and is off shift while the factor is 0; without a calendar it runs around the
clock at load 1.  It is not steered by its pool's shift limit (:func:`~simulator.model.shifts.shift_change`
skips continuous types): its own steps on the event calendar decide its state (:func:`utility_step`).

Time accounting: running time is booked in duty cycles of at most :data:`DUTY_CYCLE_S` (or up
to the next shift change), each a good cycle whose ideal time is its running time, so a
utility's performance and quality are 1 and its OEE equals its availability (time-based failures
and every-hours maintenance are the losses; off-shift time is not scheduled time).  A failure
interrupts it like a working machine (``in_work``, see ``disruptions.failure_due``); planned
maintenance that falls due (``every_hours``; it runs no lot cycles, so ``every_cycles`` never
triggers) starts at the end of the current duty cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.model.events import handler
from simulator.model.machine import Machine

if TYPE_CHECKING:
    from simulator.config.plant import PlantSettings
    from simulator.model.simulation import Simulation

DUTY_CYCLE_S = 600.0


def continuous_types(config: PlantSettings) -> frozenset[str]:
    """The machine types configured with ``duty: continuous``."""
    return frozenset(name for name, settings in config.machine_types.items() if settings.duty == "continuous")


def start_utility(sim: Simulation, machine: Machine) -> None:
    """Take ``machine`` from its pool (which never assigns it: no route stage uses a continuous
    type) and set its state for the shift in force; its first step comes at the current instant.
    Done before the run starts, so nothing else finds the machine idle in its pool."""
    now = sim.env.now
    sim.plant.pool(machine.location, machine.machine_type).take_idle(machine)
    clock = sim.calendar_clocks.get(machine.location)
    factor = clock.factor_and_next_change(now)[0] if clock is not None else 1.0
    machine.enter_duty(factor, sim.env.at(now, utility_begins, sim, machine), now)


@handler("utility.begins")
def utility_begins(sim: Simulation, machine: Machine) -> None:
    clock = sim.calendar_clocks.get(machine.location)
    if clock is not None:
        machine.follow_shift(*clock.factor_and_next_change(sim.env.now))
    utility_step(sim, machine)


def utility_step(sim: Simulation, machine: Machine) -> None:
    """Keep ``machine`` running at the shift factor of its location (24/7 at 1 without a calendar):
    off shift until the next change while the factor is 0, else the planned maintenance that fell
    due, else one more duty cycle."""
    env = sim.env
    now = env.now
    if now >= machine.utility_change:
        clock = sim.calendar_clocks[machine.location]
        machine.follow_shift(*clock.factor_and_next_change(now))
    factor = machine.next_duty_step()
    if factor <= 0.0:
        machine.pause_duty(env.at(machine.utility_change, utility_next, sim, machine), now)
        return
    if machine.maintenance_due:  # resumed when the maintenance ends
        start = sim.plant.pool(machine.location, machine.machine_type).start_maintenance
        assert start is not None
        start(machine)
        return
    ends = min(machine.utility_change, now + DUTY_CYCLE_S)
    machine.start_duty_cycle(ends, env.at(ends, utility_next, sim, machine), now)


@handler("utility.next")
def utility_next(sim: Simulation, machine: Machine) -> None:
    machine.end_work()
    utility_step(sim, machine)


def interrupt_utility(sim: Simulation, machine: Machine) -> None:
    """A failure or a block command stops the duty cycle now; the repair resumes it
    (:func:`utility_step`)."""
    sim.env.cancel(machine.utility_entry)
    machine.interrupt_duty_cycle(sim.env.now)
