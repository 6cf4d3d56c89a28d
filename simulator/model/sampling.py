"""Periodic machine samples: every machine reports every ``sample_interval`` seconds, in any state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.model.events import handler
from simulator.model.machine import Machine

if TYPE_CHECKING:
    from simulator.model.simulation import Simulation


def start_sampling(sim: Simulation, machine: Machine, interval: float, offset: float) -> None:
    """Sample ``machine`` every ``interval`` seconds, the first after ``offset + interval`` (offsets
    spread the machines over the interval)."""
    machine.sample_every(interval)
    sim.env.after(offset + interval, sample_due, sim, machine)


@handler("machine.sample")
def sample_due(sim: Simulation, machine: Machine) -> None:
    lot = machine.current_lot
    sim.recorder.sample(machine, lot.stage if lot else None, machine.sample_interval)
    sim.env.after(machine.sample_interval, sample_due, sim, machine)
