"""The input gate: the one way into the running model (:class:`simulator.interfaces.ModelInputs`).

Inputs (:mod:`simulator.model.inputs`) apply between two steps, in the order they were submitted.
With a journal, each input is first stamped with the simulated instant at which it will apply
(:meth:`Driver.stamp`), numbered within its plant and appended to the journal; the driver holds
simulated time at that instant until Kafka has acknowledged the entries, then applies the inputs
of one submission together, in their order: after every event due at or before their instant.
A plant's first input of a submission is journaled as such, the others as ``joined`` (no event
between it and the one before).  So no output record ever depends on an input that is not in
the journal, and replaying the journal — settle at an entry's instant unless it is joined, apply
it — gives the same run.  An input that belongs to no
plant (an unknown machine) is refused before it is journaled.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from simulator.errors import JournalRefused
from simulator.formats.journal import Applied, Entry
from simulator.interfaces import Result
from simulator.model.inputs import Input, apply_all, plant_of
from simulator.runtime.driver import Driver
from simulator.runtime.recovery import order_source


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
        # the sources ("topic/partition/offset") of orders whose journal entries Kafka acknowledged,
        # until their offsets are known to be committed (see journaled_orders)
        self.journaled_sources: deque[str] = deque()
        self.track_journaled = False  # only snapshots read (and prune) them: kept while snapshots are written
        self.recovered_sources: dict[tuple[str, int], set[int]] = {}  # those of a recovered run, the same way

    def submit(self, items: Sequence[Input], sources: Sequence[str | None] | None = None,
               ) -> asyncio.Future[list[Result]]:
        if self.journal is None:
            return self.driver.call(functools.partial(apply_all, items=list(items)))
        results: list[Result | None] = [None] * len(items)
        indexes: list[int] = []  # of the inputs accepted
        accepted: list[Input] = []
        entries: list[Entry] = []
        at = self.last_at = max(self.last_at, self.driver.stamp())
        seqs, run_id, machine_plants, joined = self.input_seqs, self.run_id, self.machine_plants, set()
        for index, item in enumerate(items):
            try:
                plant = plant_of(item, machine_plants)
            except Exception as exc:  # noqa: BLE001 - refused before it is journaled
                results[index] = exc
                continue
            seq = seqs[plant] = seqs[plant] + 1
            entries.append(Applied(plant, run_id, seq, at, item, sources[index] if sources else None,
                                   plant in joined))
            joined.add(plant)
            indexes.append(index)
            accepted.append(item)
        ready = self.journal.append(entries)
        journaled = [text for i in indexes if (text := sources[i]) is not None] \
            if sources and self.track_journaled else None
        if journaled:  # a callback before the driver's: known as journaled before the inputs apply
            ready.add_done_callback(functools.partial(self._journaled, journaled))
        applied = self.driver.schedule(at, functools.partial(apply_all, items=accepted), ready=ready)
        merged: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        applied.add_done_callback(functools.partial(_merge, results, indexes, merged))
        return merged

    def _journaled(self, sources: list[str], acknowledged: asyncio.Future[None]) -> None:
        if not acknowledged.cancelled() and acknowledged.exception() is None:
            self.journaled_sources.extend(sources)

    def journaled_orders(self, committed: Mapping[tuple[str, int], int]) -> dict[str, list[int]]:
        """The orders journaled whose offsets are not known to be committed (``committed``: the
        position committed per orders partition), as "topic/partition" -> offsets; the others are
        forgotten.  Read again after a crash, those listed are in the journal already."""
        kept: deque[str] = deque()
        listed: defaultdict[str, list[int]] = defaultdict(list)
        for where, offsets in list(self.recovered_sources.items()):
            position = committed.get(where)
            if position is not None:
                offsets = self.recovered_sources[where] = {offset for offset in offsets if offset >= position}
            if offsets:
                listed[f"{where[0]}/{where[1]}"].extend(sorted(offsets))
            else:
                del self.recovered_sources[where]
        for text in self.journaled_sources:
            topic, partition, offset = order_source(text)
            if topic is None:
                continue
            position = committed.get((topic, partition))
            if position is None or offset >= position:
                kept.append(text)
                listed[f"{topic}/{partition}"].append(offset)
        self.journaled_sources = kept
        return dict(listed)

    def lot_in_progress(self, lot_code: str) -> bool:
        return lot_code in self.driver.sim.lots

    def on_lot_finished(self, listener: Callable[[str], None]) -> None:
        self.driver.sim.on_lot_finished(lambda lot: listener(lot.code))



def _merge(results: list[Result | None], indexes: list[int], merged: asyncio.Future[list[Result]],
           applied: asyncio.Future[list[Result]]) -> None:
    if merged.done():
        return
    if applied.cancelled():
        merged.cancel()  # the driver stopped before it applied them
        return
    exc = applied.exception()
    if exc is None and len(indexes) == len(results):  # every input was journaled and applied
        merged.set_result(applied.result())
        return
    refused = JournalRefused(f"the journal did not take the input ({exc!r}); it was not applied") if exc else None
    values = None if refused is not None else applied.result()
    for position, index in enumerate(indexes):
        results[index] = refused if values is None else values[position]
    merged.set_result([r if r is not None else RuntimeError("no result") for r in results])
