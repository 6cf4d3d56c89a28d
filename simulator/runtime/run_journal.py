"""The service's journal of its run: starting a run, recovering one, checkpoints and the clock.

- A new run writes, for every plant, a ``start`` entry (run id, seed, config fingerprint, the
  instant of simulated time 0) and a ``clock`` entry.
- A run found in the journal (:mod:`simulator.runtime.recovery`) is recovered: from its newest
  usable snapshot (the service restored the model from it) or from the start, every input after
  the snapshot applies again at its instant, as fast as possible; output records up to each
  plant's newest checkpoint are not published again (Kafka has them), later ones are, with the
  same event ids.
  Then the run goes live: in paced mode it catches up the time the service was down
  (``simulation.after_downtime: catch_up``, as if the plant had kept running) or skips it
  (``skip``), and writes a ``clock`` entry.  New inputs apply no earlier than where the stopped
  process may have published output (its newest checkpoint; in paced mode with ``catch_up``, the
  instant the catching up reaches, which the stopped process cannot have passed): applied earlier,
  they would change records already published under the same event ids.
- Every second, and at shutdown, a ``checkpoint`` entry per plant says up to which record its
  output is in Kafka; a ``clock`` entry follows every pause, resume and speed change.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from simulator.asyncio_waits import wait_event
from simulator.formats.journal import Checkpoint, ClockSet, Entry, RunStart
from simulator.formats.snapshot import Clock, Snapshot
from simulator.model.inputs import apply_all
from simulator.model.records import Record, Sink
from simulator.model.simulation import Simulation
from simulator.runtime.driver import Driver
from simulator.runtime.gate import InputGate
from simulator.runtime.recovery import RunHistory

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0  # a checkpoint (and lease) entry per plant at least this often, when something changed
LEASE_WALL_S = 2.0  # a lease reaches about this much wall time ahead at the driver's pace
MIN_LEASE_S = 1.0  # simulated seconds


class SkipDelivered:
    """A sink in front of the outbox while a run is recovered: a plant's records up to its
    checkpoint are in Kafka already and are dropped."""

    def __init__(self, sink: Sink, through: dict[str, int]) -> None:
        self.sink = sink
        self.through = through

    def emit(self, record: Record) -> None:
        if record.seq > self.through.get(record.location, 0):
            self.sink.emit(record)


class RunJournal:
    def __init__(self, journal: Any, sim: Simulation, driver: Driver, gate: InputGate, run_id: str, *,
                 fingerprint: str, history: RunHistory | None, outbox: Sink, speed: float | None,
                 after_downtime: str, delivered_through: Callable[[], dict[str, int]],
                 snapshot: Snapshot | None = None, may_renew: Callable[[], bool] | None = None) -> None:
        """``snapshot``: the one the model was restored from (recovery replays the inputs after it).
        ``may_renew``: whether the lease may be renewed now (False: this process may no longer own
        the plants, simulated time holds at the lease in force)."""
        self.journal = journal
        self.sim = sim
        self.driver = driver
        self.gate = gate
        self.run_id = run_id
        self.fingerprint = fingerprint
        self.history = history
        self.outbox = outbox
        self.speed = speed
        self.after_downtime = after_downtime
        self.delivered_through = delivered_through
        self.may_renew = may_renew
        self.plants = sorted(sim.config.locations)
        self.live = asyncio.Event()
        self.applied = 0  # inputs applied again so far (recovery progress)
        self.snapshot = snapshot
        self.checkpointed: dict[str, int] = {}
        self.clock: Clock | None = None  # the newest clock entry appended (a snapshot's mark carries it)
        self.commanded = False  # the speed and pause are a runtime command's (kept where the plant moves)
        if history is not None:
            self.checkpointed = {p: h.output_through for p, h in history.plants.items()}
            if snapshot is not None:  # the output a snapshot covers was in Kafka before it was written
                self.checkpointed = {p: max(seq, snapshot.output_through.get(p, 0))
                                     for p, seq in self.checkpointed.items()}
            gate.input_seqs.update({p: h.inputs for p, h in history.plants.items()})
            # orders of the run journaled before: the next snapshots list them until they are committed
            if gate.track_journaled:
                gate.recovered_sources = {where: set(offs) for where, offs in history.sources.items() if offs}
            clock = history.clock()
            if clock is not None:
                self.clock = Clock(clock.at, clock.wall, clock.speed, clock.paused, clock.commanded)

    @property
    def recovering(self) -> bool:
        return self.history is not None and not self.live.is_set()

    def progress(self) -> dict[str, Any] | None:
        if self.history is None:
            return None
        snapshot = self.snapshot
        return {"run_id": self.run_id, "inputs": self.history.inputs, "to_apply": self.to_apply,
                "applied": self.applied, "done": self.live.is_set(),
                "journal_read_from": None if self.history.read_from is None else
                {str(p): o for p, o in sorted(self.history.read_from.items())},
                "snapshot": None if snapshot is None else {
                    "id": snapshot.snapshot_id, "sim_time_s": round(snapshot.sim_time_s, 3),
                    "sim_time_utc": self.sim.calendar_time(snapshot.sim_time_s).isoformat().replace("+00:00", "Z"),
                    "taken_at": snapshot.taken_at_utc, "inputs_through": snapshot.inputs_through}}

    @property
    def to_apply(self) -> int:
        """The inputs recovery applies again: those after the snapshot (all without one)."""
        if self.history is None:
            return 0
        through = self.snapshot.inputs_through if self.snapshot is not None else {}
        return sum(max(0, h.inputs - max(h.base, through.get(p, 0))) for p, h in self.history.plants.items())

    # -- a new run ------------------------------------------------------------------------------------
    def begin(self, paced_from: float = 0.0) -> None:
        """A new run: its start entry, and the clock it paces by (from ``paced_from``: a warm-up's end)."""
        start, seed = self.sim.start, self.sim.seed
        self.journal.append([RunStart(p, self.run_id, seed, self.fingerprint, start) for p in self.plants])
        self._clock_entries(paced_from)

    # -- recovery -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Recover the run (if it is one found in the journal) and go live, while the time lease
        is kept ahead of the driver and checkpoints are written (for as long as the service runs)."""
        leases = asyncio.ensure_future(self._leases())
        try:
            if self.history is not None and not self.live.is_set():
                recovery = asyncio.ensure_future(self._recover(self.history))
                try:  # the lease loop failing (the journal refused an entry) would hold the replay for ever
                    await asyncio.wait([recovery, leases], return_when=asyncio.FIRST_COMPLETED)
                    if not recovery.done():
                        leases.result()  # raises why
                    recovery.result()
                finally:
                    recovery.cancel()
            self.live.set()
            self.driver.on_clock = self._commanded
            await leases
        finally:
            leases.cancel()

    async def _leases(self) -> None:
        """The time lease: simulated time never passes an instant the journal does not have yet.

        Every second, or sooner when the driver reaches the middle of the lease in force, a
        ``checkpoint`` entry per plant says how far its output is in Kafka (``output_seq``) and
        up to which simulated instant its output *may* be (``at``, the new lease: about
        ``LEASE_WALL_S`` of wall time ahead at the current pace).  The driver holds at the lease
        in force (:meth:`Driver.set_lease`) until the next one is acknowledged.  So after a crash
        the journal bounds what the stopped process can have published, and a restart applies new
        inputs no earlier than that
        (:meth:`RunHistory.published_until`): records already published are never made again with
        other contents under the same event ids, whatever the speed."""
        driver, sim, plants = self.driver, self.sim, self.plants
        history = self.history
        frontier = max(sim.now, history.published_until() if history is not None else 0.0)
        driver.set_lease(frontier, frontier)
        span = MIN_LEASE_S
        refused = False  # the lease was last not renewed (may_renew)
        last_wall, last_sim = time.monotonic(), sim.now
        while True:
            await wait_event(driver.lease_wanted, CHECKPOINT_INTERVAL_S)
            driver.lease_wanted.clear()  # the driver sets it again (next turn) while it still wants one
            now_wall = time.monotonic()
            rate = (sim.now - last_sim) / max(now_wall - last_wall, 1e-3)
            last_wall, last_sim = now_wall, sim.now
            next_event = driver.next_due
            held = frontier < next_event < math.inf  # the lease keeps the driver from its next event or call
            # a held driver makes no pace to measure: the lease then reaches past the next event and
            # grows twice as long each time, so no pace can outrun the renewals for long
            span = max(MIN_LEASE_S, max(driver.speed or 0.0, rate) * LEASE_WALL_S, 2 * span if held else 0.0)
            lease = min(max(frontier, (next_event if held else sim.now) + span), sim.calendar_end_s)
            if self.may_renew is not None and not self.may_renew():
                if not refused:
                    log.warning("run %s: the lease is not renewed while this instance may no longer own %s (its "
                                "group session is not confirmed); simulated time holds", self.run_id,
                                ", ".join(plants))
                refused = True
                lease = frontier
            elif refused:
                refused = False
                log.info("run %s: the group session is confirmed again; the lease is renewed", self.run_id)
            through = self.delivered_through()
            seqs = {p: max(through.get(p, 0), self.checkpointed.get(p, 0)) for p in plants}
            if lease <= frontier and all(seqs[p] == self.checkpointed.get(p, 0) for p in plants):
                continue
            await self.journal.append([Checkpoint(p, self.run_id, seqs[p], lease) for p in plants])
            self.checkpointed.update(seqs)
            if lease > frontier:
                frontier = lease
                driver.set_lease(lease, lease - span / 2)

    async def _recover(self, history: RunHistory) -> None:
        snapshot = self.snapshot
        groups = history.replay_order(snapshot.inputs_through if snapshot is not None else None)
        if snapshot is None:
            log.info("recovering run %s: %d inputs of %d plants to apply again", self.run_id, history.inputs,
                     len(history.plants))
        else:
            log.info("recovering run %s from snapshot %s (simulated time %.0f s, taken %s): %d of %d inputs to "
                     "apply again", self.run_id, snapshot.snapshot_id, snapshot.sim_time_s, snapshot.taken_at_utc,
                     self.to_apply, history.inputs)
        started = time.monotonic()
        self.driver.set_speed(None)  # as fast as possible
        futures = [self.driver.schedule(group[0].at, functools.partial(apply_all, items=[e.input for e in group]))
                   for group in groups]
        for future, group in zip(futures, groups, strict=True):
            future.add_done_callback(functools.partial(self._applied, len(group)))
        self.gate.last_at = max([self.gate.last_at, self.sim.now, *(group[0].at for group in groups)])
        await asyncio.gather(*futures)
        self.sim.replace_sink(self.outbox)
        clock = history.clock()
        self.driver.set_speed(self.speed)
        published = history.published_until()
        paced_from = self.sim.now  # the simulated time the driver paces from, now
        if self.speed is not None and clock is not None and self.after_downtime == "catch_up":
            missed = 0.0 if clock.paused or clock.speed is None else max(0.0, time.time() - clock.wall) * clock.speed
            published = max(published, clock.at + missed) if clock.speed is not None else published
            paced_from = max(paced_from, clock.at + missed, published)
        elif self.speed is not None:
            paced_from = max(paced_from, published)  # up to where the stopped process was, then at pace
        paced_from = min(paced_from, self.sim.calendar_end_s)
        if self.speed is not None:
            self.driver.continue_from(paced_from)
        self.gate.last_at = max(self.gate.last_at, min(published, self.sim.calendar_end_s))
        log.info("run %s recovered in %.1f s at %s (simulated time %.0f s); live", self.run_id,
                 time.monotonic() - started, self.sim.calendar_time().isoformat(), self.sim.now)
        self._clock_entries(paced_from)  # where the driver paces from (catching up), not where it is

    def _applied(self, count: int, _: asyncio.Future[Any]) -> None:
        self.applied += count

    # -- checkpoints and the clock ----------------------------------------------------------------------
    def write_checkpoints(self) -> None:
        through, now = self.delivered_through(), self.sim.now
        entries: list[Entry] = [Checkpoint(plant, self.run_id, seq, now) for plant, seq in sorted(through.items())
                                if seq > self.checkpointed.get(plant, 0)]
        if entries:
            self.checkpointed.update({e.plant: e.output_seq for e in entries if isinstance(e, Checkpoint)})
            self.journal.append(entries)

    def _commanded(self) -> None:
        """A runtime command paused, resumed or set the speed."""
        self.commanded = True
        self._clock_entries()

    def _clock_entries(self, at: float | None = None) -> None:
        now, wall, driver = self.sim.now if at is None else max(at, self.sim.now), time.time(), self.driver
        self.clock = Clock(now, wall, driver.speed, driver.paused, self.commanded)
        self.journal.append([ClockSet(p, self.run_id, now, wall, driver.speed, driver.paused, self.commanded)
                             for p in self.plants])

