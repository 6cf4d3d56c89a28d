"""The input gate: the one way into the running model (:class:`simulator.interfaces.ModelInputs`).

Inputs (:mod:`simulator.model.inputs`) are applied by the driver between two steps, in the order
they were submitted, with :func:`simulator.model.inputs.apply_all`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence

from simulator.interfaces import Result
from simulator.model.inputs import Input, apply_all
from simulator.runtime.driver import Driver


class InputGate:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.machine_plants = {mid: m.location for mid, m in driver.sim.plant.machines.items()}
        self.plants = sorted(driver.sim.config.locations)

    def submit(self, items: Sequence[Input]) -> asyncio.Future[list[Result]]:
        return self.driver.call(functools.partial(apply_all, items=list(items)))

    def lot_in_progress(self, lot_code: str) -> bool:
        return lot_code in self.driver.sim.lots

    def on_lot_finished(self, listener: Callable[[str], None]) -> None:
        self.driver.sim.on_lot_finished(lambda lot: listener(lot.code))
