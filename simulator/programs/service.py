"""The service (``factorysim run``): wiring of broker, Kafka clients, driver, HTTP and systemd.

Components are async context managers composed with an ``AsyncExitStack``; the loops run in
one ``TaskGroup`` with named tasks, so a dying loop fails the app instead of hanging it.
Shutdown (first SIGTERM/SIGINT; a second one exits at once):

1. stop flag, readiness turns 503, systemd STOPPING=1;
2. stop order intake (no new messages are read);
3. take a last snapshot after the last inputs, stop the driver right there, close the outbox and let
   the publisher deliver all of it;
4. write the journal's last checkpoints and the last snapshot (the next start replays nothing), and
   commit every order offset that is done;
5. let the MQTT targets publish what they queued and disconnect;
6. stop the Kafka clients, then the HTTP server, then the embedded broker.

Each stage has its share of ``shutdown_timeout_s``.

Failures (see :mod:`simulator.runtime.supervision`): every loop runs under the supervisor; one
that fails (or ends on its own) makes ``/health`` 503 at once, is logged once, and stops the
service the same way, within ``FAILURE_SHUTDOWN_S``; ``run`` then raises ``ServiceFailed`` (exit
code 1), and with ``hard_exit`` the process ends by ``FAILURE_EXIT_S`` whatever hangs.  A stop
asked for during start-up (Kafka unreachable, say) ends the start at once.  The systemd watchdog
is fed only while the service makes progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.http import HttpServer
from simulator.adapters.journal import JournalWriter
from simulator.adapters.journal_reader import JournalEnds, newest_run_id, read_journal, read_journal_after
from simulator.adapters.kafka_admin import StartupProblem, ensure_topics
from simulator.adapters.kafka_options import client_options, consumer_options, orders_fetch_options, producer_options
from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.adapters.mqtt import MqttPublisher, MqttTargetMetrics
from simulator.adapters.order_intake import OrderIntake
from simulator.adapters.snapshots import SnapshotWriter, snapshots_of
from simulator.adapters.systemd import SystemdNotifier
from simulator.asyncio_waits import wait_for
from simulator.config.mqtt import MqttTarget
from simulator.config.schema import Config
from simulator.errors import CommandRejected
from simulator.formats import Format
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.registry import build_format
from simulator.formats.snapshot import Snapshot, SnapshotCorrupt
from simulator.formats.timestamps import epoch_ms
from simulator.interfaces import RUNNING, STARTING, STOPPED, STOPPING, HealthStatus
from simulator.io_metrics import IoMetrics
from simulator.model import snapshot as model_snapshot
from simulator.model.records import Record, Sink
from simulator.model.simulation import Simulation
from simulator.orders import OrderParser
from simulator.programs.stats_log import Growth, StatsLog, dropped_note
from simulator.runtime.commands import CommandProcessor
from simulator.runtime.driver import Driver, StopReason
from simulator.runtime.faults import FaultDrill, fail_in_step
from simulator.runtime.gate import InputGate
from simulator.runtime.gc_tuning import fewer_young_collections
from simulator.runtime.health import health_status, kafka_reasons
from simulator.runtime.outbox import Outbox
from simulator.runtime.recovery import RunHistory, check_snapshot, run_after_snapshot, run_to_continue
from simulator.runtime.run_journal import RunJournal, SkipDelivered
from simulator.runtime.signals import install_stop_signals
from simulator.runtime.snapshotter import JournalState, Snapshotter
from simulator.runtime.supervision import (
    FAILURE_SHUTDOWN_S,
    ExitDeadline,
    Failure,
    ServiceFailed,
    Supervisor,
    unless_stopped,
    utc_text,
)
from simulator.runtime.warm_up import HideWarmUp

log = logging.getLogger(__name__)

STALL_S = 5.0  # the driver turns at least every 0.25 s; this long without a turn is a stall
STOP_GRACE_S = 10.0  # a stop asked for ends the process at the latest this long after the shutdown budget
SAMPLE_LIMIT = 20_000  # lead-time samples the statistics keep
SNAPSHOT_CLOCK_SKEW_MS = 60_000  # a run's snapshots are not older than its start entry, give or take this

class Service:
    def __init__(self, config: Config, *, outbox_capacity: int = 20_000,
                 shutdown_timeout_s: float = 20.0, probe_interval_s: float = 2.0,
                 environ: dict[str, str] | None = None, hard_exit: bool = False,
                 fault: FaultDrill | None = None, fresh: bool = False, start_now: bool = False) -> None:
        """``hard_exit``: end the process (``os._exit``) when a failure or a stop does not finish in
        time (the command line sets it; tests and embedding programs do not).  ``fault``: a drill.
        ``fresh``: start a new run even if the journal holds one to continue.  ``start_now``: a new
        run's simulated time 0 is the instant it goes live (``run --start now``), not
        ``simulation.start``."""
        self.config = config
        self.start_now = start_now
        self.warm_up_s = config.warm_up_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.probe_interval_s = probe_interval_s
        self.environ = environ
        self.instance = uuid.uuid4().hex[:12]
        self.fresh = fresh
        self.metrics = IoMetrics()
        self.outbox = Outbox(outbox_capacity)
        speed = config.simulation.speed
        self.speed = None if speed == "max" else float(speed)
        self.journal: JournalWriter | None = None
        self.run_journal: RunJournal | None = None
        self.history: RunHistory | None = None  # the run found in the journal, to recover
        self.snapshot: Snapshot | None = None  # the one the recovered run's model was restored from
        self.snapshot_writer: SnapshotWriter | None = None
        self.snapshotter: Snapshotter | None = None  # once Kafka is up
        self.mqtt: list[MqttPublisher] = []
        self._build_model(config.simulation.start, config.simulation.seed, uuid.uuid4().hex[:16])
        self.mqtt = [MqttPublisher(target, self._mqtt_format(target), instance=self.instance, environ=environ,
                                   on_command=self._mqtt_command)
                     for target in config.mqtt.enabled_targets]
        for publisher in self.mqtt:
            self.outbox.add_tap(publisher)
        self.metrics.registry.register(MqttTargetMetrics(self.mqtt))
        self.state = STARTING
        self.started_monotonic = time.monotonic()
        self.bootstrap_servers = config.kafka.bootstrap_servers
        self.broker: EmbeddedBroker | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.publisher: KafkaPublisher | None = None
        self.intake: OrderIntake | None = None
        self.kafka_reachable = False
        self.notifier = SystemdNotifier(environ)
        self.http: HttpServer | None = None
        self.http_port: int | None = None
        self.fault = fault
        self.startup_problem: StartupProblem | None = None  # the latest start-up attempt's error
        self._stop_requested = asyncio.Event()
        self.ready_event = asyncio.Event()
        self.supervisor = Supervisor(self.request_stop, hard_exit=hard_exit, on_failure=self._failed)
        self._stop_deadline = ExitDeadline(hard_exit)

    def _run_config(self, start: dt.datetime, seed: int) -> Config:
        return self.config.model_copy(update={"simulation": self.config.simulation.model_copy(
            update={"start": start, "seed": seed})})

    def _sink(self, skip_through: dict[str, int] | None) -> Sink:
        live = self.live_sink
        return live if skip_through is None else SkipDelivered(live, skip_through)

    def _build_model(self, start: dt.datetime, seed: int, run_id: str, skip_through: dict[str, int] | None = None,
                     restored: Simulation | None = None) -> None:
        """The model of the run ``run_id`` and what depends on it (built again for a run found in
        the journal: its own start, seed and id; ``skip_through``: the output Kafka has already;
        ``restored``: the model as a snapshot had it)."""
        config = self._run_config(start, seed)
        self.run_id = run_id
        # what the model says during the warm-up (simulation.warm_up) is not published
        self.live_sink: Sink = HideWarmUp(self.outbox, self.warm_up_s) if self.warm_up_s > 0 else self.outbox
        self.sim = restored if restored is not None else \
            Simulation(config, self._sink(skip_through), sample_limit=SAMPLE_LIMIT)
        self.driver = Driver(self.sim, speed=self.speed, outbox=self.outbox)
        self.format = CoffeeMekFormat(config, seed, run_id=run_id)
        self.inputs = InputGate(self.driver)  # the one way into the model (journaled once Kafka is up)
        self.commands = CommandProcessor(self.driver, self.metrics, inputs=self.inputs, refusal=self._refusal)
        for publisher in self.mqtt:
            publisher.fmt = self._mqtt_format(publisher.target)

    def _mqtt_format(self, target: MqttTarget) -> Format:
        """The target's format for the run's model: its calendar (start) and seed."""
        return build_format(target.format, self._run_config(self.sim.start, self.sim.seed), self.sim.seed,
                            run_id=self.run_id,
                            topic_template=target.topic_template)

    def _live(self) -> bool:
        """The run is live: recovered (if it was one to continue) and past its warm-up."""
        return self.run_journal is not None and self.run_journal.live.is_set() and not self.warming_up

    @property
    def warming_up(self) -> bool:
        return self.sim.now < self.warm_up_s

    def _refusal(self, is_input: bool) -> str | None:
        """Why a command is not taken now: a model input before the run is live (it would enter
        without a journal entry, or in the middle of a recovery); any command during a recovery."""
        if self.run_journal is not None and self.run_journal.recovering:
            return ("the run is being recovered from the journal; commands are taken once it is live (GET /health "
                    "shows the progress)")
        if is_input and self.warming_up:
            return (f"the run is warming up (simulated {self.sim.now:,.0f} of {self.warm_up_s:,.0f} s); commands "
                    "that change the model are taken once it is live")
        if is_input and not self._live():
            return "the service is starting; commands that change the model are taken once it runs"
        return None

    # -- lifecycle ----------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self._stop_requested.is_set():
            self.supervisor.stopping = True  # from now on a loop may end (the intake does, before it reads)
            self._stop_requested.set()
            self._stop_deadline.arm(self.shutdown_timeout_s + STOP_GRACE_S, 1, "stop")

    def install_signal_handlers(self) -> None:
        install_stop_signals(self.request_stop)

    async def run(self, extra_tasks: list[Callable[[Service], Any]] | None = None) -> None:
        """Start everything, run until asked to stop, shut down in order.  Raises ServiceFailed when
        a loop failed."""
        try:
            async with AsyncExitStack() as stack:
                stack.enter_context(fewer_young_collections())
                self.http = http = HttpServer(self, self.config.http.host, self.config.http.port)
                await http.start()
                stack.push_async_callback(http.stop)
                self.http_port = http.port
                if not await unless_stopped(self._start(stack), self._stop_requested):
                    log.info("stopped during start-up")
                    return
                self.state = RUNNING
                self.ready_event.set()
                self.notifier.ready(f"simulating, Kafka {self.bootstrap_servers}")
                log.info("factorysim running: Kafka %s, orders from %s, health on port %s, speed %s",
                         self.bootstrap_servers, self.config.kafka.topics.orders, self.http_port,
                         self.config.simulation.speed)
                await self._run_loops(extra_tasks or [])
                await self.supervisor.report_failure()
        finally:
            self.state = STOPPED
            self._stop_deadline.cancel()
        self.supervisor.raise_if_failed()
        log.info("factorysim stopped")

    async def _start(self, stack: AsyncExitStack) -> None:
        if self.bootstrap_servers == "embedded":
            self.broker = EmbeddedBroker.from_config(self.config.kafka.embedded, self.environ)
            stack.push_async_callback(self.broker.stop)
            await self.broker.start()
            self.bootstrap_servers = self.broker.bootstrap_servers
        await self._start_kafka(stack)
        if self.snapshot is None:  # (a restored model has its own arrivals)
            # the driver is not stepping yet: safe to start directly; a warm-up takes generated
            # orders until it ends when the plant has no order feed of its own
            if self.config.arrivals.in_service:
                self.sim.start_arrivals(code_prefix=f"L-{self.run_id[:6]}")
            elif self.warm_up_s > 0:
                self.sim.start_arrivals(code_prefix=f"L-{self.run_id[:6]}", until=self.warm_up_s)

    def _startup_retry(self, problem: StartupProblem) -> None:
        self.startup_problem = problem

    async def _start_kafka(self, stack: AsyncExitStack) -> None:
        kafka = self.config.kafka
        options = client_options(kafka, self.bootstrap_servers, self.environ)
        await ensure_topics(options, self._topics(), kafka.topic_creation, timeout_s=kafka.startup_timeout_s,
                            on_retry=self._startup_retry)
        self.startup_problem = None
        self.kafka_reachable = True
        restored = None if self.fresh else await self._find_run(options)
        if self.history is not None:
            history = self.history
            skip_through = {p: h.output_through for p, h in history.plants.items()}
            self._build_model(history.start, history.seed, history.run_id, skip_through, restored)
            log.info("continuing run %s from the journal (%d inputs: %s; started %s)%s", history.run_id,
                     history.inputs, ", ".join(f"{p} {h.inputs}" for p, h in history.plants.items()),
                     history.start.isoformat(), "" if self.snapshot is None else
                     f" and snapshot {self.snapshot.snapshot_id} (simulated time {self.snapshot.sim_time_s:.0f} s)")
        self.producer = AIOKafkaProducer(**options, **producer_options(kafka.producer))
        stack.push_async_callback(self._stop_producer)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **options, **consumer_options(kafka.consumer, kafka.consumer.group_id),
            **orders_fetch_options(kafka.consumer),
        )
        stack.push_async_callback(self._stop_consumer)
        await self.consumer.start()
        journal_ends = JournalEnds(options, kafka.topics.journal)
        stack.push_async_callback(journal_ends.close)
        if self.history is None and self.start_now:
            # simulated time 0 is the instant the run goes live, not the instant the command was
            # given: the start-up (embedded broker, topics) would otherwise put every timestamp behind
            # (with a warm-up, the instant the warm-up ends: simulated time 0 lies that much before)
            now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.warm_up_s)
            self._build_model(now.replace(microsecond=now.microsecond // 1000 * 1000), self.sim.seed, self.run_id)
        self.publisher = KafkaPublisher(self.producer, self.outbox, self.format, self.metrics,
                                        max_in_flight=kafka.producer.max_in_flight_messages,
                                        on_connection=lambda _: self._follow_kafka(),
                                        event_time_ms=self._event_time_ms() if kafka.producer.timestamps == "event"
                                        else None)
        self.journal = JournalWriter(self.publisher, kafka.topics.journal)
        self.inputs.journal, self.inputs.run_id = self.journal, self.run_id
        self.inputs.track_journaled = kafka.snapshots.enabled  # a snapshot's mark lists them
        publisher = self.publisher
        self.run_journal = RunJournal(
            self.journal, self.sim, self.driver, self.inputs, self.run_id, fingerprint=self.config.model_fingerprint,
            history=self.history, outbox=self.live_sink, speed=self.speed,
            after_downtime=self.config.simulation.after_downtime,
            delivered_through=self._delivered_through, snapshot=self.snapshot)
        if kafka.snapshots.enabled:
            self.snapshot_writer = SnapshotWriter(publisher, kafka.topics.snapshots, kafka.producer.max_request_bytes,
                                                  self._delivered_through)
        run_journal = self.run_journal
        self.snapshotter = Snapshotter(self.driver, self.inputs, self.snapshot_writer, self.run_id,
                                       fingerprint=self.config.model_fingerprint,
                                       model_version=model_snapshot.SNAPSHOT_VERSION, take=model_snapshot.take,
                                       settings=kafka.snapshots,
                                       journal=JournalState(journal_ends.ends, lambda: run_journal.clock,
                                                            self._committed_orders))
        if self.history is None:
            self.run_journal.begin(paced_from=self.warm_up_s)
        else:
            publisher.delivered_through.update(self.run_journal.checkpointed)
        self.intake = OrderIntake(
            self.consumer, self.publisher, self.inputs,
            OrderParser(self.config.location_of, kafka.consumer.max_order_bytes), self.metrics,
            orders_topic=kafka.topics.orders, dead_letter_topic=kafka.topics.dead_letter,
            max_in_flight=kafka.consumer.max_in_flight_orders, dedup_window_s=kafka.consumer.dedup_window_s,
            max_request_bytes=kafka.producer.max_request_bytes,
            journaled=self.history.sources if self.history is not None else None,
        )
        # subscribed once started: the group join (a new group's first rebalance waits for members
        # for a few seconds) goes on in the background while the run is recovered, not before it
        self.consumer.subscribe([kafka.topics.orders], listener=self.intake)

    def _delivered_through(self) -> dict[str, int]:
        """Per plant, the record number up to which the output is done: in Kafka, or hidden as part
        of the warm-up (never to be published)."""
        assert self.publisher is not None
        delivered = self.publisher.delivered_through
        if not isinstance(self.live_sink, HideWarmUp) or not self.live_sink.through:
            return delivered
        hidden = self.live_sink.through
        return {plant: max(delivered.get(plant, 0), hidden.get(plant, 0)) for plant in {*delivered, *hidden}}

    def _event_time_ms(self) -> Callable[[Record], int]:
        """A record's Kafka timestamp (``kafka.producer.timestamps: event``): the instant its
        payload's timestamps show."""
        instant_ms = epoch_ms(self.sim.start)
        return lambda record: instant_ms(record.sim_time)

    def _topics(self) -> list[str]:
        topics = self.config.kafka.topics
        return [topics.orders, topics.dead_letter, topics.events, topics.journal, topics.snapshots,
                *self.format.cycle_topics.values(), *self.format.sample_topics.values()]

    def _committed_orders(self) -> dict[tuple[str, int], int]:
        return {} if self.intake is None else self.intake.committed_positions()

    async def _find_run(self, options: dict[str, Any]) -> Simulation | None:
        """The run to continue (``self.history``; None: the journal is empty) and its model as its
        newest usable snapshot has it (``self.snapshot``; None: the model starts empty and the
        whole journal applies again).  With a snapshot that marks where the journal stood, only
        the journal after that mark is read; otherwise all of it."""
        kafka = self.config.kafka
        if kafka.snapshots.enabled:
            run_id = await newest_run_id(options, kafka.topics.journal)
            if run_id is not None:
                restored = await self._from_marked_snapshot(options, run_id)
                if restored is not None:
                    return restored
        self.history = history = run_to_continue(await read_journal(options, kafka.topics.journal), self.config,
                                                 kafka.topics.journal)
        if history is None:
            return None
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
                reads = await read_journal_after(options, journal_topic, mark.offsets, mark.partitions)
                history = None if reads is None else run_after_snapshot(reads, snapshot, self.config, journal_topic)
                if history is None:
                    return None
                try:
                    check_snapshot(snapshot, history, self.config, model_snapshot.SNAPSHOT_VERSION, topic)
                    sim = model_snapshot.restore(self._run_config(history.start, history.seed),
                                                 self._sink({p: h.output_through for p, h in history.plants.items()}),
                                                 snapshot.document, sample_limit=SAMPLE_LIMIT)
                except (SnapshotCorrupt, model_snapshot.SnapshotError) as exc:
                    log.warning("snapshot %s of run %s cannot be used (%s); trying the one before it",
                                snapshot.snapshot_id, run_id, exc)
                    continue
                log.info("run %s: the journal is read from snapshot %s's mark on (%d entries)", run_id,
                         snapshot.snapshot_id, len(reads or ()))
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
        topic, config = kafka.topics.snapshots, self._run_config(history.start, history.seed)
        snapshots = snapshots_of(options, topic, history.run_id,
                                 not_before_ms=history.started_ms - SNAPSHOT_CLOCK_SKEW_MS)
        async with contextlib.aclosing(snapshots):
            async for snapshot in snapshots:
                try:
                    check_snapshot(snapshot, history, self.config, model_snapshot.SNAPSHOT_VERSION, topic)
                    sim = model_snapshot.restore(config, self._sink(skip_through), snapshot.document,
                                                 sample_limit=SAMPLE_LIMIT)
                except (SnapshotCorrupt, model_snapshot.SnapshotError) as exc:
                    log.warning("snapshot %s of run %s cannot be used (%s); trying the one before it",
                                snapshot.snapshot_id, history.run_id, exc)
                    continue
                self.snapshot = snapshot
                return sim
        log.info("no usable snapshot of run %s on %s: the whole journal applies again", history.run_id, topic)
        return None

    async def _run_loops(self, extra_tasks: list[Callable[[Service], Any]]) -> None:
        assert self.publisher is not None
        assert self.intake is not None
        assert self.http is not None
        watch, fault = self.supervisor.watch, self.fault

        async with asyncio.TaskGroup() as group:
            def loop(name: str, drill: str, body: Coroutine[Any, Any, Any], until_stopped: bool = True,
                     ) -> asyncio.Task[None]:
                if fault is not None and fault.loop == drill and drill in ("intake", "publisher", "mqtt"):
                    body = fault.failing(body)
                return group.create_task(watch(name, body, until_stopped=until_stopped), name=name)

            publisher = loop("kafka-publisher", "publisher", self.publisher.run())
            intake = loop("order-intake", "intake", self._intake_once_live())
            driver = loop("driver", "driver", self._drive())
            mqtt = [loop(f"mqtt-{p.name}", "mqtt", p.run()) for p in self.mqtt]
            assert self.journal is not None
            assert self.run_journal is not None
            others = [loop("journal", "", self.journal.run()),
                      loop("run-journal", "", self.run_journal.run()),
                      loop("snapshots", "", self._snapshots(), until_stopped=False),
                      loop("http", "http", self.http.serve()),
                      loop("kafka-probe", "", self._probe()),
                      loop("systemd-watchdog", "", self._watchdog(), until_stopped=False)]
            if self.config.logging.stats_interval_s > 0:
                others.append(loop("stats-log", "", StatsLog(self.config.logging.stats_interval_s, self._stats).run()))
            others += [loop(getattr(task, "__name__", "extra"), "", task(self), until_stopped=False)
                       for task in extra_tasks]
            if fault is not None:
                others.append(loop("fault-drill", "", self._drill(fault), until_stopped=False))
            await self._stop_requested.wait()
            self.supervisor.stopping = True
            await self._shutdown(intake, driver, publisher)
            await self._stop_mqtt(mqtt)
            for task in [publisher, intake, driver, *mqtt, *others]:
                task.cancel()

    async def _intake_once_live(self) -> None:
        """Orders are read once the run is live (after a recovery): they enter at the time they came."""
        assert self.intake is not None
        assert self.run_journal is not None
        live = asyncio.ensure_future(self.run_journal.live.wait())
        stopped = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait([live, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            live.cancel()
            stopped.cancel()
        if self.warming_up and not self._stop_requested.is_set():  # (the warm-up's lots are the model's own)
            warmed_up: asyncio.Future[Any] = self.driver.passed(self.warm_up_s)
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop_requested.wait())
            try:
                await asyncio.wait([warmed_up, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
        if not self._stop_requested.is_set():
            await self.intake.run()

    async def _snapshots(self) -> None:
        """Periodic snapshots once the run is live."""
        assert self.run_journal is not None
        await self.run_journal.live.wait()
        if self.snapshotter is not None:
            await self.snapshotter.run()

    async def export_snapshot(self, timeout_s: float = 10.0) -> bytes | None:
        """The live model's snapshot as the envelope's JSON (GET /snapshot), or None when the run
        is not live (starting, recovering, stopping) or the driver does not take it in time."""
        if self.state != RUNNING or not self._live() or self.snapshotter is None:
            return None
        try:
            _, raw = await wait_for(self.snapshotter.take(), timeout_s)
        except TimeoutError:
            return None
        return raw

    async def _drive(self) -> None:
        fresh = self.history is None
        reason = await self.driver.run(paced_from=self.warm_up_s if fresh and self.warm_up_s > 0 else None)
        if reason is StopReason.CALENDAR_END:
            end = self.sim.calendar_time()
            raise ServiceFailed(f"simulated time reached the end of the calendar ({end:%Y-%m-%d}): nothing can be "
                                f"simulated after it; start the run at an earlier instant")

    async def _drill(self, fault: FaultDrill) -> None:
        """The fault drill's failures that happen inside a component rather than as its loop ending."""
        assert self.http is not None
        await asyncio.sleep(fault.after_s)
        if fault.loop == "driver":
            self.driver.call(lambda sim: fail_in_step(sim, fault))
        elif fault.loop == "http":
            self.http.close_listener()

    def _failed(self, failure: Failure) -> None:
        self.notifier.status(f"failed: {failure.task}: {failure.error}"[:200])
        if self.notifier.watchdog_interval_s is not None:
            log.error("not feeding the systemd watchdog: %s failed", failure.task)

    async def _shutdown(self, intake: asyncio.Task[None], driver: asyncio.Task[Any],
                        publisher: asyncio.Task[None]) -> None:
        assert self.intake is not None
        assert self.publisher is not None
        self.state = STOPPING
        self.notifier.stopping()
        budget = self.shutdown_timeout_s if self.supervisor.failure is None else \
            min(self.shutdown_timeout_s, FAILURE_SHUTDOWN_S)
        started = time.monotonic()

        def left(share: float) -> float:
            return max(0.5, min(budget * share, budget - (time.monotonic() - started)))

        self.intake.stop()
        with contextlib.suppress(TimeoutError):
            await wait_for(asyncio.shield(intake), left(0.15))
        intake.cancel()
        final = await self._last_snapshot(driver, left(0.1))
        self.driver.stop()
        with contextlib.suppress(TimeoutError):
            await wait_for(asyncio.shield(driver), left(0.1))
        self.outbox.close()
        try:
            await wait_for(asyncio.shield(publisher), left(0.5))
        except TimeoutError:
            log.error("shutdown: %d records not confirmed by Kafka in time",
                      self.publisher.in_flight + len(self.outbox))
            publisher.cancel()
        try:
            if self.journal is not None and self.run_journal is not None:  # where the output stands, for next time
                self.run_journal.write_checkpoints()
                await wait_for(self.journal.drain(), left(0.15))
            await wait_for(self.intake.drain_dead_letters(), left(0.2))
            await wait_for(self.intake.commit(), left(0.2))
        except TimeoutError:
            log.error("shutdown: could not write the last checkpoints and commit offsets in time")
        if final is not None and self.snapshotter is not None:
            try:
                if await wait_for(self.snapshotter.write(*final, confirm=True), left(0.15)):
                    log.info("last snapshot written: the next start continues at simulated time %.0f s",
                             final[0].sim_time_s)
            except TimeoutError:
                log.warning("shutdown: the last snapshot was not written in time; the next start replays the journal "
                            "after the newest snapshot")

    async def _last_snapshot(self, driver: asyncio.Task[Any], budget_s: float) -> tuple[Snapshot, bytes] | None:
        """The model's state after the last inputs, taken by the driver, which stops right after it
        (None when snapshots are off, the run is not live or failed, or it takes too long)."""
        snapshotter = self.snapshotter
        if snapshotter is None:
            return None
        snapshotter.stop()
        if self.snapshot_writer is None or not self._live() or driver.done() or self.supervisor.failure is not None:
            return None
        try:
            return await wait_for(snapshotter.take_marked(stop_driver=True, mark_timeout_s=budget_s / 2), budget_s)
        except TimeoutError:
            log.warning("shutdown: no last snapshot (the driver did not take it within %.1f s); the next start "
                        "replays the journal after the newest snapshot", budget_s)
        except Exception:  # the stop goes on without it
            log.exception("shutdown: the last snapshot could not be taken; the next start replays the journal after "
                          "the newest snapshot")
        return None

    async def _stop_mqtt(self, tasks: list[asyncio.Task[None]]) -> None:
        """Let the targets publish what they queued (within a budget), then disconnect."""
        for publisher in self.mqtt:
            publisher.finish()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=max(1.0, self.shutdown_timeout_s * 0.25))
        for task in late:
            task.cancel()
        if late:
            left = sum(len(p) + p.session.in_flight for p in self.mqtt)
            log.error("shutdown: %d MQTT records not delivered in time", left)
            await asyncio.wait(late, timeout=3)

    async def _mqtt_command(self, payload: bytes) -> None:
        """A command from an MQTT command topic; a rejected one is already logged and counted."""
        with contextlib.suppress(CommandRejected):
            await self.commands.execute(payload, source="mqtt")

    async def _stop_producer(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await wait_for(self.producer.stop(), 5)

    async def _stop_consumer(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await wait_for(self.consumer.stop(), 5)

    async def _probe(self) -> None:
        """Is the cluster answering?  (Deliveries tell too, but an idle service sends nothing.)"""
        assert self.producer is not None
        while True:
            try:
                ok = await wait_for(self.producer.client.fetch_all_metadata(), self.probe_interval_s * 2)
                self.kafka_reachable = ok is not None
            except Exception:  # noqa: BLE001 - any failure means unreachable
                self.kafka_reachable = False
            self._follow_kafka()
            await asyncio.sleep(self.probe_interval_s)

    def _follow_kafka(self) -> None:
        """Kafka is the system of record: simulated time holds while it cannot take records."""
        if self.kafka_connected:
            self.driver.release("kafka")
        else:
            self.driver.hold("kafka")

    async def _watchdog(self) -> None:
        """Feed the systemd watchdog while the service makes progress, and only then."""
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        starved = False
        while True:
            problem = self.not_progressing
            if problem is None:
                self.notifier.watchdog()
                starved = False
            elif not starved:
                if self.supervisor.failure is None:  # a failure says so itself, at once
                    log.error("not feeding the systemd watchdog: %s", problem)
                starved = True
            await asyncio.sleep(interval)

    @property
    def not_progressing(self) -> str | None:
        """Why the service makes no progress (a failed loop, a stalled driver), or None."""
        failure = self.supervisor.failure
        if failure is not None:
            return f"{failure.task} failed ({failure.error})"
        if self.state == RUNNING:
            idle_s = self.driver.clock.now() - self.driver.last_turn
            if idle_s > STALL_S:
                return f"the driver has not turned for {idle_s:.0f} s"
        return None

    # -- views for HTTP, the console and the log ------------------------------------------------------
    def _stats(self, growth: Growth) -> str:
        """The statistics line (``logging.stats_interval_s``): lots, Kafka and each MQTT target
        with their growth since the previous line, simulated time and lag."""
        stats = self.sim.stats
        lots = (f"lots received {growth.added('received', stats.received)}, completed "
                f"{growth.added('completed', stats.completed)}, scrapped {stats.scrapped}, in progress "
                f"{stats.in_progress}")
        sent = self.publisher.sent if self.publisher is not None else 0
        kafka = f"Kafka sent {growth.rate('kafka', sent)}" + ("" if self.kafka_connected else ", not connected")
        mqtt = [f"MQTT {p.name} {growth.rate(f'mqtt {p.name}', p.messages_published)}"
                + dropped_note(p) + ("" if p.connected else f", {p.session.state}") for p in self.mqtt]
        speed = "max" if self.driver.speed is None else f"{self.driver.speed:g}"
        instant = self.sim.calendar_time().isoformat(timespec="seconds").replace("+00:00", "Z")
        clock = (f"simulated time {instant} (speed {speed}{', paused' if self.driver.paused else ''}), "
                 f"lag {self.driver.lag_s:.1f} s")
        return "; ".join(["stats: " + lots, kafka, *mqtt, clock])

    @property
    def kafka_connected(self) -> bool:
        publisher_ok = self.publisher is None or self.publisher.connected
        return self.kafka_reachable and publisher_ok

    @property
    def healthy(self) -> bool:
        fatal = self.publisher is not None and self.publisher.fatal_error is not None
        return self.state == RUNNING and self.kafka_connected and not fatal and self.not_progressing is None


    @property
    def ready(self) -> bool:
        return self.healthy and not self.driver.paused and self._live()

    def not_ready_because(self) -> list[str]:
        """Why the service is not ready (GET /health/ready answers it with its 503); empty when ready."""
        failure = self.supervisor.failure
        reasons = kafka_reasons("the service", self.state, self.kafka_connected,
                                problem.error if (problem := self.startup_problem) else None, failure)
        if self.publisher is not None and self.publisher.fatal_error is not None:
            reasons.append(f"Kafka refused a record for good: {self.publisher.fatal_error}")
        if failure is None and self.not_progressing is not None:  # (a stalled driver)
            reasons.append(self.not_progressing)
        if self.driver.paused:
            reasons.append("the simulation is paused (POST /simulation/resume)")
        if self.run_journal is not None and self.run_journal.recovering:
            reasons.append("the run is being recovered from the journal (see run.recovery in /health)")
        elif self.state == RUNNING and self.warming_up:
            reasons.append(f"the run is warming up (simulated {self.sim.now:,.0f} of {self.warm_up_s:,.0f} s, "
                           "simulation.warm_up)")
        elif self.state == RUNNING and not self._live():
            reasons.append("the run is not live yet")
        return reasons

    @property
    def status(self) -> HealthStatus:
        """See :class:`~simulator.interfaces.HealthStatus`."""
        return health_status(up=self.healthy, targets=self.mqtt,
                             recovering=self.run_journal is not None and self.run_journal.recovering)

    def health(self) -> dict[str, Any]:
        stats = self.sim.stats
        speed = "max" if self.driver.speed is None else self.driver.speed
        failure = self.supervisor.failure
        problem = self.startup_problem
        last_error = problem.error if problem else self.publisher.last_error if self.publisher else None
        last_error_at = problem.at if problem else self.publisher.last_error_at if self.publisher else None
        return {
            "status": self.status,
            "state": self.state,
            "timestamp": utc_text(dt.datetime.now(dt.UTC)),
            "uptime_seconds": round(time.monotonic() - self.started_monotonic, 3),
            "kafka_broker": self.bootstrap_servers,
            "failure": failure.view() if failure is not None else None,
            "not_progressing": self.not_progressing,
            "run": {"id": self.run_id, "recovery": self.run_journal.progress() if self.run_journal else None,
                    "snapshots": self.snapshotter.view() if self.snapshotter else None},
            "kafka": {
                "broker": self.bootstrap_servers,
                "embedded": self.broker is not None,
                "connected": self.kafka_connected,
                "last_error": last_error,
                "last_error_at": utc_text(last_error_at) if last_error_at else None,
                "fatal_error": self.publisher.fatal_error if self.publisher else None,
                "consumer_lag": self.intake.lag() if self.intake else None,
                "intake_paused": self.intake.paused if self.intake else False,
                "records_in_flight": self.publisher.in_flight if self.publisher else 0,
            },
            "simulation": {
                "sim_time_s": round(self.sim.now, 3),
                "sim_time_utc": self.sim.calendar_time().isoformat().replace("+00:00", "Z"),
                "speed": speed,
                "lag_s": round(self.driver.lag_s, 3),
                "max_lag_s": round(self.driver.max_lag_s, 3),
                "paused": self.driver.paused,
                "held_by": sorted(self.driver.held),
                "warm_up_s": self.warm_up_s,
                "warming_up": self.warming_up,
                "outbox_depth": len(self.outbox),
                "outbox_full": self.outbox.full,
            },
            "lots": {"in_progress": stats.in_progress, "completed": stats.completed, "scrapped": stats.scrapped,
                     "received": stats.received},
            "mqtt": {"targets": [p.health() for p in self.mqtt]},
        }
