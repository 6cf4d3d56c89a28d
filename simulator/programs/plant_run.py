"""One run of a set of plants inside the service: its model, driver, input gate, journal and snapshots.

The service (:mod:`simulator.programs.service`) holds the Kafka clients, the outbox and the
publishers, the HTTP server and the MQTT targets; a :class:`PlantRun` holds what belongs to one
run of some of the config's plants:

- the model (:class:`~simulator.model.simulation.Simulation`) of those plants, with the run's
  own start, seed and id, and the driver that paces it;
- the input gate (the one way into the model, journaled) and the command processor;
- finding the run to continue in the journal and the snapshot to restore it from
  (:meth:`find`), recovering it (:class:`~simulator.runtime.run_journal.RunJournal`) and going live;
- its periodic snapshots and its last one at a stop or a hand-over (:meth:`take_last_snapshot`).

A service alone runs one run of all plants.  Instances that share the plants
(``kafka.scale_out``) run one per plant they own: each plant's run is journaled, snapshotted and
recovered on its own, so any instance can take it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from simulator.adapters.journal import JournalWriter
from simulator.adapters.journal_reader import JournalEnds, newest_run_id, read_journal, read_journal_after
from simulator.adapters.snapshots import SnapshotWriter, snapshots_of
from simulator.asyncio_waits import wait_for
from simulator.config.http_sinks import HttpSink
from simulator.config.mqtt import MqttTarget
from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.formats import Format
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.journal import Read, RunStart
from simulator.formats.registry import build_format
from simulator.formats.snapshot import Snapshot, SnapshotCorrupt
from simulator.io_metrics import IoMetrics
from simulator.model import snapshot as model_snapshot
from simulator.model.records import Sink
from simulator.model.simulation import Simulation
from simulator.runtime.commands import CommandProcessor
from simulator.runtime.driver import Driver, StopReason
from simulator.runtime.gate import InputGate
from simulator.runtime.outbox import Outbox
from simulator.runtime.recovery import RunHistory, check_snapshot, run_after_snapshot, run_to_continue
from simulator.runtime.run_journal import RunJournal, SkipDelivered
from simulator.runtime.snapshotter import JournalState, Snapshotter
from simulator.runtime.supervision import ServiceFailed, unless_stopped
from simulator.runtime.warm_up import HideWarmUp

log = logging.getLogger(__name__)

SAMPLE_LIMIT = 20_000  # lead-time samples the statistics keep
SNAPSHOT_CLOCK_SKEW_MS = 60_000  # a run's snapshots are not older than its start entry, give or take this


def plants_config(config: Config, plants: list[str]) -> Config:
    """``config`` cut to ``plants`` (all of them: ``config`` itself).  The machines keep their ids
    and random streams (both come from their location and number in its pool); generated orders
    come at the plants' share of ``arrivals.rate_per_hour`` (by ``arrivals.location_mix``)."""
    if sorted(plants) == sorted(config.locations):
        return config
    arrivals = config.arrivals
    mix = {config.location_of(name) or name: weight for name, weight in (arrivals.location_mix or {}).items()} \
        or dict.fromkeys(config.locations, 1.0)
    share = sum(mix.get(p, 0.0) for p in plants) / sum(mix.values())
    data = config.model_dump(mode="python")
    data["locations"] = {name: data["locations"][name] for name in config.locations if name in plants}
    data["arrivals"] = {**data["arrivals"], "location_mix": {p: mix[p] for p in plants if mix.get(p, 0.0) > 0}
                        or dict.fromkeys(plants, 1.0),
                        "rate_per_hour": max(arrivals.rate_per_hour * share, 1e-9)}
    cut = type(config).model_validate(data)
    cut.__dict__["warm_up_s"] = config.warm_up_s  # one warm-up for every plant of the config
    return cut


