"""The standalone MQTT bridge (``factorysim bridge``) against a real Kafka and a real Mosquitto:
stopped mid-stream and started again it delivers every Kafka record (at least once, in order per
machine and topic, field for field as the service encoded it), it commits offsets only after the broker has
acknowledged, its health shows Kafka and the targets, and it refuses configs it cannot run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from simulator.adapters.kafka_admin import ensure_topics
from simulator.config.kafka import TopicCreation
from simulator.config.loader import ENV_OVERRIDES, GENERIC_PREFIX, load
from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.model.records import ListSink
from simulator.model.simulation import Simulation
from simulator.net import free_port
from simulator.programs.bridge import Bridge

from harness.collector import MqttCollector, ReceivedMessage
from harness.fake_broker import ConnectCapture
from harness.mosquitto import Mosquitto
from harness.service import running, wait_for

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "smart-factory.yaml"
FAST_RECONNECT = {"initial_s": 0.05, "max_s": 0.2, "jitter": 0.5}
SIM_HOURS = 1.5  # of the smart-factory plant, samples every 10 s: ~5,000 messages, > twice the bridge's batch


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A Mosquitto that queues without limit for a subscriber that falls behind (its default drops QoS 1
    messages beyond 1,000 queued per client, which a collector in a busy test can reach)."""
    return mosquitto_factory(extra_config=["max_queued_messages 0"])


def bridge_config(bootstrap: str, unique: str, port: int, **target: Any) -> Config:
    """The smart-factory plant's Kafka topics (unique to the test) bridged to one coffeemek QoS 1 target."""
    options: dict[str, Any] = {"name": "edge", "host": "127.0.0.1", "port": port, "protocol": "5", "qos": 1,
                               "format": "coffeemek", "reconnect": FAST_RECONNECT}
    options.update(target)
    return load(PROFILE, environ={}, overrides={
        "telemetry.sample_interval_s": 10,
        "kafka.bootstrap_servers": bootstrap,
        "kafka.topics": {"orders": f"{unique}.orders", "telemetry_prefix": f"{unique}.telemetry",
                         "events": f"{unique}.events", "dead_letter": f"{unique}.dead_letter",
                         "journal": f"{unique}.journal"},
        "kafka.consumer.session_timeout_ms": 2000,
        "http.host": "127.0.0.1",
        "mqtt.targets": [options],
        "mqtt.bridge": {"group_id": f"{unique}-bridge", "http_port": 0, "commit_interval_s": 0.1},
    })


@cache
def offline_records(hours: float) -> tuple[Any, ...]:
    """The records of ``hours`` of the smart-factory plant (generated arrivals), once per session."""
    config = load(PROFILE, environ={}, overrides={"telemetry.sample_interval_s": 10})
    sink = ListSink()
    sim = Simulation(config, sink)
    sim.start_arrivals()
    sim.env.run(until=hours * 3600)
    return tuple(sink.records)


