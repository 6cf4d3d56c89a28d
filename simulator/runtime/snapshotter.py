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
changed); at a stop the service takes a last one after the last inputs (:meth:`Snapshotter.take`),
and writes it once its output is delivered, so the next start replays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from simulator.adapters.snapshots import SnapshotRefused, SnapshotWriter
from simulator.config_schema import Snapshots
from simulator.formats import snapshot as wire
from simulator.formats.snapshot import Snapshot
from simulator.model.simulation import Simulation
from simulator.runtime.driver import Driver
from simulator.runtime.gate import InputGate

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.5

Take = Callable[[Simulation], dict[str, Any]]


class Snapshotter:
    def __init__(self, driver: Driver, gate: InputGate, writer: SnapshotWriter | None, run_id: str, *,
                 fingerprint: str, model_version: int, take: Take, settings: Snapshots) -> None:
        self.driver = driver
        self.gate = gate
        self.writer = writer
        self.run_id = run_id
        self.fingerprint = fingerprint
        self.model_version = model_version
        self._take = take
        self.settings = settings
        self.failed = 0
        self.last: Snapshot | None = None  # the newest written
        self._last_inputs = sum(gate.input_seqs.values())
        self._last_at = time.monotonic()
        self._stopped = False

    def take(self, *, stop_driver: bool = False) -> asyncio.Future[tuple[Snapshot, bytes]]:
        """The model's snapshot, after every input submitted so far and before any submitted later,
        with its envelope as JSON; ``stop_driver``: the driver stops right after it (a shutdown)."""
        inputs = dict(self.gate.input_seqs)
        at = self.gate.last_at = max(self.gate.last_at, self.driver.stamp())
        driver = self.driver

        def capture(sim: Simulation) -> tuple[Snapshot, bytes]:
            if stop_driver:
                driver.stop()
            document = self._take(sim)
            output = {str(plant): int(seq) for plant, seq in document["record_seqs"].items()}
            snapshot = Snapshot(self.run_id, self.fingerprint, self.model_version, sim.now, inputs, output,
                                time.time(), document, wire.new_snapshot_id())
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
                snapshot, raw = await self.take()
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
