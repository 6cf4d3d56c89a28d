"""Periodic machine samples: every machine reports every ``interval`` seconds, in any state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.model.machine import Machine
from simulator.model.production import Process

if TYPE_CHECKING:
    from simulator.model.simulation import Simulation


def sample(sim: Simulation, machine: Machine, interval: float, offset: float) -> Process:
    """Emit a sample of ``machine`` every ``interval``; ``offset`` spreads machines over the interval."""
    env = sim.env
    if offset:
        yield env.timeout(offset)
    while True:
        yield env.timeout(interval)
        lot = machine.current_lot
        sim.recorder.sample(machine, lot.stage if lot else None, interval)
