"""The input gate: the one way into the running model (:class:`simulator.interfaces.ModelInputs`).

Inputs (:mod:`simulator.model.inputs`) apply between two steps, in the order they were submitted.
With a journal, each input is first stamped with the simulated instant at which it will apply
(:meth:`Driver.stamp`), numbered within its plant and appended to the journal; the driver holds
simulated time at that instant until Kafka has acknowledged the entries, then applies them there,
each on its own: after every event due at or before its instant (those of the inputs before it
included).  So no output record ever depends on an input that is not in the journal, and
replaying the journal — for each entry in order, settle at its instant and apply it — gives the
same run.  An input that belongs to no
plant (an unknown machine) is refused before it is journaled.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Protocol

from simulator.errors import FactorySimError
from simulator.formats.journal import Applied, Entry
from simulator.interfaces import Result
from simulator.model.inputs import Input, apply_all, plant_of
from simulator.model.simulation import Simulation
from simulator.runtime.driver import Driver


class JournalRefused(FactorySimError):
    """Kafka refused an input's journal entry: the input was not applied (and is not done)."""


class Journal(Protocol):
    def append(self, entries: Sequence[Entry]) -> asyncio.Future[None]: ...


class InputGate:
    def __init__(self, driver: Driver, journal: Journal | None = None, run_id: str = "") -> None:
        self.driver = driver
        self.journal = journal
        self.run_id = run_id
        self.machine_plants = {mid: m.location for mid, m in driver.sim.plant.machines.items()}
        self.plants = sorted(driver.sim.config.locations)
        self.input_seqs = dict.fromkeys(self.plants, 0)  # per plant: the number of its last journaled input
        self.last_at = 0.0  # the instant of the latest input: the next is never before it

    def submit(self, items: Sequence[Input], sources: Sequence[str | None] | None = None,
               ) -> asyncio.Future[list[Result]]:
        if self.journal is None:
            return self.driver.call(functools.partial(apply_all, items=list(items)))
        results: list[Result | None] = [None] * len(items)
        accepted: list[tuple[int, Input]] = []
        entries: list[Entry] = []
        at = self.last_at = max(self.last_at, self.driver.stamp())
        for index, item in enumerate(items):
            try:
                plant = plant_of(item, self.machine_plants)
            except Exception as exc:  # noqa: BLE001 - refused before it is journaled
                results[index] = exc
                continue
            seq = self.input_seqs[plant] = self.input_seqs[plant] + 1
            entries.append(Applied(plant, self.run_id, seq, at, item, sources[index] if sources else None))
            accepted.append((index, item))
        acknowledged = self.journal.append(entries)
        applied = [self.driver.schedule(at, functools.partial(_apply_one, item=item), ready=acknowledged)
                   for _, item in accepted]
        merged: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        gathered = asyncio.gather(*applied, return_exceptions=True)
        gathered.add_done_callback(functools.partial(_merge, results, [i for i, _ in accepted], merged))
        return merged

    def lot_in_progress(self, lot_code: str) -> bool:
        return lot_code in self.driver.sim.lots

    def on_lot_finished(self, listener: Callable[[str], None]) -> None:
        self.driver.sim.on_lot_finished(lambda lot: listener(lot.code))



def _apply_one(sim: Simulation, item: Input) -> tuple[Result]:
    """One input's result, or the exception that refused it, as a 1-tuple (so that it cannot be
    taken for an exception raised while scheduling it)."""
    (result,) = apply_all(sim, [item])
    return (result,)


def _merge(results: list[Result | None], indexes: list[int], merged: asyncio.Future[list[Result]],
           gathered: asyncio.Future[list[tuple[Result] | BaseException]]) -> None:
    if merged.done():
        return
    if gathered.cancelled():
        merged.cancel()
        return
    for index, outcome in zip(indexes, gathered.result(), strict=True):
        if isinstance(outcome, tuple):
            results[index] = outcome[0]
        elif isinstance(outcome, asyncio.CancelledError):
            merged.cancel()  # the driver stopped before it applied
            return
        else:  # the journal did not acknowledge the entries: not applied
            results[index] = JournalRefused(f"the journal did not take the input ({outcome!r}); it was not applied")
    merged.set_result([r if r is not None else RuntimeError("no result") for r in results])
