"""The model inputs of an instance whose plants are in several runs: each input to its plant's run.

:class:`PlantInputs` is what the order intake submits to when the plants are shared between
instances (each owned plant its own run): the items of one submission go to their plants' input
gates (in their order within a plant), and the results come back in the submission's order.  An
item for a plant that has no run here (being taken over, or handed over) is refused as
:class:`~simulator.errors.JournalRefused`: its message is not done and is read again by the
plant's owner.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from simulator.errors import JournalRefused
from simulator.interfaces import Result
from simulator.model.inputs import Input, plant_of


class PlantGate(Protocol):
    plants: list[str]

    def submit(self, items: Sequence[Input], sources: Sequence[str | None] | None = None,
               ) -> asyncio.Future[list[Result]]: ...

    def lot_in_progress(self, lot_code: str) -> bool: ...

    def on_lot_finished(self, listener: Callable[[str], None]) -> None: ...


class PlantInputs:
    def __init__(self, machine_plants: Mapping[str, str]) -> None:
        self.machine_plants = machine_plants  # machine id -> its plant (every plant of the config)
        self.gates: dict[str, PlantGate] = {}  # plant -> the input gate of its run here
        self._listeners: list[Callable[[str], None]] = []

    def add(self, gate: PlantGate) -> None:
        for plant in gate.plants:
            self.gates[plant] = gate
        for listener in self._listeners:
            gate.on_lot_finished(listener)

    def remove(self, plants: Sequence[str]) -> None:
        for plant in plants:
            self.gates.pop(plant, None)

    def submit(self, items: Sequence[Input], sources: Sequence[str | None] | None = None,
               ) -> asyncio.Future[list[Result]]:
        results: list[Result | None] = [None] * len(items)
        by_gate: dict[int, list[int]] = defaultdict(list)
        gates: dict[int, PlantGate] = {}
        for index, item in enumerate(items):
            try:
                plant = plant_of(item, self.machine_plants)
            except Exception as exc:  # noqa: BLE001 - refused as the gate refuses it
                results[index] = exc
                continue
            gate = self.gates.get(plant)
            if gate is None:
                results[index] = JournalRefused(f"plant {plant} is not run by this instance now")
                continue
            by_gate[id(gate)].append(index)
            gates[id(gate)] = gate
        merged: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        parts = []
        for key, indexes in by_gate.items():
            future = gates[key].submit([items[i] for i in indexes],
                                       [sources[i] for i in indexes] if sources else None)
            future.add_done_callback(functools.partial(_fill, results, indexes))
            parts.append(future)
        if not parts:
            merged.set_result([r if r is not None else RuntimeError("no result") for r in results])
            return merged
        gathered = asyncio.gather(*parts, return_exceptions=True)
        gathered.add_done_callback(functools.partial(_finish, results, merged))
        return merged

    def lot_in_progress(self, lot_code: str) -> bool:
        return any(gate.lot_in_progress(lot_code) for gate in set(self.gates.values()))

    def on_lot_finished(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)
        for gate in {id(g): g for g in self.gates.values()}.values():
            gate.on_lot_finished(listener)


def _finish(results: list[Result | None], merged: asyncio.Future[list[Result]], _: object) -> None:
    if not merged.done():
        merged.set_result([r if r is not None else JournalRefused("the run stopped before it applied the input")
                           for r in results])


def _fill(results: list[Result | None], indexes: list[int], future: asyncio.Future[list[Result]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return  # left None: refused as not applied
    for index, result in zip(indexes, future.result(), strict=True):
        results[index] = result
