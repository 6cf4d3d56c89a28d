"""The standalone MQTT bridge (``factorysim bridge``): Kafka telemetry and lot events -> MQTT targets
(and HTTP sinks: every kind of delivery target, :mod:`simulator.adapters.delivery.target`).

It consumes the coffeemek telemetry and event topics in its own consumer group, decodes each
message back into a record and encodes it for every MQTT target in the target's format, with the
calendar of the record's run (its timestamp less its sim time), not that of the bridge's config.
A ``coffeemek`` target gets the Kafka message as it is, on its MQTT topic: no decoding or
re-encoding, and the event ids are those the service gave.

A Kafka offset is committed only when every target is done with the message:
acknowledged by the broker (QoS 1/2), written (QoS 0), answered by an HTTP sink's API, written to a
target's spool, not carried by that target, or dropped by an explicit overflow policy.  Stopped
mid-stream and started again, it therefore resends what was not acknowledged and loses nothing.  A
target with the ``block`` policy stops the reading while its queue (or spool) is full.

Its own health endpoint (``mqtt.bridge.http_port``): /health, /health/live, /health/ready, /metrics
(and /asyncapi.json, the configuration's messages: :mod:`simulator.contracts.asyncapi`), served
and judged as the service's are (:mod:`simulator.adapters.health_server`,
:mod:`simulator.runtime.health`); its offsets are kept and committed, and its partitions given up
on a rebalance, as the order intake's are (:class:`simulator.adapters.offsets.ConsumerOffsets`).

Its loops (the reader, the committer, one per target) run under the same supervisor as the
service's: one that fails makes ``/health`` 503, is logged once, and ends the bridge with exit
code 1 (never a bridge that reads nothing and reports healthy).  At start, an unreachable cluster
is waited for as the service waits for it (``kafka.startup_timeout_s``, each attempt's error in
``/health``), then the bridge ends with one line and exit code 1.  A stop asked for during start-up
ends the start at once; a cluster that refuses the security settings is a configuration error.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from simulator.adapters.delivery.http_target import HttpSinkTarget
from simulator.adapters.delivery.metrics import DeliveryMetrics, delivery_view
from simulator.adapters.delivery.target import DeliveryTarget
from simulator.adapters.health_server import HealthServer
from simulator.adapters.kafka_admin import StartupProblem, start_client, wait_for_cluster
from simulator.adapters.kafka_options import client_options, consumer_options
from simulator.adapters.listening import PortSetting
from simulator.adapters.mqtt import MqttPublisher, MqttTargetMetrics
from simulator.adapters.offsets import ConsumerOffsets, PartitionOffsets
from simulator.asyncio_waits import wait_for
from simulator.config.http_sinks import HttpSink
from simulator.config.mqtt import MqttTarget
from simulator.config.schema import Config
from simulator.contracts.asyncapi import document as asyncapi_document
from simulator.contracts.catalogue import dumps
from simulator.errors import ConfigError
from simulator.formats import Format, WireMessage
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.coffeemek_decode import decode_message
from simulator.formats.registry import build_format
from simulator.interfaces import RUNNING, STARTING, STOPPED, STOPPING, HealthStatus, ServiceState
from simulator.model.records import Record
from simulator.programs.stats_log import Growth, StatsLog, dropped_note, outage_note
from simulator.runtime.faults import FaultDrill
from simulator.runtime.health import health_status, kafka_reasons
from simulator.runtime.signals import install_stop_signals
from simulator.runtime.supervision import Supervisor, unless_stopped
from simulator.utc import utc_text

log = logging.getLogger(__name__)
# per partition and fetch: a round trip to the broker brings thousands of records, so the reading
# keeps ahead of the MQTT targets (1 MiB, the client's default, left them idle between fetches)
FETCH_BYTES_PER_PARTITION = 8 * 1024 * 1024
RUN_FORMATS_KEPT = 8  # runs whose re-encoding formats the bridge keeps at once
BRIDGE_HTTP_PORT = PortSetting("mqtt.bridge.http_port", env="FACTORYSIM__MQTT__BRIDGE__HTTP_PORT", flag="--http-port")


def message_location(value: bytes) -> str | None:
    """The location of a coffeemek message (``luogo`` of telemetry, ``location`` of lot events)."""
    body = orjson.loads(value)
    if not isinstance(body, dict):
        return None
    location = body.get("luogo", body.get("location"))
    return location if isinstance(location, str) else None


class Bridge(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, config: Config, *, environ: Mapping[str, str] | None = None,
                 http_port: int | None = None, hard_exit: bool = False, fault: FaultDrill | None = None) -> None:
        if not config.delivery_targets:
            raise ConfigError(["mqtt.targets: the bridge needs at least one enabled MQTT target (or HTTP sink, "
                               "http_sinks)"])
        if config.kafka.bootstrap_servers == "embedded":
            raise ConfigError(["kafka.bootstrap_servers: the bridge reads an existing cluster; give host:port "
                               "(or set KAFKA_BOOTSTRAP_SERVERS), not 'embedded'"])
        self.config = config
        self.environ = environ
        self.instance = uuid.uuid4().hex[:12]
        kafka_format = CoffeeMekFormat(config, config.simulation.seed)
        self._kind_of: dict[str, str] = {
            **dict.fromkeys(kafka_format.cycle_topics.values(), "cycle"),
            **dict.fromkeys(kafka_format.sample_topics.values(), "sample"),
            config.kafka.topics.events: "lot_event",
        }
        self.topics = sorted(self._kind_of)
        seed = config.simulation.seed

        def fmt(t: MqttTarget | HttpSink) -> Format:
            return build_format(t.format, config, seed, run_id=self.instance, topic_template=t.topic_template)
        self.mqtt = [MqttPublisher(t, fmt(t), instance=self.instance, environ=environ, seed=seed, program="bridge")
                     for t in config.mqtt.enabled_targets]
        self.http_sinks = [HttpSinkTarget(s, fmt(s), environ=environ, seed=seed, program="bridge")
                           for s in config.http_sinks if s.enabled]
        self.publishers: list[DeliveryTarget] = [*self.mqtt, *self.http_sinks]
        # coffeemek targets get the Kafka message as it is (only the topic changes): no decoding and
        # re-encoding, and the event ids stay those of the service
        self._pass_through = [p.fmt if isinstance(p.fmt, CoffeeMekFormat) else None for p in self.publishers]
        self._decoding = any(fmt is None for fmt in self._pass_through)
        # the re-encoding targets' formats per run start (the calendar they show is the run's), the
        # latest few: messages of two runs may come interleaved
        self._run_formats: OrderedDict[dt.datetime, list[Format | None]] = OrderedDict()
        self.registry = CollectorRegistry()
        self.registry.register(MqttTargetMetrics(self.mqtt))
        self.registry.register(DeliveryMetrics(self.publishers))
        self.consumed = Counter("factorysim_bridge_messages_consumed", "Kafka messages read", registry=self.registry)
        self.undecodable = Counter("factorysim_bridge_messages_undecodable",
                                   "Kafka messages that are not coffeemek records (skipped)", registry=self.registry)
        self.commits = Counter("factorysim_bridge_offsets_committed", "Offset commits", registry=self.registry)
        self.messages_consumed = 0
        self.http_port = config.mqtt.bridge.http_port if http_port is None else http_port
        self.consumer: AIOKafkaConsumer | None = None
        self.server: HealthServer | None = None
        self.kafka_connected = False
        self.startup_problem: StartupProblem | None = None  # the latest start-up attempt's error
        self.started = time.monotonic()
        self.state: ServiceState = STARTING
        self._offsets: ConsumerOffsets | None = None
        self._stop = asyncio.Event()
        self.ready_event = asyncio.Event()
        self.supervisor = Supervisor(self.request_stop, hard_exit=hard_exit)
        self.fault = fault

    # -- lifecycle ----------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        install_stop_signals(self.request_stop)

    async def run(self) -> None:
        """Until asked to stop; raises ServiceFailed when one of its loops failed."""
        kafka = self.config.kafka
        self.server = server = HealthServer(self, self.registry, self.config.http.host, self.http_port,
                                            BRIDGE_HTTP_PORT, name="bridge health endpoint")
        server.add_json_document("/asyncapi.json", lambda: dumps(asyncapi_document(self.config)))
        consumer: AIOKafkaConsumer | None = None
        with self.config.errors_located():
            for target in self.publishers:  # a spool that cannot be used is a configuration error
                target.open()
        try:
            await server.start()
            self.http_port = server.port
            options = client_options(kafka, kafka.bootstrap_servers, self.environ)
            consumer = AIOKafkaConsumer(
                **options, **consumer_options(kafka.consumer, self.config.mqtt.bridge.group_id),
                max_partition_fetch_bytes=FETCH_BYTES_PER_PARTITION,
            )
            self.consumer = consumer
            self._offsets = ConsumerOffsets(consumer, "bridge offsets")
            consumer.subscribe(self.topics, listener=self)
            if not await unless_stopped(self._start_kafka(consumer, options), self._stop):
                log.info("bridge stopped during start-up")
                return
            self.kafka_connected = True
            await self._run_loops(server)
            await self.supervisor.report_failure()
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await wait_for(consumer.stop(), 5)
            await server.stop()
            for target in self.publishers:
                await target.queue.aclose()
            self.state = STOPPED
        self.supervisor.raise_if_failed()

    async def _start_kafka(self, consumer: AIOKafkaConsumer, options: dict[str, Any]) -> None:
        """Wait for the cluster as the service does (retried for kafka.startup_timeout_s, each
        attempt's error in /health), then start the consumer."""
        await wait_for_cluster(options, timeout_s=self.config.kafka.startup_timeout_s, on_retry=self._startup_retry)
        self.startup_problem = None
        await start_client(consumer, options)

    def _startup_retry(self, problem: StartupProblem) -> None:
        self.startup_problem = problem

    async def _run_loops(self, server: HealthServer) -> None:
        watch, fault = self.supervisor.watch, self.fault
        async with asyncio.TaskGroup() as group:
            def target(p: DeliveryTarget) -> asyncio.Task[None]:
                body = fault.failing(p.run()) if fault is not None and fault.loop == "mqtt" else p.run()
                return group.create_task(watch(f"{p.kind}-{p.name}", body), name=f"{p.kind}-{p.name}")

            tasks = [target(p) for p in self.publishers]
            self.state = RUNNING
            self.ready_event.set()
            log.info("MQTT bridge: %d topics from %s -> %s", len(self.topics), self.config.kafka.bootstrap_servers,
                     ", ".join([*(f"{p.name} ({p.target.host}:{p.target.port}, {p.fmt.name})" for p in self.mqtt),
                                *(f"{h.name} ({h.sink.endpoint}, {h.fmt.name})" for h in self.http_sinks)]))
            reader = group.create_task(watch("bridge-reader", self._read()), name="bridge-reader")
            committer = group.create_task(watch("bridge-commits", self._commit_loop()), name="bridge-commits")
            http = group.create_task(watch("bridge-http", server.serve()), name="bridge-http")
            interval_s = self.config.logging.stats_interval_s
            stats = group.create_task(watch("bridge-stats", StatsLog(interval_s, self._stats).run()),
                                      name="bridge-stats") if interval_s > 0 else None
            await self._stop.wait()
            self.supervisor.stopping = True
            self.state = STOPPING
            reader.cancel()
            for p in self.publishers:
                p.finish()
            _, late = await asyncio.wait(tasks, timeout=10)
            for task in late:
                task.cancel()
            committer.cancel()
            http.cancel()
            if stats is not None:
                stats.cancel()
            await self.commit()

    # -- reading and committing -----------------------------------------------------------------------
    async def _read(self) -> None:
        assert self.consumer is not None
        assert self._offsets is not None
        offsets = self._offsets
        while True:
            for p in self.publishers:
                if p.full:
                    await p.wait_for_room()
            batches = await self.consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, messages in batches.items():
                part = offsets.of(tp)
                self.consumed.inc(len(messages))
                self.messages_consumed += len(messages)
                for message in messages:
                    part.take(message.offset)
                    self._offer(tp, part, message.topic, message.offset, message.value or b"")

    def _offer(self, tp: TopicPartition, part: PartitionOffsets, topic: str, offset: int, value: bytes) -> None:
        record: Record | None = None
        run_start = self.config.simulation.start
        location: str | None = None
        try:
            if self._decoding:
                record, run_start = decode_message(topic, value)
                location = record.location
            else:
                location = message_location(value)
        except Exception:  # noqa: BLE001 - a foreign or damaged message must not stop the bridge
            location = None
        if location is None:
            self.undecodable.inc()
            log.warning("bridge: %s[%s]@%d is not a coffeemek record; skipped", topic, tp.partition, offset)
            part.done(offset)
            return
        one_done: Callable[[], None] = functools.partial(part.done, offset)
        if len(self.publishers) > 1:
            remaining = len(self.publishers)

            def last_done() -> None:  # the offset is done when the last target is
                nonlocal remaining
                remaining -= 1
                if remaining == 0:
                    part.done(offset)

            one_done = last_done

        kind = self._kind_of[topic]
        mark = (f"{topic}:{tp.partition}", offset)  # a spool skips what it was handed before a restart
        formats = self._formats_of(run_start) if record is not None else self._pass_through
        for publisher, pass_through, fmt in zip(self.publishers, self._pass_through, formats, strict=True):
            if pass_through is not None:
                message = WireMessage(pass_through.mqtt_topic(topic, location), b"", (), value)
                publisher.offer_encoded(kind, [message], one_done, mark)
                continue
            assert record is not None
            assert fmt is not None
            try:  # encoded here, with the format of the record's run (not when the target sends it)
                messages = fmt.encode(record)
            except Exception:  # one record the format cannot encode must not stop the bridge
                publisher.encode_errors += 1
                log.exception("bridge: target %s cannot encode %s[%s]@%d in format %s; skipped", publisher.name,
                              topic, tp.partition, offset, fmt.name)
                messages = []
            publisher.offer_encoded(kind, messages, one_done, mark)

    def _formats_of(self, start: dt.datetime) -> list[Format | None]:
        """Per target, the format that re-encodes a record of the run whose simulated time 0 is
        ``start``, showing that run's calendar (the instants the service's messages show); None for
        a pass-through target."""
        formats = self._run_formats.get(start)
        if formats is not None:
            self._run_formats.move_to_end(start)
            return formats
        log.info("bridge: records of a run started %s; re-encoded with its calendar", start.isoformat())
        config = self.config
        run_config = config.model_copy(update={"simulation": config.simulation.model_copy(update={"start": start})})
        formats = [None if pass_through is not None else
                   build_format(p.config.format, run_config, config.simulation.seed, run_id=self.instance,
                                topic_template=p.config.topic_template)
                   for p, pass_through in zip(self.publishers, self._pass_through, strict=True)]
        self._run_formats[start] = formats
        while len(self._run_formats) > RUN_FORMATS_KEPT:
            self._run_formats.popitem(last=False)
        return formats

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.mqtt.bridge.commit_interval_s)
            await self.commit()

    async def commit(self) -> None:
        if self._offsets is None:
            return
        committed = await self._offsets.commit()
        if committed is not None:
            self.kafka_connected = committed  # a failed commit: not connected until one succeeds
        if committed:
            self.commits.inc()

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._offsets is not None and await self._offsets.revoked(revoked):
            self.commits.inc()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self._offsets is not None:
            await self._offsets.assigned(assigned)

    # -- views -----------------------------------------------------------------------------------------
    def _stats(self, growth: Growth) -> str:
        """The statistics line (``logging.stats_interval_s``): Kafka messages consumed, published to
        each target and committed, with their rates since the previous line."""
        consumed = self.messages_consumed
        offsets = self._offsets
        committed = offsets.messages_committed if offsets is not None else 0
        kafka = (f"bridge stats: Kafka consumed {growth.rate('consumed', consumed)}, committed "
                 f"{growth.rate('committed', committed)}, pending {offsets.pending if offsets is not None else 0}"
                 + ("" if self.kafka_connected else ", not connected"))
        mqtt = [f"MQTT {p.name} published {growth.rate(f'mqtt {p.name}', p.messages_published)}"
                + dropped_note(p) + ("" if p.connected else f", {p.session.state}") + outage_note(p) for p in self.mqtt]
        mqtt += [f"HTTP {h.name} sent {growth.rate(f'http {h.name}', h.http.records_sent)}" + dropped_note(h)
                 + ("" if h.connected else f", {h.http.state}") + outage_note(h) for h in self.http_sinks]
        return "; ".join([kafka, *mqtt])

    # -- health ----------------------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self.state == RUNNING and self.kafka_connected and self.supervisor.failure is None

    @property
    def ready(self) -> bool:
        return self.up

    def not_ready_because(self) -> list[str]:
        return kafka_reasons("the bridge", self.state, self.kafka_connected,
                             problem.error if (problem := self.startup_problem) else None, self.supervisor.failure)

    def health(self) -> dict[str, Any]:
        failure, problem = self.supervisor.failure, self.startup_problem
        status: HealthStatus = health_status(up=self.up, targets=self.publishers)
        return {
            "status": status,
            "state": self.state,
            "timestamp": utc_text(dt.datetime.now(dt.UTC)),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "kafka_broker": self.config.kafka.bootstrap_servers,
            "failure": failure.view() if failure is not None else None,
            "kafka": {"broker": self.config.kafka.bootstrap_servers, "connected": self.kafka_connected,
                      "last_error": problem.error if problem else None,
                      "last_error_at": utc_text(problem.at) if problem else None,
                      "group_id": self.config.mqtt.bridge.group_id, "topics": self.topics,
                      "pending_offsets": self._offsets.pending if self._offsets is not None else 0},
            "mqtt": {"targets": [p.health() for p in self.mqtt]},
            "http_sinks": {"targets": [h.health() for h in self.http_sinks]},
            "delivery": delivery_view(self.publishers),
        }


def run_bridge(config: Config) -> int:
    """0 after an orderly stop; a failed loop raises ServiceFailed (exit code 1)."""
    fault = FaultDrill.from_env(os.environ)

    async def main() -> None:
        bridge = Bridge(config, hard_exit=True, fault=fault)
        bridge.install_signal_handlers()
        await bridge.run()

    asyncio.run(main())
    return 0
