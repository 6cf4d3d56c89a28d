"""The service (``factorysim run``): wiring of broker, Kafka clients, runs of plants, HTTP and systemd.

A service alone runs one run of every plant (:class:`~simulator.programs.plant_run.PlantRun`).
With ``kafka.scale_out`` the instances of a config share the plants: each runs a run per plant it
owns, taken over and handed over as the group rebalances
(:mod:`simulator.programs.plant_ownership`), orders and commands routed to the owner through the
plant inbox (:mod:`simulator.adapters.plant_inbox`, :mod:`simulator.programs.plant_commands`).

Components are async context managers composed with an ``AsyncExitStack``; the loops run in
one ``TaskGroup`` with named tasks, so a dying loop fails the app instead of hanging it.
Shutdown (first SIGTERM/SIGINT; a second one exits at once):

1. stop flag, readiness turns 503, systemd STOPPING=1;
2. stop order intake (no new messages are read); with ``scale_out``, hand every plant over (its
   last snapshot written, its inbox offsets committed);
3. take a last snapshot after the last inputs, stop the drivers right there, close the outbox and let
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
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from simulator.adapters.delivery.http_target import HttpSinkTarget
from simulator.adapters.delivery.metrics import DeliveryMetrics, delivery_view
from simulator.adapters.delivery.target import DeliveryTarget
from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.http import HttpServer
from simulator.adapters.journal import JournalWriter
from simulator.adapters.journal_reader import JournalEnds
from simulator.adapters.kafka_admin import StartupProblem, ensure_topics
from simulator.adapters.kafka_options import client_options, consumer_options, orders_fetch_options, producer_options
from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.adapters.mqtt import MqttPublisher, MqttTargetMetrics
from simulator.adapters.order_intake import OrderIntake
from simulator.adapters.plant_assignor import Owner, PlantAssignor
from simulator.adapters.plant_inbox import InboxParser, InboxRouter, plant_partitions
from simulator.adapters.snapshots import SnapshotWriter
from simulator.adapters.systemd import SystemdNotifier
from simulator.asyncio_waits import wait_for
from simulator.config.schema import Config
from simulator.errors import CommandRejected, ConfigError
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.registry import build_format
from simulator.formats.snapshot import Snapshot
from simulator.formats.timestamps import epoch_ms
from simulator.interfaces import RUNNING, STARTING, STOPPED, STOPPING, HealthStatus
from simulator.io_metrics import IoMetrics
from simulator.model.machine import Machine
from simulator.model.records import Record
from simulator.model.simulation import Simulation
from simulator.orders import OrderParser
from simulator.programs.delivery_commands import ServiceCommands
from simulator.programs.plant_commands import PlantCommands
from simulator.programs.plant_ownership import PlantOwnership
from simulator.programs.plant_run import PlantRun
from simulator.programs.stats_log import Growth, StatsLog, dropped_note, outage_note
from simulator.runtime.commands import CommandProcessor
from simulator.runtime.driver import Driver
from simulator.runtime.faults import FaultDrill, fail_in_step
from simulator.runtime.gc_tuning import fewer_young_collections
from simulator.runtime.health import health_status, kafka_reasons
from simulator.runtime.outbox import Outbox
from simulator.runtime.plant_inputs import PlantInputs
from simulator.runtime.recovery import RunHistory
from simulator.runtime.run_formats import RunFormats
from simulator.runtime.run_journal import RunJournal
from simulator.runtime.signals import install_stop_signals
from simulator.runtime.supervision import (
    FAILURE_SHUTDOWN_S,
    ExitDeadline,
    Failure,
    Supervisor,
    unless_stopped,
)
from simulator.utc import utc_text

if TYPE_CHECKING:
    from simulator.adapters.opcua.server import OpcUaServer

log = logging.getLogger(__name__)

STALL_S = 5.0  # the driver turns at least every 0.25 s; this long without a turn is a stall
STOP_GRACE_S = 10.0  # a stop asked for ends the process at the latest this long after the shutdown budget

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
        self.journal_ends: JournalEnds | None = None
        self.snapshot_writer: SnapshotWriter | None = None
        self.full_format = CoffeeMekFormat(config, config.simulation.seed)  # topics, and records of no run
        self.formats = RunFormats(self.full_format)
        self.event_starts: dict[str, Callable[[float], int]] = {}  # plant -> sim time -> its run's epoch ms
        scale_out = config.kafka.scale_out
        self.instance_id = scale_out.instance_id or socket.gethostname()
        seed = config.simulation.seed
        self.delivery_formats = {
            t.name: RunFormats(build_format(t.format, config, seed, topic_template=t.topic_template))
            for t in config.delivery_targets}
        self.mqtt = [MqttPublisher(target, self.delivery_formats[target.name], instance=self.instance, environ=environ,
                                   on_command=self._mqtt_command, seed=seed, instance_id=self.instance_id)
                     for target in config.mqtt.enabled_targets]
        self.http_sinks = [HttpSinkTarget(sink, self.delivery_formats[sink.name], environ=environ, seed=seed,
                                          instance_id=self.instance_id)
                           for sink in config.http_sinks if sink.enabled]
        self.targets: list[DeliveryTarget] = [*self.mqtt, *self.http_sinks]  # where records go besides Kafka
        for target in self.targets:
            self.outbox.add_tap(target)
            target.run_of = self._run_id_of
        self.metrics.registry.register(MqttTargetMetrics(self.mqtt))
        self.opcua = self._opcua_server() if config.opcua.enabled else None
        self.metrics.registry.register(DeliveryMetrics(self.targets))
        self.scale_out = scale_out.enabled
        self.started_ms = int(time.time() * 1000)
        self.runs: list[PlantRun] = []
        self.run_of: dict[str, PlantRun] = {}  # plant -> the run it is in
        self.machine_plants = {slot.id: slot.location for slot in config.machine_slots}
        self.partitions = plant_partitions(list(config.locations))  # (scale_out) plant -> its inbox partition
        self.assignor: PlantAssignor | None = None  # (scale_out) who owns which plant
        self.inputs_router = PlantInputs(self.machine_plants)  # (scale_out) the owned plants' input gates
        self.ownership: PlantOwnership | None = None  # (scale_out) the plants this instance owns
        self.inbox: OrderIntake | None = None  # (scale_out) orders and commands routed to the plants owned here
        self.router: InboxRouter | None = None  # (scale_out) orders and commands to their plants' owners
        self.plants_consumer: AIOKafkaConsumer | None = None
        self.plant_commands = PlantCommands(self)
        self.service_commands = ServiceCommands(self.model_commands, self.targets, self.metrics)
        if not self.scale_out:
            self._add_run(self.new_run(list(config.locations)))
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

    def _opcua_server(self) -> OpcUaServer:
        """The OPC UA server (``opcua.enabled``; its library is imported only then): fed by the outbox
        like the MQTT targets, its methods go through the service's command entrance."""
        from simulator.adapters.opcua.server import OpcUaMetrics, OpcUaServer

        server = OpcUaServer(self.config.opcua, self.config.machine_slots, self.config.model_of,
                             lambda: self.commands, environ=self.environ)
        self.outbox.add_tap(server.latest)
        self.metrics.registry.register(OpcUaMetrics(server))
        return server

    # -- the runs ---------------------------------------------------------------------------------------
    def new_run(self, plants: list[str], fresh_before_ms: int | None = None, keep_clock: bool = False) -> PlantRun:
        return PlantRun(self.config, plants, outbox=self.outbox, speed=self.speed, metrics=self.metrics,
                        delivery_targets=self.config.delivery_targets, fresh=self.fresh, start_now=self.start_now,
                        fresh_before_ms=fresh_before_ms, keep_clock=keep_clock)

    def start_run(self, run: PlantRun) -> None:
        """A plant taken over (scale_out): journal it, start its loops; its inputs go to it."""
        self._add_run(run)
        self._attach(run)
        run.start_arrivals()
        self.inputs_router.add(run.inputs)
        self._follow_kafka()
        watch = self.supervisor.watch
        run.tasks = [asyncio.ensure_future(watch(f"{name}-{run.key}", body, until_stopped=False))
                     for name, body in (("driver", run.drive()), ("run-journal", self._journal_loop(run)),
                                        ("snapshots", run.snapshots()))]

    async def _journal_loop(self, run: PlantRun) -> None:
        assert run.run_journal is not None
        await run.run_journal.run()

    def remove_run(self, run: PlantRun) -> None:
        """A plant handed over (scale_out): its run is gone from here."""
        run.driver.abandon()
        for task in run.tasks:
            task.cancel()
        if run in self.runs:
            self.runs.remove(run)
        for plant in run.plants:
            if self.run_of.get(plant) is run:
                del self.run_of[plant]
            if self.publisher is not None:
                self.publisher.delivered_through.pop(plant, None)
        self.inputs_router.remove(run.plants)

    def _owner(self, plant: str) -> Owner | None:
        """(scale_out) ``plant``'s owner as the latest assignment of the plants' group says."""
        return None if self.assignor is None else self.assignor.owners.get(self.partitions.get(plant, -1))

    def owner_of(self, plant: str) -> str | None:
        """(scale_out) The instance id of ``plant``'s owner (this one, while it runs it), or None."""
        if plant in self.run_of:
            return self.instance_id
        owner = self._owner(plant)
        return None if owner is None else owner.instance

    def owner_url_of(self, plant: str) -> str | None:
        owner = self._owner(plant)
        return None if owner is None else owner.url

    def machines_here(self) -> dict[str, Machine]:
        """The machines of the plants run here, by id (every machine of the config for a service alone)."""
        if len(self.runs) == 1:
            return self.runs[0].sim.plant.machines
        return {mid: m for run in self.runs for mid, m in run.sim.plant.machines.items()}

    def sims(self) -> list[Simulation]:
        return [run.sim for run in self.runs]

    @property
    def lag_s(self) -> float:
        return max((run.driver.lag_s for run in self.runs), default=0.0)

    def run_of_machine(self, machine_id: str) -> PlantRun | None:
        plant = self.machine_plants.get(machine_id)
        return None if plant is None else self.run_of.get(plant)

    @property
    def stop_requested(self) -> asyncio.Event:
        return self._stop_requested

    def _add_run(self, run: PlantRun) -> None:
        self.runs.append(run)
        for plant in run.plants:
            self.run_of[plant] = run
        self._use_formats(run)

    def _use_formats(self, run: PlantRun) -> None:
        """The publishers encode the run's records with its formats (after every model rebuild)."""
        self.formats.use(run.plants, run.format)
        for name, fmt in run.delivery_formats.items():
            self.delivery_formats[name].use(run.plants, fmt)
        instant_ms = epoch_ms(run.sim.start)
        for plant in run.plants:
            self.event_starts[plant] = instant_ms

    @property
    def sole_run(self) -> PlantRun:
        """The run of every plant (a service alone has exactly one)."""
        assert len(self.runs) == 1, "the plants are in several runs"
        return self.runs[0]

    # the one run's parts, as the views and the console read them
    @property
    def sim(self) -> Simulation:
        return self.sole_run.sim

    @property
    def driver(self) -> Driver:
        return self.sole_run.driver

    @property
    def commands(self) -> ServiceCommands:
        """Every entrance's commands: the model's to the plants, the delivery commands to the targets."""
        return self.service_commands

    def model_commands(self) -> CommandProcessor | PlantCommands:
        return self.plant_commands if self.scale_out else self.sole_run.commands

    @property
    def run_journal(self) -> RunJournal | None:
        return self.sole_run.run_journal

    @property
    def history(self) -> RunHistory | None:
        return self.sole_run.history

    @property
    def snapshot(self) -> Snapshot | None:
        return self.sole_run.snapshot

    @property
    def run_id(self) -> str:
        return self.sole_run.run_id

    def _live(self) -> bool:
        """Every run is live: recovered (if it was one to continue) and past its warm-up."""
        return bool(self.runs) and all(run.live() for run in self.runs)

    @property
    def warming_up(self) -> bool:
        return any(run.warming_up for run in self.runs)

    @property
    def recovering(self) -> bool:
        return any(run.recovering for run in self.runs)

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
                with self.config.errors_located():
                    for target in self.targets:  # a spool that cannot be used is a configuration error
                        target.open()
                        stack.push_async_callback(target.queue.aclose)
                self.http = http = HttpServer(self, self.config.http.host, self.config.http.port)
                await http.start()
                stack.push_async_callback(http.stop)
                self.http_port = http.port
                if self.opcua is not None:
                    with self.config.errors_located():
                        await self.opcua.start()
                    for mid, machine in self.machines_here().items():
                        lot = machine.current_lot
                        self.opcua.latest.seed(mid, machine.state, lot.code if lot else "", machine.anomaly or "")
                    stack.push_async_callback(self.opcua.stop)
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
        for run in self.runs:  # the drivers are not stepping yet: safe to start directly
            run.start_arrivals()

    def _startup_retry(self, problem: StartupProblem) -> None:
        self.startup_problem = problem

    async def _start_kafka(self, stack: AsyncExitStack) -> None:
        kafka = self.config.kafka
        options = client_options(kafka, self.bootstrap_servers, self.environ)
        partitions = self.partitions
        await ensure_topics(options, self._topics(), kafka.topic_creation, timeout_s=kafka.startup_timeout_s,
                            on_retry=self._startup_retry, partitions={kafka.topics.plant_inbox: len(partitions)})
        self.startup_problem = None
        self.kafka_reachable = True
        for run in self.runs:
            await run.find(options)
            self._use_formats(run)
        self.producer = AIOKafkaProducer(**options, **producer_options(kafka.producer))
        stack.push_async_callback(self._stop_producer)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **options, **consumer_options(kafka.consumer, kafka.consumer.group_id),
            **orders_fetch_options(kafka.consumer),
        )
        stack.push_async_callback(self._stop_consumer)
        await self.consumer.start()
        self.journal_ends = journal_ends = JournalEnds(options, kafka.topics.journal)
        stack.push_async_callback(journal_ends.close)
        for run in self.runs:
            run.start_at_go_live()
            self._use_formats(run)
        self.publisher = publisher = KafkaPublisher(
            self.producer, self.outbox, self.formats, self.metrics,
            max_in_flight=kafka.producer.max_in_flight_messages, on_connection=lambda _: self._follow_kafka(),
            event_time_ms=self._event_time_ms() if kafka.producer.timestamps == "event" else None)
        self.journal = JournalWriter(self.publisher, kafka.topics.journal)
        if kafka.snapshots.enabled:
            self.snapshot_writer = SnapshotWriter(publisher, kafka.topics.snapshots, kafka.producer.max_request_bytes,
                                                  self._delivered_through)
        for run in self.runs:
            self._attach(run)
        parser = OrderParser(self.config.location_of, kafka.consumer.max_order_bytes)
        intake_options: dict[str, Any] = {
            "dead_letter_topic": kafka.topics.dead_letter, "max_in_flight": kafka.consumer.max_in_flight_orders,
            "dedup_window_s": kafka.consumer.dedup_window_s, "max_request_bytes": kafka.producer.max_request_bytes}
        if self.scale_out:
            self.router = InboxRouter(self.producer, kafka.topics.plant_inbox, partitions)
            self.intake = OrderIntake(self.consumer, self.publisher, self.router, parser, self.metrics,
                                      orders_topic=kafka.topics.orders, **intake_options)
            await self._start_plants_consumer(stack, options, partitions, parser, intake_options)
        else:
            run = self.sole_run
            self.intake = OrderIntake(
                self.consumer, self.publisher, run.inputs, parser, self.metrics, orders_topic=kafka.topics.orders,
                journaled=run.history.sources if run.history is not None else None, **intake_options)
        # subscribed once started: the group join (a new group's first rebalance waits for members
        # for a few seconds) goes on in the background while the run is recovered, not before it
        self.consumer.subscribe([kafka.topics.orders], listener=self.intake)

    async def _start_plants_consumer(self, stack: AsyncExitStack, options: dict[str, Any], partitions: dict[str, int],
                                     parser: OrderParser, intake_options: dict[str, Any]) -> None:
        """(scale_out) The consumer of the plant inbox, in the group that shares the plants."""
        kafka = self.config.kafka
        scale_out = kafka.scale_out
        assert self.publisher is not None
        self.assignor = PlantAssignor(self.instance_id, self._advertised_url())
        group = consumer_options(kafka.consumer, scale_out.group_id or f"{kafka.consumer.group_id}.plants")
        group["heartbeat_interval_ms"] = min(scale_out.heartbeat_interval_ms, kafka.consumer.session_timeout_ms // 3)
        self.plants_consumer = consumer = AIOKafkaConsumer(
            **options, **group, **orders_fetch_options(kafka.consumer), partition_assignment_strategy=(self.assignor,),
            rebalance_timeout_ms=scale_out.rebalance_timeout_ms)
        stack.push_async_callback(self._stop_plants_consumer)
        await consumer.start()
        topic = kafka.topics.plant_inbox
        await consumer.topics()  # the cluster's metadata
        have = len(consumer.partitions_for_topic(topic) or ())
        if have < len(partitions):
            raise ConfigError([f"kafka.topics.plant_inbox: {topic} has {have} partitions; kafka.scale_out needs one "
                               f"per plant ({len(partitions)}): create it with {len(partitions)} partitions, or name "
                               f"a new topic"])
        self.inbox = OrderIntake(consumer, self.publisher, self.inputs_router, InboxParser(parser), self.metrics,
                                 orders_topic=topic, partition_plants={i: p for p, i in partitions.items()},
                                 **intake_options)
        self.inbox.on_command = self.plant_commands.routed
        self.ownership = PlantOwnership(self, self.inbox, partitions, options, scale_out.rebalance_timeout_ms / 1000)
        consumer.subscribe([topic], listener=self.ownership)

    def _advertised_url(self) -> str | None:
        scale_out = self.config.kafka.scale_out
        if scale_out.advertised_url:
            return scale_out.advertised_url.rstrip("/")
        if self.http_port is None:
            return None
        host = self.config.http.host
        host = socket.gethostname() if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a wildcard bind
        return f"http://{host}:{self.http_port}"

    async def _stop_plants_consumer(self) -> None:
        if self.plants_consumer is not None:
            with contextlib.suppress(Exception):
                await wait_for(self.plants_consumer.stop(), 5)

    def _attach(self, run: PlantRun) -> None:
        """Journal and snapshot ``run`` (once Kafka is up)."""
        assert self.journal is not None
        assert self.journal_ends is not None
        assert self.publisher is not None
        publisher = self.publisher
        run.attach(self.journal, self.journal_ends, self.snapshot_writer, lambda: publisher.delivered_through,
                   self._committed_orders, self._group_confirmed if self.scale_out else None)
        if run.history is not None and run.run_journal is not None:
            publisher.delivered_through.update(run.run_journal.checkpointed)

    def _group_confirmed(self) -> bool:
        """(scale_out) The plants' group still knows this instance: its coordinator is known (the
        consumer forgets it when no heartbeat succeeded for the session timeout, when the group may
        have given the plants to others).  A plant's time lease is renewed only then, so an instance
        cut off from the group stops its plants within a lease of the group's verdict."""
        consumer = self.plants_consumer
        coordinator = getattr(consumer, "_coordinator", None)  # aiokafka's group coordinator
        return coordinator is None or getattr(coordinator, "coordinator_id", 0) is not None

    def _delivered_through(self) -> dict[str, int]:
        """Per plant, the record number up to which the output is done: in Kafka, or hidden as part
        of the warm-up (never to be published)."""
        assert self.publisher is not None
        delivered = self.publisher.delivered_through
        through: dict[str, int] = {}
        for run in self.runs:
            through.update(run.delivered_through(delivered))
        return through

    def _event_time_ms(self) -> Callable[[Record], int]:
        """A record's Kafka timestamp (``kafka.producer.timestamps: event``): the instant its
        payload's timestamps show (its run's start plus its simulated time)."""
        starts = self.event_starts
        return lambda record: starts[record.location](record.sim_time)

    def _topics(self) -> list[str]:
        topics = self.config.kafka.topics
        inbox = [topics.plant_inbox] if self.scale_out else []
        return [topics.orders, topics.dead_letter, topics.events, topics.journal, topics.snapshots, *inbox,
                *self.full_format.cycle_topics.values(), *self.full_format.sample_topics.values()]

    def _committed_orders(self) -> dict[tuple[str, int], int]:
        """Where the plants' orders were read up to: the orders topic's offsets, or (scale_out) the inbox's."""
        intake = self.inbox if self.scale_out else self.intake
        return {} if intake is None else intake.committed_positions()

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
            for run in self.runs:
                self._run_loops_of(run, loop)
            mqtt = [loop(f"{t.kind}-{t.name}", "mqtt", t.run()) for t in self.targets]
            assert self.journal is not None
            others = [loop("journal", "", self.journal.run()),
                      loop("http", "http", self.http.serve()),
                      loop("kafka-probe", "", self._probe()),
                      loop("systemd-watchdog", "", self._watchdog(), until_stopped=False)]
            if self.opcua is not None:
                others.append(loop("opcua", "", self.opcua.run()))
            if self.config.logging.stats_interval_s > 0:
                others.append(loop("stats-log", "", StatsLog(self.config.logging.stats_interval_s, self._stats).run()))
            others += [loop(getattr(task, "__name__", "extra"), "", task(self), until_stopped=False)
                       for task in extra_tasks]
            if fault is not None:
                others.append(loop("fault-drill", "", self._drill(fault), until_stopped=False))
            await self._stop_requested.wait()
            self.supervisor.stopping = True
            await self._shutdown(intake, publisher)
            await self._stop_mqtt(mqtt)
            for task in [publisher, intake, *mqtt, *others, *(t for run in self.runs for t in run.tasks)]:
                task.cancel()

    def _run_loops_of(self, run: PlantRun, loop: Callable[..., asyncio.Task[None]]) -> None:
        """Start the loops of ``run``: its driver, its journal (recovery, leases, checkpoints), its snapshots."""
        assert run.run_journal is not None
        suffix = "" if len(self.config.locations) == len(run.plants) else f"-{run.key}"
        run.tasks = [loop(f"driver{suffix}", "driver", run.drive()),
                     loop(f"run-journal{suffix}", "", run.run_journal.run()),
                     loop(f"snapshots{suffix}", "", run.snapshots(), until_stopped=False)]

    async def _intake_once_live(self) -> None:
        """Orders are read once the run is live (after a recovery) and warmed up: they enter at
        the time they came.  (scale_out: orders are routed to their plants at once; a plant's are
        read from the inbox once its run is live, see :mod:`simulator.programs.plant_ownership`.)"""
        assert self.intake is not None
        if self.scale_out:
            assert self.inbox is not None
            await asyncio.gather(self.intake.run(), self.inbox.run())
        elif await self.sole_run.ready_for_inputs(self._stop_requested):
            await self.intake.run()

    async def export_snapshot(self, timeout_s: float = 10.0, plant: str | None = None) -> bytes | None:
        """The live model's snapshot as the envelope's JSON (GET /snapshot), or None when the run
        is not live (starting, recovering, stopping) or the driver does not take it in time.
        ``plant``: the run of that plant (None: the one run; scale_out: the plant must be given)."""
        if self.state != RUNNING:
            return None
        if plant is None:
            if len(self.runs) != 1 or self.scale_out:
                return None
            return await self.runs[0].export_snapshot(timeout_s)
        run = self.run_of.get(self.config.location_of(plant) or plant)
        return None if run is None else await run.export_snapshot(timeout_s)

    async def _drill(self, fault: FaultDrill) -> None:
        """The fault drill's failures that happen inside a component rather than as its loop ending."""
        assert self.http is not None
        await asyncio.sleep(fault.after_s)
        if fault.loop == "driver":
            self.runs[0].driver.call(lambda sim: fail_in_step(sim, fault))
        elif fault.loop == "http":
            self.http.close_listener()

    def _failed(self, failure: Failure) -> None:
        self.notifier.status(f"failed: {failure.task}: {failure.error}"[:200])
        if self.notifier.watchdog_interval_s is not None:
            log.error("not feeding the systemd watchdog: %s failed", failure.task)

    async def _shutdown(self, intake: asyncio.Task[None], publisher: asyncio.Task[None]) -> None:
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
        if self.inbox is not None:
            self.inbox.stop()
        if self.router is not None:
            self.router.stop()
        with contextlib.suppress(TimeoutError):
            await wait_for(asyncio.shield(intake), left(0.15))
        intake.cancel()
        if self.ownership is not None:  # every plant handed over: the next owner continues from its last snapshot
            with contextlib.suppress(TimeoutError):
                await wait_for(asyncio.gather(*(self.ownership.hand_over(p) for p in self.ownership.owned)),
                               left(0.5))
        failed = self.supervisor.failure is not None
        finals = await asyncio.gather(*(run.take_last_snapshot(run.tasks[0] if run.tasks else None, left(0.1),
                                                               failed) for run in self.runs))
        drivers = [run.tasks[0] for run in self.runs if run.tasks]
        for run in self.runs:
            run.driver.stop()
        if drivers:
            await asyncio.wait([asyncio.shield(d) for d in drivers], timeout=left(0.1))
        self.outbox.close()
        try:
            await wait_for(asyncio.shield(publisher), left(0.5))
        except TimeoutError:
            log.error("shutdown: %d records not confirmed by Kafka in time",
                      self.publisher.in_flight + len(self.outbox))
            publisher.cancel()
        try:
            if self.journal is not None:  # where the output stands, for next time
                for run in self.runs:
                    if run.run_journal is not None:
                        run.run_journal.write_checkpoints()
                await wait_for(self.journal.drain(), left(0.15))
            for intake_ in (self.intake, self.inbox):
                if intake_ is not None:
                    await wait_for(intake_.drain_dead_letters(), left(0.2))
                    await wait_for(intake_.commit(), left(0.2))
        except TimeoutError:
            log.error("shutdown: could not write the last checkpoints and commit offsets in time")
        for run, final in zip(self.runs, finals, strict=True):
            if final is not None and run.snapshotter is not None:
                try:
                    if await wait_for(run.snapshotter.write(*final, confirm=True), left(0.15)):
                        log.info("last snapshot written: the next start continues at simulated time %.0f s",
                                 final[0].sim_time_s)
                except TimeoutError:
                    log.warning("shutdown: the last snapshot was not written in time; the next start replays the "
                                "journal after the newest snapshot")

    async def _stop_mqtt(self, tasks: list[asyncio.Task[None]]) -> None:
        """Let the MQTT targets and HTTP sinks deliver what they queued (within a budget; a spool keeps
        what is left for the next start), then disconnect."""
        for target in self.targets:
            target.finish()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=max(1.0, self.shutdown_timeout_s * 0.25))
        for task in late:
            task.cancel()
        if late:
            left = sum(len(t) + t.in_flight for t in self.targets if t.spool_file is None)
            if left:
                log.error("shutdown: %d MQTT/HTTP records not delivered in time", left)
            await asyncio.wait(late, timeout=3)

    def _run_id_of(self, plant: str) -> str | None:
        """The id of the run ``plant`` is in (a spool's marks: what it was handed before a restart)."""
        run = self.run_of.get(plant)
        return run.run_id if run is not None else None

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
        for run in self.runs:
            if self.kafka_connected:
                run.driver.release("kafka")
            else:
                run.driver.hold("kafka")

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
            for run in self.runs:
                if run.stopped:
                    continue
                idle_s = run.driver.clock.now() - run.driver.last_turn
                if idle_s > STALL_S:
                    where = "" if len(self.runs) == 1 else f" of {run.key}"
                    return f"the driver{where} has not turned for {idle_s:.0f} s"
        return None

    # -- views for HTTP, the console and the log ------------------------------------------------------
    def lot_counts(self) -> dict[str, int]:
        """Lots received, completed, scrapped and in progress, over the runs here."""
        counts = dict.fromkeys(("in_progress", "completed", "scrapped", "received"), 0)
        for run in self.runs:
            stats = run.sim.stats
            counts["in_progress"] += stats.in_progress
            counts["completed"] += stats.completed
            counts["scrapped"] += stats.scrapped
            counts["received"] += stats.received
        return counts

    def _stats(self, growth: Growth) -> str:
        """The statistics line (``logging.stats_interval_s``): lots, Kafka and each MQTT target
        with their growth since the previous line, simulated time and lag."""
        counts = self.lot_counts()
        lots = (f"lots received {growth.added('received', counts['received'])}, completed "
                f"{growth.added('completed', counts['completed'])}, scrapped {counts['scrapped']}, in progress "
                f"{counts['in_progress']}")
        sent = self.publisher.sent if self.publisher is not None else 0
        kafka = f"Kafka sent {growth.rate('kafka', sent)}" + ("" if self.kafka_connected else ", not connected")
        mqtt = [f"MQTT {p.name} {growth.rate(f'mqtt {p.name}', p.messages_published)}"
                + dropped_note(p) + ("" if p.connected else f", {p.session.state}") + outage_note(p)
                for p in self.mqtt]
        mqtt += [f"HTTP {h.name} {growth.rate(f'http {h.name}', h.http.records_sent)}" + dropped_note(h)
                 + ("" if h.connected else f", {h.http.state}") + outage_note(h) for h in self.http_sinks]
        parts = ["stats: " + lots, kafka, *mqtt]
        if self.ownership is not None:
            parts.append(f"plants owned {len(self.run_of)} ({', '.join(sorted(self.run_of)) or 'none'})")
        if self.runs:
            run = min(self.runs, key=lambda r: r.sim.now)
            driver = run.driver
            speed = "max" if driver.speed is None else f"{driver.speed:g}"
            instant = run.sim.calendar_time().isoformat(timespec="seconds").replace("+00:00", "Z")
            parts.append(f"simulated time {instant} (speed {speed}{', paused' if driver.paused else ''}), "
                         f"lag {max(r.driver.lag_s for r in self.runs):.1f} s")
        return "; ".join(parts)

    @property
    def kafka_connected(self) -> bool:
        publisher_ok = self.publisher is None or self.publisher.connected
        return self.kafka_reachable and publisher_ok

    @property
    def healthy(self) -> bool:
        fatal = self.publisher is not None and self.publisher.fatal_error is not None
        return self.state == RUNNING and self.kafka_connected and not fatal and self.not_progressing is None

    @property
    def paused(self) -> bool:
        return any(run.driver.paused for run in self.runs)

    @property
    def ready(self) -> bool:
        if self.scale_out:  # an instance that owns no plant (more instances than plants) is ready all the same
            return self.healthy and not self.paused and all(run.live() for run in self.runs)
        return self.healthy and not self.paused and self._live()

    def not_ready_because(self) -> list[str]:
        """Why the service is not ready (GET /health/ready answers it with its 503); empty when ready."""
        failure = self.supervisor.failure
        reasons = kafka_reasons("the service", self.state, self.kafka_connected,
                                problem.error if (problem := self.startup_problem) else None, failure)
        if self.publisher is not None and self.publisher.fatal_error is not None:
            reasons.append(f"Kafka refused a record for good: {self.publisher.fatal_error}")
        if failure is None and self.not_progressing is not None:  # (a stalled driver)
            reasons.append(self.not_progressing)
        if self.paused:
            reasons.append("the simulation is paused (POST /simulation/resume)")
        if self.recovering:
            reasons.append("the run is being recovered from the journal (see run.recovery in /health)")
        elif self.state == RUNNING and self.warming_up:
            now = min(run.sim.now for run in self.runs)
            reasons.append(f"the run is warming up (simulated {now:,.0f} of {self.warm_up_s:,.0f} s, "
                           "simulation.warm_up)")
        elif self.state == RUNNING and not self.scale_out and not self._live():
            reasons.append("the run is not live yet")
        elif self.state == RUNNING and self.scale_out and not all(run.live() for run in self.runs):
            reasons.append("a plant taken over is not live yet (see plants in /health)")
        return reasons

    @property
    def status(self) -> HealthStatus:
        """See :class:`~simulator.interfaces.HealthStatus`."""
        return health_status(up=self.healthy, targets=self.targets, recovering=self.recovering)

    def health(self) -> dict[str, Any]:
        failure = self.supervisor.failure
        problem = self.startup_problem
        last_error = problem.error if problem else self.publisher.last_error if self.publisher else None
        last_error_at = problem.at if problem else self.publisher.last_error_at if self.publisher else None
        runs = self.runs
        first = min(runs, key=lambda r: r.sim.now) if runs else None
        speed: float | str = "max" if self.speed is None else self.speed
        if first is not None:
            speed = "max" if first.driver.speed is None else first.driver.speed
        single = None if self.scale_out else self.sole_run
        return {
            "status": self.status,
            "state": self.state,
            "timestamp": utc_text(dt.datetime.now(dt.UTC)),
            "uptime_seconds": round(time.monotonic() - self.started_monotonic, 3),
            "kafka_broker": self.bootstrap_servers,
            "failure": failure.view() if failure is not None else None,
            "not_progressing": self.not_progressing,
            "instance": self.instance_view(),
            "run": {"id": single.run_id if single else None,
                    "recovery": single.run_journal.progress() if single and single.run_journal else None,
                    "snapshots": single.snapshotter.view() if single and single.snapshotter else None},
            "plants": {plant: self._plant_view(run) for plant, run in sorted(self.run_of.items())}
            if self.scale_out else None,
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
                "sim_time_s": round(first.sim.now, 3) if first else 0.0,
                "sim_time_utc": (first.sim.calendar_time() if first else self.config.simulation.start)
                .isoformat().replace("+00:00", "Z"),
                "speed": speed,
                "lag_s": round(max((r.driver.lag_s for r in runs), default=0.0), 3),
                "max_lag_s": round(max((r.driver.max_lag_s for r in runs), default=0.0), 3),
                "paused": self.paused,
                "held_by": sorted({reason for r in runs for reason in r.driver.held}),
                "warm_up_s": self.warm_up_s,
                "warming_up": self.warming_up,
                "outbox_depth": len(self.outbox),
                "outbox_full": self.outbox.full,
            },
            "lots": self.lot_counts(),
            "mqtt": {"targets": [p.health() for p in self.mqtt]},
            "http_sinks": {"targets": [h.health() for h in self.http_sinks]},
            "delivery": delivery_view(self.targets),
            "opcua": self.opcua.health() if self.opcua is not None else {"enabled": False},
        }

    def instance_view(self) -> dict[str, Any]:
        """Who this instance is and (scale_out) which plants it owns, rebalances, take-over times."""
        ownership = self.ownership
        view: dict[str, Any] = {"id": self.instance_id, "scale_out": self.scale_out,
                                "owned_plants": sorted(self.run_of) if ownership is None else ownership.owned}
        if ownership is not None:
            last = ownership.last_rebalance
            view.update({
                "live_plants": sorted(p for p, r in self.run_of.items() if r.live()),
                "taking_over": sorted(ownership.taking),
                "rebalances": ownership.rebalances,
                "last_rebalance": utc_text(dt.datetime.fromtimestamp(last, dt.UTC)) if last else None,
                "plants_taken_over": ownership.taken_over,
                "plants_handed_over": ownership.handed_over,
                "take_over_s": {p: round(v, 3) for p, v in sorted(ownership.take_over_s.items())},
                "hand_over_s": {p: round(v, 3) for p, v in sorted(ownership.hand_over_s.items())},
                "owners": {p: self.owner_of(p) for p in sorted(self.config.locations)},
            })
        return view

    def _plant_view(self, run: PlantRun) -> dict[str, Any]:
        stats = run.sim.stats
        return {"run_id": run.run_id, "live": run.live(), "sim_time_s": round(run.sim.now, 3),
                "sim_time_utc": run.sim.calendar_time().isoformat().replace("+00:00", "Z"),
                "lag_s": round(run.driver.lag_s, 3), "paused": run.driver.paused, "warming_up": run.warming_up,
                "recovery": run.run_journal.progress() if run.run_journal else None,
                "snapshots": run.snapshotter.view() if run.snapshotter else None,
                "lots": {"in_progress": stats.in_progress, "completed": stats.completed, "scrapped": stats.scrapped,
                         "received": stats.received}}
