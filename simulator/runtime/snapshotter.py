"""Taking snapshots of the running model and writing them to Kafka, periodically and at a stop.

A snapshot is taken by the driver between two steps, scheduled like an input (:meth:`Driver.schedule`)
at the instant the latest input applies at, or later: every input submitted before it has applied
when it is taken and none submitted after it has.  So its ``inputs_through`` (the gate's input
numbers when it was asked for) are exactly the inputs its state holds, and a restart applies the
journal after them.  The model's document is turned into JSON right there (nothing that changes
after the step can change the snapshot); compression and the writing happen off the driver.

While the run is live a snapshot is written every ``kafka.snapshots.every_inputs`` journaled inputs
(or, when more lots are in progress, every as many inputs as there are lots in progress: a snapshot's
cost grows with them) or every ``every_s`` wall seconds, whichever comes first (not when nothing
changed); at a stop the service takes a last one after the last inputs (:meth:`Snapshotter.take_marked`),
and writes it once its output is delivered, so the next start replays nothing.

A snapshot written to Kafka carries its journal mark (:class:`simulator.formats.snapshot.JournalMark`).
Its offsets are the journal's end offsets asked for *before* the snapshot is: every entry written
after that answer is at or after them, and every input submitted after the snapshot was asked for
is written after it — so the journal from those offsets on holds every input the snapshot does not
cover (and some it does: a start skips them by number).  The orders it lists are those whose
journal entries Kafka acknowledged, less those whose offsets are committed: read again after a
crash, they are in the journal already.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from simulator.config.kafka import Snapshots
from simulator.errors import SnapshotRefused
from simulator.formats import snapshot as wire
from simulator.formats.snapshot import Clock, JournalMark, Snapshot
from simulator.interfaces import SnapshotStore
from simulator.model.simulation import Simulation
from simulator.runtime.driver import Driver
from simulator.runtime.gate import InputGate

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.5
MARK_TIMEOUT_S = 5.0

Take = Callable[[Simulation], dict[str, Any]]


class JournalState:
    """What a snapshot's journal mark is made of, from the parts of the service that know it."""

    def __init__(self, ends: Callable[[float], Awaitable[dict[int, int]]], clock: Callable[[], Clock | None],
                 committed: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        self.ends = ends  # (timeout) -> the journal's end offsets by partition
        self.clock = clock  # the clock entry in force
        self.committed = committed  # (orders topic, partition) -> the offset committed


class Snapshotter:
    def __init__(self, driver: Driver, gate: InputGate, writer: SnapshotStore | None, run_id: str, *,
                 fingerprint: str, model_version: int, take: Take, settings: Snapshots,
                 journal: JournalState | None = None) -> None:
        self.driver = driver
        self.gate = gate
        self.writer = writer
        self.run_id = run_id
        self.fingerprint = fingerprint
        self.model_version = model_version
        self._take = take
        self.settings = settings
        self.journal = journal
        self.failed = 0
        self.last: Snapshot | None = None  # the newest written
        self._last_inputs = sum(gate.input_seqs.values())
        self._last_at = time.monotonic()
        self._stopped = False

    async def take_marked(self, *, stop_driver: bool = False,
                          mark_timeout_s: float = MARK_TIMEOUT_S) -> tuple[Snapshot, bytes]:
        """:meth:`take` with the journal mark (without one when the journal's ends cannot be had
        within ``mark_timeout_s``: a start from that snapshot then reads the whole journal)."""
        ends: dict[int, int] | None = None
        if self.journal is not None:
            try:
                ends = await self.journal.ends(mark_timeout_s)
            except Exception as exc:  # noqa: BLE001 - the snapshot is still of use without its mark
                log.warning("the journal's end offsets are not known (%r): snapshot without its mark", exc)
        return await self.take(stop_driver=stop_driver, journal_ends=ends)

    def take(self, *, stop_driver: bool = False,
             journal_ends: dict[int, int] | None = None) -> asyncio.Future[tuple[Snapshot, bytes]]:
        """The model's snapshot, after every input submitted so far and before any submitted later,
        with its envelope as JSON; ``stop_driver``: the driver stops right after it (a shutdown);
        ``journal_ends``: the journal's end offsets asked for before this call (for its mark)."""
        inputs = dict(self.gate.input_seqs)
        at = self.gate.last_at = max(self.gate.last_at, self.driver.stamp())
        driver, journal = self.driver, self.journal

        def capture(sim: Simulation) -> tuple[Snapshot, bytes]:
            if stop_driver:
                driver.stop()
            document = self._take(sim)
            output = {str(plant): int(seq) for plant, seq in document["record_seqs"].items()}
            mark = None
            if journal is not None and journal_ends:
                mark = JournalMark(len(journal_ends), journal_ends, sim.seed, sim.start, journal.clock(),
                                   self.gate.journaled_orders(journal.committed()))
            snapshot = Snapshot(self.run_id, self.fingerprint, self.model_version, sim.now, inputs, output,
                                time.time(), document, wire.new_snapshot_id(), mark)
            return snapshot, orjson.dumps(wire.to_json(snapshot))

        return driver.schedule(at, capture)

    def stop(self) -> None:
        """No periodic snapshot from now on (a shutdown takes its own)."""
        self._stopped = True

    async def run(self) -> None:
        """Write snapshots periodically (for as long as the service runs)."""
        settings = self.settings
        if self.writer is None or not settings.enabled:
            return
        while not self._stopped:
            await asyncio.sleep(CHECK_INTERVAL_S)
            inputs = sum(self.gate.input_seqs.values())
            # a snapshot costs about ten microseconds per lot in progress (and blocks the driver
            # that long): after at least as many inputs as there are lots in progress, so a flood of
            # orders pays a bounded share for its snapshots (and a restart applies at most that many again)
            every_inputs = None if settings.every_inputs is None else \
                max(settings.every_inputs, len(self.driver.sim.lots))
            due = (every_inputs is not None and inputs - self._last_inputs >= every_inputs) or \
                (settings.every_s is not None and time.monotonic() - self._last_at >= settings.every_s)
            if not due or self._stopped:
                continue
            last = self.last
            if last is not None and inputs == sum(last.inputs_through.values()) \
                    and self.driver.sim.now == last.sim_time_s:
                self._last_at = time.monotonic()
                continue  # nothing changed
            try:
                snapshot, raw = await self.take_marked()
            except Exception as exc:  # noqa: BLE001 - a snapshot that cannot be taken must not stop the plant
                self.failed += 1
                log.warning("no snapshot of run %s now (%s); trying again in %.1f s", self.run_id, exc,
                            CHECK_INTERVAL_S)
                continue
            self._last_at, self._last_inputs = time.monotonic(), sum(snapshot.inputs_through.values())
            await self.write(snapshot, raw)

    async def write(self, snapshot: Snapshot, raw: bytes, *, confirm: bool = False) -> bool:
        """Compress and write a snapshot taken; False when Kafka refused it (logged)."""
        assert self.writer is not None
        data = await asyncio.to_thread(wire.compress, raw)
        try:
            await self.writer.write(snapshot, data, confirm=confirm)
        except SnapshotRefused:
            self.failed += 1
            return False
        self.last = snapshot
        return True

    def view(self) -> dict[str, Any]:
        last, writer = self.last, self.writer
        return {
            "enabled": self.settings.enabled and writer is not None,
            "written": writer.written if writer is not None else 0,
            "failed": self.failed,
            "last": None if last is None else {
                "id": last.snapshot_id, "sim_time_s": round(last.sim_time_s, 3), "taken_at": last.taken_at_utc,
                "inputs_through": last.inputs_through,
                "bytes": writer.last_bytes if writer is not None else 0},
        }