class PlantRun:
    """The run of ``plants`` (see the module docstring)."""

    def __init__(self, config: Config, plants: list[str], *, outbox: Outbox, speed: float | None,
                 metrics: IoMetrics, delivery_targets: Sequence[MqttTarget | HttpSink], fresh: bool, start_now: bool,
                 fresh_before_ms: int | None = None, keep_clock: bool = False) -> None:
        """``config``: the whole config (the run's is cut from it).  ``fresh``: start a new run
        even if the journal holds one to continue (``fresh_before_ms``: only if that run started
        before this instant, in milliseconds since the epoch).  ``start_now``: a new run's
        simulated time 0 is the instant it goes live.  ``keep_clock``: a run continued here whose speed
        or pause a runtime command set goes on so (its journal's newest clock entry says): a plant
        taken over from another instance keeps what a command made of it there; otherwise, and at a
        restart of a service alone, the config's speed applies."""
        self.plants = sorted(plants)
        self.key = ",".join(self.plants)
        self.config = plants_config(config, self.plants)
        self.full_config = config
        self.outbox = outbox
        self.speed = speed
        self.metrics = metrics
        self.delivery_targets = delivery_targets
        self.fresh = fresh
        self.fresh_before_ms = fresh_before_ms
        self.start_now = start_now
        self.keep_clock = keep_clock
        self.pause_when_live = False  # (keep_clock) the plant was paused where it ran before
        self.commanded_clock = False  # (keep_clock) it goes on with a runtime command's speed and pause
        self.warm_up_s = config.warm_up_s
        self.history: RunHistory | None = None  # the run found in the journal, to recover
        self.snapshot: Snapshot | None = None  # the one the recovered run's model was restored from
        self.run_journal: RunJournal | None = None
        self.snapshot_writer: SnapshotWriter | None = None
        self.snapshotter: Snapshotter | None = None
        self.delivery_formats: dict[str, Format] = {}  # MQTT target or HTTP sink -> its format for this run
        self.tasks: list[asyncio.Task[Any]] = []  # the run's loops, while it runs
        self.stopped = False
        self.build_model(config.simulation.start, config.simulation.seed, uuid.uuid4().hex[:16])

    # -- the model -----------------------------------------------------------------------------------
    def run_config(self, start: dt.datetime, seed: int) -> Config:
        return self.config.model_copy(update={"simulation": self.config.simulation.model_copy(
            update={"start": start, "seed": seed})})

    def sink(self, skip_through: dict[str, int] | None) -> Sink:
        live = self.live_sink
        return live if skip_through is None else SkipDelivered(live, skip_through)

    def build_model(self, start: dt.datetime, seed: int, run_id: str, skip_through: dict[str, int] | None = None,
                    restored: Simulation | None = None) -> None:
        """The model of the run ``run_id`` and what depends on it (built again for a run found in
        the journal: its own start, seed and id; ``skip_through``: the output Kafka has already;
        ``restored``: the model as a snapshot had it)."""
        config = self.run_config(start, seed)
        old = getattr(self, "driver", None)
        if old is not None:
            old.abandon()  # (not started yet: nothing waits on it)
        self.run_id = run_id
        # what the model says during the warm-up (simulation.warm_up) is not published
        self.live_sink: Sink = HideWarmUp(self.outbox, self.warm_up_s) if self.warm_up_s > 0 else self.outbox
        self.sim = restored if restored is not None else \
            Simulation(config, self.sink(skip_through), sample_limit=SAMPLE_LIMIT,
                       arrivals_key=None if self.config is self.full_config else self.key)
        self.driver = Driver(self.sim, speed=self.speed, outbox=self.outbox)
        self.format = CoffeeMekFormat(config, seed, run_id=run_id)
        self.inputs = InputGate(self.driver)  # the one way into the model (journaled once Kafka is up)
        self.commands = CommandProcessor(self.driver, self.metrics, inputs=self.inputs, refusal=self.refusal)
        self.delivery_formats = {t.name: build_format(t.format, config, seed, run_id=run_id,
                                                      topic_template=t.topic_template)
                                 for t in self.delivery_targets}

    def start_at_go_live(self) -> None:
        """``run --start now`` for a new run: simulated time 0 is this instant (less the warm-up)."""
        if self.history is None and self.start_now:
            now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.warm_up_s)
            self.build_model(now.replace(microsecond=now.microsecond // 1000 * 1000), self.sim.seed, self.run_id)

    def start_arrivals(self) -> None:
        """Generated orders of a new run (a restored model has its own arrivals): without end when
        the plant generates its orders in service, else during the warm-up only."""
        if self.snapshot is not None or self.history is not None:
            return
        if self.config.arrivals.in_service:
            self.sim.start_arrivals(code_prefix=f"L-{self.run_id[:6]}")
        elif self.warm_up_s > 0:
            self.sim.start_arrivals(code_prefix=f"L-{self.run_id[:6]}", until=self.warm_up_s)

    # -- state --------------------------------------------------------------------------------------
    def live(self) -> bool:
        """The run is live: recovered (if it was one to continue) and past its warm-up."""
        return self.run_journal is not None and self.run_journal.live.is_set() and not self.warming_up

    @property
    def warming_up(self) -> bool:
        return self.sim.now < self.warm_up_s

    @property
    def recovering(self) -> bool:
        return self.run_journal is not None and self.run_journal.recovering

    def refusal(self, is_input: bool) -> str | None:
        """Why a command is not taken now: a model input before the run is live (it would enter
        without a journal entry, or in the middle of a recovery); any command during a recovery."""
        if self.stopped:
            return "the plant is being handed over to another instance; send the command again"
        if self.recovering:
            return ("the run is being recovered from the journal; commands are taken once it is live (GET /health "
                    "shows the progress)")
        if is_input and self.warming_up:
            return (f"the run is warming up (simulated {self.sim.now:,.0f} of {self.warm_up_s:,.0f} s); commands "
                    "that change the model are taken once it is live")
        if is_input and not self.live():
            return "the service is starting; commands that change the model are taken once it runs"
        return None

    def delivered_through(self, delivered: dict[str, int]) -> dict[str, int]:
        """Per plant of the run, the record number up to which the output is done: in Kafka
        (``delivered``, the publisher's), or hidden as part of the warm-up (never to be published)."""
        hidden = self.live_sink.through if isinstance(self.live_sink, HideWarmUp) else {}
        return {plant: max(delivered.get(plant, 0), hidden.get(plant, 0)) for plant in self.plants
                if plant in delivered or plant in hidden}

    # -- finding the run to continue ---------------------------------------------------------------------
    async def find(self, options: dict[str, Any]) -> None:
        """The run to continue, from the journal and the snapshots: the model is built again as
        its newest usable snapshot has it (or empty: the whole journal applies again), with the
        run's start, seed and id.  Nothing to continue (or ``fresh``): a new run."""
        restored = None if self.fresh and self.fresh_before_ms is None else await self._find_run(options)
        history = self.history
        if history is None:
            return
        skip_through = {p: h.output_through for p, h in history.plants.items()}
        clock = history.clock()
        self.commanded_clock = self.keep_clock and clock is not None and clock.commanded
        if self.commanded_clock and clock is not None:
            self.speed, self.pause_when_live = clock.speed, clock.paused
        self.build_model(history.start, history.seed, history.run_id, skip_through, restored)
        log.info("continuing run %s of %s from the journal (%d inputs: %s; started %s)%s", history.run_id,
                 ", ".join(self.plants), history.inputs,
                 ", ".join(f"{p} {h.inputs}" for p, h in history.plants.items()), history.start.isoformat(),
                 "" if self.snapshot is None else
                 f" and snapshot {self.snapshot.snapshot_id} (simulated time {self.snapshot.sim_time_s:.0f} s)")

    def _mine(self, reads: list[Read]) -> list[Read]:
        """The journal entries of this run's plants (instances sharing plants share the journal)."""
        if self.config is self.full_config:
            return reads
        plants = set(self.plants)
        return [r for r in reads if getattr(r.entry, "plant", None) in plants]

    def _check_mode(self, fingerprint: str, run_id: str) -> None:
        """A run of every plant together (written with ``kafka.scale_out`` off) cannot be continued
        plant by plant: a clear ConfigError saying how to go on."""
        full = self.full_config.model_fingerprint
        if self.config is not self.full_config and fingerprint == full != self.config.model_fingerprint:
            raise ConfigError([f"kafka.scale_out.enabled: the journal's run {run_id} runs every plant together (it "
                               f"was written with kafka.scale_out off); with scale_out each plant has a run of its "
                               f"own: start the instances with `factorysim run --fresh` (the old run stays in the "
                               f"journal), or turn kafka.scale_out off to continue it"])

    async def _find_run(self, options: dict[str, Any]) -> Simulation | None:
        """The run to continue (``self.history``; None: the journal has none) and its model as its
        newest usable snapshot has it (``self.snapshot``; None: the model starts empty and the
        whole journal applies again).  With a snapshot that marks where the journal stood, only
        the journal after that mark is read; otherwise all of it."""
        kafka = self.config.kafka
        if self.fresh:  # only runs begun since this instance started (by other fresh instances) count
            reads = self._mine(await read_journal(options, kafka.topics.journal))
            assert self.fresh_before_ms is not None
            newer = {r.entry.run_id for r in reads if isinstance(r.entry, RunStart)
                     and r.timestamp_ms >= self.fresh_before_ms}
            reads = [r for r in reads if getattr(r.entry, "run_id", None) in newer]
            history = run_to_continue(reads, self.config, kafka.topics.journal) if newer else None
            if history is None:
                return None
            self.history = history
            return await self._restore(options, history, {p: h.output_through for p, h in history.plants.items()})
        if kafka.snapshots.enabled:
            run_id = await newest_run_id(options, kafka.topics.journal, plants=None if self.config is
                                         self.full_config else set(self.plants))
            if run_id is not None:
                restored = await self._from_marked_snapshot(options, run_id)
                if restored is not None:
                    return restored
        reads = self._mine(await read_journal(options, kafka.topics.journal))
        starts = [r for r in reads if isinstance(r.entry, RunStart)]
        if starts:
            newest = max(starts, key=lambda r: (r.timestamp_ms, r.partition, r.offset)).entry
            assert isinstance(newest, RunStart)
            self._check_mode(newest.fingerprint, newest.run_id)
        history = run_to_continue(reads, self.config, kafka.topics.journal)
        if history is None:
            return None
        self.history = history
        return await self._restore(options, history, {p: h.output_through for p, h in history.plants.items()})

    async def _from_marked_snapshot(self, options: dict[str, Any], run_id: str) -> Simulation | None:
        """The model of run ``run_id`` from its newest usable snapshot and the journal after that
        snapshot's mark (sets ``self.history`` and ``self.snapshot``); None when the newest
        snapshot has no mark, the journal does not continue it there, or none can be used."""
        kafka = self.config.kafka
        topic, journal_topic = kafka.topics.snapshots, kafka.topics.journal
        async with contextlib.aclosing(snapshots_of(options, topic, run_id)) as snapshots:
            async for snapshot in snapshots:
                mark = snapshot.journal
                if mark is None:
                    return None
                self._check_mode(snapshot.fingerprint, run_id)
                reads = await read_journal_after(options, journal_topic, mark.offsets, mark.partitions)
                mine = None if reads is None else self._mine(reads)
                history = None if mine is None else run_after_snapshot(mine, snapshot, self.config, journal_topic)
                if history is None:
                    return None
                try:
                    check_snapshot(snapshot, history, self.config, model_snapshot.SNAPSHOT_VERSION, topic)
                    sim = model_snapshot.restore(self.run_config(history.start, history.seed),
                                                 self.sink({p: h.output_through for p, h in history.plants.items()}),
                                                 snapshot.document, sample_limit=SAMPLE_LIMIT)
                except (SnapshotCorrupt, model_snapshot.SnapshotError) as exc:
                    log.warning("snapshot %s of run %s cannot be used (%s); trying the one before it",
                                snapshot.snapshot_id, run_id, exc)
                    continue
                log.info("run %s: the journal is read from snapshot %s's mark on (%d entries)", run_id,
                         snapshot.snapshot_id, len(mine or ()))
                self.history, self.snapshot = history, snapshot
                return sim
        return None

    async def _restore(self, options: dict[str, Any], history: RunHistory,
                       skip_through: dict[str, int]) -> Simulation | None:
        """The model of the run as its newest usable snapshot has it (and ``self.snapshot``), or
        None: no snapshot (or none usable), the whole journal applies again.  A snapshot of another
        config or model version stops the start (ConfigError)."""
        kafka = self.config.kafka
        if not kafka.snapshots.enabled:
            return None
        topic, config = kafka.topics.snapshots, self.run_config(history.start, history.seed)
        snapshots = snapshots_of(options, topic, history.run_id,
                                 not_before_ms=history.started_ms - SNAPSHOT_CLOCK_SKEW_MS)
        async with contextlib.aclosing(snapshots):
            async for snapshot in snapshots:
                try:
                    check_snapshot(snapshot, history, self.config, model_snapshot.SNAPSHOT_VERSION, topic)
                    sim = model_snapshot.restore(config, self.sink(skip_through), snapshot.document,
                                                 sample_limit=SAMPLE_LIMIT)
                except (SnapshotCorrupt, model_snapshot.SnapshotError) as exc:
                    log.warning("snapshot %s of run %s cannot be used (%s); trying the one before it",
                                snapshot.snapshot_id, history.run_id, exc)
                    continue
                self.snapshot = snapshot
                return sim
        log.info("no usable snapshot of run %s on %s: the whole journal applies again", history.run_id, topic)
        return None

    # -- journal and snapshots, once Kafka is up ---------------------------------------------------------
    def attach(self, journal: JournalWriter, journal_ends: JournalEnds, snapshot_writer: SnapshotWriter | None,
               delivered: Callable[[], dict[str, int]],
               committed_orders: Callable[[], dict[tuple[str, int], int]],
               may_renew: Callable[[], bool] | None = None) -> None:
        """Journal the run (a new one gets its start entries here) and snapshot it.  ``delivered``:
        the publisher's output in Kafka per plant; ``committed_orders``: the order offsets committed;
        ``may_renew``: whether its time lease may be renewed now (see :class:`RunJournal`)."""
        kafka = self.config.kafka
        self.inputs.journal, self.inputs.run_id = journal, self.run_id
        self.inputs.track_journaled = kafka.snapshots.enabled  # a snapshot's mark lists them
        self.snapshot_writer = snapshot_writer
        self.run_journal = run_journal = RunJournal(
            journal, self.sim, self.driver, self.inputs, self.run_id, fingerprint=self.config.model_fingerprint,
            history=self.history, outbox=self.live_sink, speed=self.speed,
            after_downtime=self.config.simulation.after_downtime,
            delivered_through=lambda: self.delivered_through(delivered()), snapshot=self.snapshot,
            may_renew=may_renew)
        run_journal.commanded = self.commanded_clock
        self.snapshotter = Snapshotter(self.driver, self.inputs, snapshot_writer, self.run_id,
                                       fingerprint=self.config.model_fingerprint,
                                       model_version=model_snapshot.SNAPSHOT_VERSION, take=model_snapshot.take,
                                       settings=kafka.snapshots,
                                       journal=JournalState(journal_ends.ends, lambda: run_journal.clock,
                                                            committed_orders))
        if self.history is None:
            run_journal.begin(paced_from=self.warm_up_s)

    # -- loops --------------------------------------------------------------------------------------------
    async def drive(self) -> None:
        fresh = self.history is None
        reason = await self.driver.run(paced_from=self.warm_up_s if fresh and self.warm_up_s > 0 else None)
        if reason is StopReason.CALENDAR_END:
            end = self.sim.calendar_time()
            raise ServiceFailed(f"simulated time reached the end of the calendar ({end:%Y-%m-%d}): nothing can be "
                                f"simulated after it; start the run at an earlier instant")

    async def snapshots(self) -> None:
        """Periodic snapshots once the run is live."""
        assert self.run_journal is not None
        await self.run_journal.live.wait()
        if self.snapshotter is not None:
            await self.snapshotter.run()

    async def ready_for_inputs(self, stopped: asyncio.Event) -> bool:
        """Wait until the run takes inputs from outside: recovered and past its warm-up (the
        warm-up's lots are the model's own); False when ``stopped`` came first."""
        assert self.run_journal is not None
        if not await unless_stopped(self.run_journal.live.wait(), stopped):
            return False
        if self.pause_when_live:
            self.pause_when_live = False
            self.driver.pause()  # (its clock entry says so)
        if self.warming_up:
            return await unless_stopped(self.driver.passed(self.warm_up_s), stopped)
        return True

    async def export_snapshot(self, timeout_s: float = 10.0) -> bytes | None:
        """The live model's snapshot as the envelope's JSON, or None when the run is not live or the
        driver does not take it in time."""
        if not self.live() or self.snapshotter is None or self.stopped:
            return None
        try:
            _, raw = await wait_for(self.snapshotter.take(), timeout_s)
        except TimeoutError:
            return None
        return raw

    async def take_last_snapshot(self, driver_task: asyncio.Task[Any] | None, budget_s: float,
                                 failed: bool) -> tuple[Snapshot, bytes] | None:
        """The model's state after the last inputs, taken by the driver, which stops right after it
        (None when snapshots are off, the run is not live or failed, or it takes too long)."""
        snapshotter = self.snapshotter
        if snapshotter is None:
            return None
        snapshotter.stop()
        done = driver_task is not None and driver_task.done()
        if self.snapshot_writer is None or not self.live() or done or failed:
            return None
        try:
            return await wait_for(snapshotter.take_marked(stop_driver=True, mark_timeout_s=budget_s / 2), budget_s)
        except TimeoutError:
            log.warning("no last snapshot of run %s (the driver did not take it within %.1f s); the next start "
                        "replays the journal after the newest snapshot", self.run_id, budget_s)
        except Exception:  # the stop goes on without it
            log.exception("the last snapshot of run %s could not be taken; the next start replays the journal "
                          "after the newest snapshot", self.run_id)
        return None