class Stream:
    """Coffeemek messages the service would have written, produced to the config's Kafka topics."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.format = CoffeeMekFormat(config, config.simulation.seed)
        self.topics = sorted({config.kafka.topics.events, *self.format.cycle_topics.values(),
                              *self.format.sample_topics.values()})
        self.by_id: dict[str, dict[str, Any]] = {}  # event id -> the Kafka message body
        self.offsets: dict[TopicPartition, list[tuple[int, str]]] = defaultdict(list)  # (offset, event id)

    async def produce(self, records: tuple[Any, ...]) -> None:
        bootstrap = self.config.kafka.bootstrap_servers
        await ensure_topics({"bootstrap_servers": bootstrap}, self.topics, TopicCreation())
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
        await producer.start()
        try:
            sent = []
            for record in records:
                for message in self.format.encode(record):
                    future = await producer.send(message.topic, message.value, key=message.key,
                                                 headers=list(message.headers))
                    body = orjson.loads(message.value)
                    sent.append((event_id(body), future))
                    self.by_id[event_id(body)] = body
            for eid, future in sent:
                meta = await future
                self.offsets[TopicPartition(meta.topic, meta.partition)].append((meta.offset, eid))
        finally:
            await producer.stop()

    def end_offsets(self) -> dict[TopicPartition, int]:
        return {tp: max(o for o, _ in pairs) + 1 for tp, pairs in self.offsets.items()}

    def ids_below(self, committed: dict[TopicPartition, int]) -> set[str]:
        """The records (event ids) of every message before the committed offsets."""
        return {eid for tp, pairs in self.offsets.items() for offset, eid in pairs
                if offset < committed.get(tp, 0)}


def event_id(body: dict[str, Any]) -> str:
    """A coffeemek message's event id: a record's identity within the run."""
    eid: str = body.get("id_evento") or body["event_id"]
    return eid


def id_of(message: ReceivedMessage) -> str:
    return event_id(message.json())


class Ids:
    """The record ids a collector has received so far, parsed once per message (a predicate
    re-parsing every message on every arrival would starve the bridge in the same event loop)."""

    def __init__(self, collector: MqttCollector, prefix: str = "") -> None:
        self.collector = collector
        self.prefix = prefix  # only the messages on topics starting with it
        self.seen: set[str] = set()
        self._parsed = 0

    def __call__(self) -> set[str]:
        messages = self.collector.messages
        for message in messages[self._parsed:]:
            if message.topic.startswith(self.prefix):
                self.seen.add(id_of(message))
        self._parsed = len(messages)
        return self.seen

    async def wait_for(self, wanted: set[str], timeout_s: float, what: str) -> None:
        await self.collector.wait_for(lambda _: self() >= wanted, timeout_s, what)


async def committed_offsets(config: Config, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The bridge group's committed offsets (read without joining the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers,
                                group_id=config.mqtt.bridge.group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        found = {tp: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()
    return {tp: offset for tp, offset in found.items() if offset is not None}


async def until_async(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_bridge(config: Config) -> AsyncIterator[Bridge]:
    async with running(Bridge(config), timeout_s=30) as bridge:
        yield bridge


async def test_bridge_stopped_mid_stream_and_restarted_delivers_every_record(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    # the first bridge: one message in flight and a small queue, so it reads one batch of Kafka (at most
    # 2,000 messages) and is stopped while that batch still goes out; the second one at full speed
    config = bridge_config(kafka_bootstrap, unique, broker.port, max_in_flight=1,
                           queue={"capacity": 100, "overflow": "block"})
    stream = Stream(config)
    await stream.produce(offline_records(SIM_HOURS))
    total = len(stream.by_id)
    partitions = sorted(stream.offsets, key=lambda tp: (tp.topic, tp.partition))
    # coffeemek on MQTT: the Kafka topic with '/' for '.', so every topic is under the unique name
    async with MqttCollector(broker.host, broker.port, f"{unique}/#") as collector:
        ids = Ids(collector)
        async with running_bridge(config) as first:
            await collector.wait_count(300, timeout_s=20)
            health = first.health()
            assert health["status"] == "healthy", health
            assert health["kafka"]["connected"] is True
            assert health["kafka"]["group_id"] == f"{unique}-bridge"
            assert set(health["kafka"]["topics"]) == set(stream.topics)
            (target,) = health["mqtt"]["targets"]
            assert (target["name"], target["connected"], target["format"], target["qos"]) == (
                "edge", True, "coffeemek", 1)
            assert target["messages_acknowledged"] > 0
        # stopped: what it read is delivered and committed (exactly that), the rest is still in Kafka
        committed = await committed_offsets(config, partitions)
        assert 0 < sum(committed.values()) < total, "the first bridge was not stopped mid-stream"
        delivered = stream.ids_below(committed)
        await ids.wait_for(delivered, 10, "every committed record on MQTT")
        assert ids() == delivered
        first_count = len(collector.messages)
        assert first_count == len(delivered)  # once each

        second_config = bridge_config(kafka_bootstrap, unique, broker.port)  # same group
        async with running_bridge(second_config) as second, aiohttp.ClientSession() as http:
            await ids.wait_for(set(stream.by_id), 30, f"all {total} records on MQTT")
            await wait_for(lambda: second.health()["kafka"]["pending_offsets"] == 0, 10, "nothing pending")
            async with http.get(f"http://127.0.0.1:{second.http_port}/health") as response:
                assert response.status == 200
                health = await response.json()
            assert health["status"] == "healthy"
            assert health["kafka"]["connected"] is True
            assert health["mqtt"]["targets"][0]["connected"] is True
            assert health["mqtt"]["targets"][0]["messages_acknowledged"] >= total - len(delivered)
            async with http.get(f"http://127.0.0.1:{second.http_port}/metrics") as response:
                metrics = await response.text()
            assert 'factorysim_mqtt_connected{target="edge"} 1.0' in metrics
            assert "factorysim_bridge_offsets_committed_total" in metrics

    assert await committed_offsets(config, partitions) == stream.end_offsets()
    received = collector.messages
    # the second bridge went on at the committed offsets: every other record, none of the first ones again
    # (a consumer-group rebalance may repeat some of its own: at least once)
    assert {id_of(m) for m in received[first_count:]} == set(stream.by_id) - delivered
    # each record as the service encoded it, event id included (a coffeemek target gets the Kafka
    # message as it is), on the Kafka topic's MQTT twin
    for message in received:
        original = stream.by_id[id_of(message)]
        assert message.json() == original, id_of(message)
    assert {m.topic for m in received} == {t.replace(".", "/") for t in stream.topics}
    # in order per machine and topic across the restart (Kafka keeps them in one partition)
    per_machine: dict[tuple[str, str], list[int]] = defaultdict(list)
    for message in received:
        body = message.json()
        if "id_macchina" in body:
            per_machine[(message.topic, body["id_macchina"])].append(id_of(message))
    assert len({machine for _, machine in per_machine}) == 9
    for key, order in per_machine.items():
        firsts = list(dict.fromkeys(order))  # first arrivals (repeats after a rebalance left out)
        assert firsts == sorted(firsts), key


async def test_a_re_encoding_target_shows_the_instants_of_the_run_it_reads(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    # the service's run started on 1 March 2031 (its --start); the bridge's own config says 2025:
    # the uns messages show the instants the Kafka messages show, not the bridge's calendar
    service_config = bridge_config(kafka_bootstrap, unique, broker.port)
    service_config = service_config.model_copy(update={"simulation": service_config.simulation.model_copy(
        update={"start": dt.datetime(2031, 3, 1, 8, tzinfo=dt.UTC)})})
    stream = Stream(service_config)
    await stream.produce(offline_records(SIM_HOURS)[:400])
    shown = {body["timestamp_utc"] for body in stream.by_id.values()}
    config = bridge_config(kafka_bootstrap, unique, broker.port, format="uns")
    assert config.simulation.start.year < 2031
    async with MqttCollector(broker.host, broker.port, "v1/#") as collector, running_bridge(config):
        await collector.wait_count(200, timeout_s=20)
    stamps = {m.json()["ts"] for m in collector.messages if "ts" in m.json()}
    assert stamps and stamps <= shown, sorted(stamps - shown)[:5]


async def test_bridge_commits_only_after_the_broker_acknowledged(kafka_bootstrap: str, unique: str,
                                                                 connect_capture: ConnectCapture) -> None:
    config = bridge_config(kafka_bootstrap, unique, connect_capture.port)
    stream = Stream(config)
    records = offline_records(SIM_HOURS)[:200]
    await stream.produce(records)
    total = len(stream.by_id)
    partitions = sorted(stream.offsets, key=lambda tp: (tp.topic, tp.partition))
    data_topics = {t.replace(".", "/") for t in stream.topics}

    def data_publishes() -> int:
        return sum(1 for p in connect_capture.publishes if p.topic in data_topics)

    connect_capture.hold_acks = True
    async with running_bridge(config) as bridge:
        commits = 0
        commit = bridge.commit

        async def counting_commit() -> None:
            nonlocal commits
            commits += 1
            await commit()

        bridge.commit = counting_commit  # type: ignore[method-assign]
        await connect_capture.wait_for(lambda: data_publishes() == total, 20, f"{total} PUBLISHes")
        await wait_for(lambda: commits >= 5, 10, "five rounds of the commit loop")
        health = bridge.health()
        assert health["kafka"]["pending_offsets"] == total
        assert health["mqtt"]["targets"][0]["messages_acknowledged"] == 0
        assert health["mqtt"]["targets"][0]["in_flight"] == total
        # nothing acknowledged: no partition's committed offset moved past its first message (offset 0)
        committed = await committed_offsets(config, partitions)
        assert all(offset == 0 for offset in committed.values()), committed

        connect_capture.release_acks()
        await until_async(lambda: _equal(committed_offsets(config, partitions), stream.end_offsets()), 15,
                          "the offsets committed after the acknowledgements")
        assert bridge.health()["kafka"]["pending_offsets"] == 0
        assert bridge.health()["mqtt"]["targets"][0]["messages_acknowledged"] == total
    assert all(p.qos == 1 for p in connect_capture.publishes if p.topic in data_topics)


async def _equal(found: Awaitable[dict[TopicPartition, int]], expected: dict[TopicPartition, int]) -> bool:
    return await found == expected


def test_bridge_refuses_the_embedded_broker_and_a_config_without_targets(unique: str) -> None:
    embedded = load(PROFILE, environ={})
    assert embedded.kafka.bootstrap_servers == "embedded"
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers: .*not 'embedded'"):
        Bridge(embedded)
    no_targets = load(PROFILE, environ={}, overrides={"kafka.bootstrap_servers": "127.0.0.1:9092",
                                                      "mqtt.targets": []})
    with pytest.raises(ConfigError, match=r"mqtt\.targets: the bridge needs at least one enabled MQTT target"):
        Bridge(no_targets)
    target = {"name": "edge", "host": "127.0.0.1", "enabled": False}
    disabled = load(PROFILE, environ={}, overrides={"kafka.bootstrap_servers": "127.0.0.1:9092",
                                                    "mqtt.targets": [target]})
    with pytest.raises(ConfigError, match=r"mqtt\.targets: the bridge needs at least one enabled MQTT target"):
        Bridge(disabled)
    one_of_two = load(PROFILE, environ={}, overrides={"kafka.bootstrap_servers": "127.0.0.1:9092",
                                                      "mqtt.targets": [target, {**target, "name": "aio",
                                                                                "enabled": True}]})
    assert [p.name for p in Bridge(one_of_two).publishers] == ["aio"]


async def test_bridge_logs_consumed_published_and_committed(kafka_bootstrap: str, unique: str, broker: Mosquitto,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="simulator.programs.stats_log")
    config = bridge_config(kafka_bootstrap, unique, broker.port)
    config = config.model_copy(update={"logging": config.logging.model_copy(update={"stats_interval_s": 0.2})})
    stream = Stream(config)
    await stream.produce(offline_records(SIM_HOURS)[:300])
    total = len(stream.by_id)
    line = re.compile(r"^bridge stats: Kafka consumed (\d+) \([\d.]+/s\), committed (\d+) \([\d.]+/s\), "
                      r"pending (\d+); MQTT edge published (\d+) \([\d.]+/s\)$")

    def counts() -> list[tuple[int, ...]]:
        found = [line.match(r.getMessage()) for r in caplog.records if r.name == "simulator.programs.stats_log"]
        assert all(found), [r.getMessage() for r in caplog.records]
        return [tuple(int(n) for n in match.groups()) for match in found if match]

    async with running_bridge(config):
        await wait_for(lambda: (total, total, 0, total) in counts(), 30, "a line with everything committed")
    seen = counts()
    assert seen == sorted(seen), "counts only grow"
    assert all(consumed >= committed + pending for consumed, committed, pending, _ in seen)


async def test_bridge_command_runs_until_sigterm_and_exits_0(kafka_bootstrap: str, unique: str,
                                                             broker: Mosquitto, tmp_path: Path) -> None:
    config = bridge_config(kafka_bootstrap, unique, broker.port)
    stream = Stream(config)
    await stream.produce(offline_records(SIM_HOURS)[:100])
    port = free_port()
    data = config.model_dump(mode="json")
    data["mqtt"]["bridge"]["http_port"] = port
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()  # the file says it all: no environment overrides
           if k not in ENV_OVERRIDES and k != "CONFIG_PATH" and not k.startswith(GENERIC_PREFIX)}
    async with MqttCollector(broker.host, broker.port, f"{unique}/#") as collector:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulator", "bridge", "--config", str(path), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            await Ids(collector).wait_for(set(stream.by_id), 30, "every record through the bridge process")

            health: dict[str, Any] = {}

            async def healthy() -> bool:
                try:
                    async with aiohttp.ClientSession() as http, \
                            http.get(f"http://127.0.0.1:{port}/health") as response:
                        health.update(await response.json())
                except aiohttp.ClientError:
                    return False
                acknowledged = health["mqtt"]["targets"][0]["messages_acknowledged"]
                return response.status == 200 and acknowledged == len(stream.by_id)

            await until_async(healthy, 10, "every message acknowledged in the bridge process's /health")
            assert health["status"] == "healthy"
            assert health["kafka"]["connected"] is True
            assert health["mqtt"]["targets"][0]["connected"] is True
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, output.decode()[-3000:]
    assert f"MQTT bridge: {len(stream.topics)} topics from {kafka_bootstrap} -> edge".encode() in output
    assert f"MQTT target edge: connected to 127.0.0.1:{broker.port}".encode() in output
    assert await committed_offsets(config, sorted(stream.offsets, key=str)) == stream.end_offsets()


async def test_a_spooled_bridge_commits_what_is_on_disk_and_its_next_start_sends_it_once(
        kafka_bootstrap: str, unique: str, broker: Mosquitto, tmp_path: Path) -> None:
    """The broker is down: the bridge reads everything, spools it and commits it, and stops; the next
    start (the broker back) sends the spool without reading Kafka again — every record once, in order."""
    await broker.astop()
    config = bridge_config(kafka_bootstrap, unique, broker.port,
                           spool={"path": str(tmp_path / "spool-{name}.sqlite3")})
    stream = Stream(config)
    await stream.produce(offline_records(SIM_HOURS))
    total = len(stream.by_id)
    partitions = sorted(stream.offsets, key=lambda tp: (tp.topic, tp.partition))
    async with running_bridge(config) as first:
        await until_async(lambda: _equal(committed_offsets(config, partitions), stream.end_offsets()), 60,
                          "every message committed once it was spooled")
        (target,) = first.health()["mqtt"]["targets"]
        assert target["connected"] is False and target["spool"]["messages"] == total
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5  # a spool waits for no broker at a stop
    await broker.astart()
    async with MqttCollector(broker.host, broker.port, f"{unique}/#") as collector:
        ids = Ids(collector)
        async with running_bridge(config) as second:
            (target,) = second.health()["mqtt"]["targets"]
            assert target["spool"]["recovered"] == total
            await ids.wait_for(set(stream.by_id), 30, f"all {total} records on MQTT")
            await wait_for(lambda: second.health()["mqtt"]["targets"][0]["spool"]["messages"] == 0, 10,
                           "the spool emptied")
            assert second.messages_consumed == 0  # nothing read from Kafka again
    received = [id_of(m) for m in collector.messages]
    assert len(received) == total  # once each
    per_machine: dict[tuple[str, str], list[int]] = defaultdict(list)
    for message in collector.messages:
        body = message.json()
        if "id_macchina" in body:
            per_machine[(message.topic, body["id_macchina"])].append(id_of(message))
    for key, order in per_machine.items():
        assert order == sorted(order), key


async def test_delivery_faults_hit_the_configured_fractions_and_the_same_seed_hits_the_same_messages(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    """Two targets of one bridge, one clean, one dropping 10 % and duplicating 10 %: what the faulty one
    delivers is the clean stream less the dropped, plus the copies, in binomial bounds; read again with
    the same seed the same messages are hit, with another seed other ones."""
    stream: Stream | None = None

    async def run(group: str, seed: int) -> tuple[list[str], list[str]]:
        nonlocal stream
        clean = {"name": "clean", "host": "127.0.0.1", "port": broker.port, "qos": 1, "format": "coffeemek",
                 "topic_template": f"{unique}/clean/{{topic}}", "reconnect": FAST_RECONNECT}
        # the same topics every time (a fault depends on the topic and the bytes): one run at a time
        config = bridge_config(kafka_bootstrap, unique, broker.port, topic_template=f"{unique}/dirty/{{topic}}",
                               name="dirty", faults={"seed": seed, "drop": 0.1, "duplicate": 0.1})
        config = config.model_copy(update={
            "mqtt": config.mqtt.model_copy(update={
                "targets": (*config.mqtt.targets, type(config.mqtt.targets[0]).model_validate(clean)),
                "bridge": config.mqtt.bridge.model_copy(update={"group_id": f"{unique}-{group}"})})})
        if stream is None:
            stream = Stream(config)
            await stream.produce(offline_records(SIM_HOURS))
        async with MqttCollector(broker.host, broker.port, f"{unique}/#") as collector:
            ids = Ids(collector, f"{unique}/clean/")
            async with running_bridge(config) as bridge:
                await ids.wait_for(set(stream.by_id), 30, "every record on the clean target")
                dirty = bridge.publishers[0]
                await wait_for(lambda: len(dirty) == 0 and dirty.in_flight == 0 and dirty.faults.held == 0, 10,
                               "the faulty target done")
                expected = dirty.faults.messages - dirty.faults.dropped + dirty.faults.duplicated
                await collector.wait_for(lambda m: sum(x.topic.startswith(f"{unique}/dirty/") for x in m)
                                         >= expected, 10, "the faulty target's messages")
        on = [id_of(m) for m in collector.messages if m.topic.startswith(f"{unique}/dirty/")]
        clean_ids = [id_of(m) for m in collector.messages if m.topic.startswith(f"{unique}/clean/")]
        return on, clean_ids

    first, clean = await run("a", seed=5)
    assert stream is not None
    n = len(set(clean))
    assert n == len(stream.by_id) == len(clean)  # the clean target: every record once
    dropped = set(clean) - set(first)
    copies = len(first) - len(set(first))
    for observed, fraction in ((len(dropped), 0.1), (copies, 0.1 * (n - len(dropped)) / n)):
        bound = 4.5 * (n * fraction * (1 - fraction)) ** 0.5
        assert abs(observed - n * fraction) <= bound, (observed, n * fraction, bound)
    again, _ = await run("b", seed=5)
    assert set(clean) - set(again) == dropped
    assert sorted(again) == sorted(first)  # the same copies too
    other, _ = await run("c", seed=6)
    assert set(clean) - set(other) != dropped
