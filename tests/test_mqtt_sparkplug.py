"""Sparkplug B targets against a real Mosquitto and a real Kafka, read back as a host application
would with an independent decoder (Google's protobuf runtime, harness/sparkplug_decode.py): the
births come first and name every metric, data resolves through the births' aliases, ``seq``
numbers every message and wraps past 255, an NCMD rebirth brings new births, DCMD writes (block,
repair, anomaly) reach the model, a clean stop says NDEATH, a SIGKILL leaves NDEATH to the broker
(the will) with the bdSeq of the NBIRTH, a broker restart brings births with the next bdSeq, and
the bridge republishes Kafka records as Sparkplug."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from simulator.adapters.kafka_admin import ensure_topics
from simulator.config.kafka import TopicCreation
from simulator.config.loader import load
from simulator.config.schema import Config
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.timestamps import epoch_ms
from simulator.model.records import ListSink, MachineSample, Record
from simulator.model.simulation import Simulation
from simulator.net import free_port
from simulator.programs.bridge import Bridge

from harness import sparkplug_decode as spb
from harness.collector import MqttCollector, ReceivedMessage, publish
from harness.mosquitto import Mosquitto
from harness.service import running, running_service, service_config, service_process

FAST_RECONNECT = {"initial_s": 0.05, "max_s": 0.2, "jitter": 0.5}
SMART_FACTORY = Path(__file__).resolve().parents[1] / "profiles" / "smart-factory.yaml"
COMMANDS = {"NCMD", "DCMD"}


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """Mosquitto that neither queues nor holds back a QoS 1 message behind its in-flight window, so
    the subscriber sees the edge node's QoS 0 births and QoS 1 data in the order they were published."""
    return mosquitto_factory(extra_config=["max_queued_messages 0", "max_inflight_messages 0"])


def sparkplug_config(default_yaml: dict[str, Any], bootstrap: str, unique: str, broker: Mosquitto,
                     **overrides: Any) -> Config:
    group = unique[:100]
    return service_config(default_yaml, bootstrap, unique, **{
        "simulation.speed": 1000, "telemetry.sample_interval_s": 60,
        "arrivals.in_service": True, "arrivals.rate_per_hour": 20,
        "mqtt": {"targets": [{"name": "spb", "host": broker.host, "port": broker.port, "format": "sparkplug",
                              "qos": 1, "reconnect": FAST_RECONNECT}]},
        "formats.sparkplug.group_id": group, "formats.sparkplug.edge_node_id": "edge", **overrides})


class HostView:
    """The messages of one edge node as a host application reads them, in arrival order."""

    def __init__(self, collector: MqttCollector) -> None:
        self.collector = collector
        self.host = spb.Host()
        self.seen: list[tuple[str, str, spb.Payload]] = []  # (message type, device, payload)

    def refresh(self) -> HostView:
        for message in self.collector.messages[len(self.seen):]:
            kind, device = kind_of(message)
            payload = spb.decode(message.payload)
            if kind not in COMMANDS:  # the host's own writes, seen on the way
                self.host.apply(kind, device, payload)
            self.seen.append((kind, device, payload))
        return self

    async def until(self, condition: Callable[[HostView], bool], what: str, timeout_s: float = 60.0) -> None:
        await self.collector.wait_for(lambda _: condition(self.refresh()), timeout_s, what)

    def kinds(self, start: int = 0) -> list[str]:
        return [kind for kind, _, _ in self.seen[start:]]

    def state_of(self, machine: str) -> Any:
        return self.host.values.get(machine, {}).get("State")


def kind_of(message: ReceivedMessage) -> tuple[str, str]:
    parts = message.topic.split("/")
    return parts[2], parts[4] if len(parts) > 4 else ""


def command(*metrics: tuple[str, int, Any]) -> bytes:
    return spb.encode(list(metrics))


def assert_seq_continues(seen: list[tuple[str, str, spb.Payload]]) -> None:
    """Every message of the node but NDEATH has a seq: each the previous + 1 (mod 256), NBIRTH starting at 0."""
    previous: int | None = None
    for kind, device, payload in seen:
        if kind == "NDEATH" or kind in COMMANDS:
            continue
        assert payload.seq is not None, (kind, device)
        if kind == "NBIRTH":
            assert payload.seq == 0
        elif previous is not None:
            assert payload.seq == (previous + 1) % 256, (kind, device, previous, payload.seq)
        previous = payload.seq


async def test_births_data_rebirth_and_a_device_command_through_mosquitto(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    config = sparkplug_config(default_yaml, kafka_bootstrap, unique, broker)
    group = config.formats.sparkplug.group_id
    machines = [slot.id for slot in config.machine_slots]
    machine = machines[0]
    async with MqttCollector(broker.host, broker.port, f"spBv1.0/{group}/#") as collector:
        view = HostView(collector)
        async with running_service(config) as service:
            await view.until(lambda v: v.kinds().count("DDATA") >= 400, "400 DDATA messages")
            assert view.kinds()[:1 + len(machines)] == ["NBIRTH"] + ["DBIRTH"] * len(machines)
            assert [device for _, device, _ in view.seen[1:1 + len(machines)]] == machines
            nbirth = view.seen[0][2]
            assert nbirth.by_name() == {"bdSeq": 0, "Node Control/Rebirth": False}
            assert {m.name for _, _, p in view.seen[1:1 + len(machines)] for m in p.metrics} >= {
                "State", "Counters/Good Pieces", "Signals/power_kw", "Commands/Block"}
            data = [p for kind, _, p in view.seen if kind == "DDATA"]
            assert all(m.name is None and m.alias is not None for p in data for m in p.metrics)
            assert all(view.host.values[m]["Info/Location"] == m.split("-")[0] for m in machines)
            assert {view.state_of(m) for m in machines} <= {"idle", "running", "blocked", "maintenance", "off_shift"}
            assert len(view.seen) > 300 and [p.seq for _, _, p in view.seen].count(0) >= 2, "seq wrapped"
            assert_seq_continues(view.seen)

            # a host asks for a rebirth: NBIRTH (seq 0, the same bdSeq), every DBIRTH, then data goes on
            before = len(view.refresh().seen)
            await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/NCMD/edge",
                                    command(("Node Control/Rebirth", spb.BOOLEAN, True)))
            await view.until(lambda v: v.kinds(before).count("DBIRTH") >= len(machines)
                             and v.kinds(before)[-1] == "DDATA", "the rebirth and data after it")
            assert "NCMD" in view.kinds(before)[:view.kinds(before).index("NBIRTH")]
            rebirth = view.kinds(before)
            start = rebirth.index("NBIRTH")
            assert rebirth[start:start + 1 + len(machines)] == ["NBIRTH"] + ["DBIRTH"] * len(machines)
            assert view.seen[before + start][2].by_name()["bdSeq"] == 0
            assert_seq_continues(view.seen)

            # a host writes Commands/Block: the model blocks the machine, its data says so
            await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/DCMD/edge/{machine}",
                                    command(("Commands/Block", spb.BOOLEAN, True)))
            await view.until(lambda v: v.state_of(machine) == "blocked", f"{machine} blocked in its DDATA")
            health = service.health()["mqtt"]["targets"][0]
            assert health["sparkplug"]["commands_received"] == 2 and health["sparkplug"]["commands_rejected"] == 0
            # a write of a metric that is no command is rejected and counted; the service goes on
            await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/DCMD/edge/{machine}",
                                    command(("State", spb.STRING, "running")))
            await view.until(lambda _: service.health()["mqtt"]["targets"][0]["sparkplug"]["commands_rejected"] == 1,
                             "the rejected write counted")
            await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/DCMD/edge/{machine}",
                                    command(("Commands/Repair", spb.BOOLEAN, True)))
            await view.until(lambda v: v.state_of(machine) != "blocked", f"{machine} repaired")
            # and an anomaly, injected and cleared
            await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/DCMD/edge/{machine}",
                                    command(("Commands/Anomaly", spb.STRING, "bearing_fault")))
            await view.until(lambda v: v.host.values[machine]["Anomaly"] == "bearing_fault",
                             f"{machine}'s bearing fault in its DDATA")
            await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/DCMD/edge/{machine}",
                                    command(("Commands/Clear Anomaly", spb.BOOLEAN, True)))
            await view.until(lambda v: v.host.values[machine]["Anomaly"] == "", f"{machine}'s anomaly cleared")
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
                    body = await response.json()
                async with http.get(f"http://127.0.0.1:{service.http_port}/metrics") as response:
                    metrics = await response.text()
            assert 'factorysim_sparkplug_births_total{target="spb"} 2.0' in metrics
            assert 'factorysim_sparkplug_commands_rejected_total{target="spb"} 1.0' in metrics
            target = body["mqtt"]["targets"][0]
            assert target["connected"] is True and target["format"] == "sparkplug"
            assert target["sparkplug"]["births"] == 2 and target["sparkplug"]["rebirths_requested"] == 1
        # a clean stop: NDEATH with the connection's bdSeq, published by the service itself
        await view.until(lambda v: v.kinds()[-1] == "NDEATH", "NDEATH after the stop (what was queued first)")
        assert view.seen[-1][2].by_name() == {"bdSeq": 0}
        assert_seq_continues(view.seen)


async def test_sigkill_leaves_ndeath_to_the_broker_and_a_broker_restart_brings_the_next_bdseq(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, broker: Mosquitto, tmp_path: Path) -> None:
    config = sparkplug_config(default_yaml, kafka_bootstrap, unique, broker, **{"simulation.speed": 500})
    group = config.formats.sparkplug.group_id
    data = config.model_dump(mode="json", exclude_none=True)
    data["http"]["port"] = free_port()
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    async with MqttCollector(broker.host, broker.port, f"spBv1.0/{group}/#") as collector:
        view = HostView(collector)
        with service_process(path, tmp_path / "service.log") as process:
            await view.until(lambda v: v.kinds().count("DDATA") >= 20, "the first births and data", 90)
            assert view.seen[0][2].by_name()["bdSeq"] == 0

            # the broker goes away and comes back: the next connection has the next bdSeq
            collector_rounds = collector.subscribe_rounds
            await broker.arestart()
            await collector.wait_subscribed(collector_rounds + 1)
            before = len(view.refresh().seen)
            await view.until(lambda v: len(v.kinds(before)) > 0, "messages after the reconnect", 60)
            if "NBIRTH" not in view.kinds(before):  # the births went out before the collector was back
                await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/NCMD/edge",
                                        command(("Node Control/Rebirth", spb.BOOLEAN, True)))
            await view.until(lambda v: "NBIRTH" in v.kinds(before) and v.kinds(before)[-1] == "DDATA",
                             "births after the reconnect", 60)
            births = [p for kind, _, p in view.seen[before:] if kind == "NBIRTH"]
            bd_seq = births[-1].by_name()["bdSeq"]
            assert bd_seq >= 1

            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
            await view.until(lambda v: "NDEATH" in v.kinds(before), "NDEATH from the broker (the will)", 30)
        death = next(p for kind, _, p in view.seen[before:] if kind == "NDEATH")
        assert death.by_name() == {"bdSeq": bd_seq}, "the will names the bdSeq of the connection's NBIRTH"


async def produce_coffeemek(config: Config, records: list[Record]) -> None:
    """The records as the service writes them to Kafka (the bridge's input)."""
    fmt = CoffeeMekFormat(config, config.simulation.seed)
    topics = sorted({config.kafka.topics.events, *fmt.cycle_topics.values(), *fmt.sample_topics.values()})
    bootstrap = config.kafka.bootstrap_servers
    await ensure_topics({"bootstrap_servers": bootstrap}, topics, TopicCreation())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(m.topic, m.value, key=m.key, headers=list(m.headers))
                   for record in records for m in fmt.encode(record)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_the_bridge_republishes_kafka_records_as_sparkplug(kafka_bootstrap: str, unique: str,
                                                                 broker: Mosquitto) -> None:
    config = load(SMART_FACTORY, environ={}, overrides={
        "telemetry.sample_interval_s": 10,
        "kafka.bootstrap_servers": kafka_bootstrap,
        "kafka.topics": {"orders": f"{unique}.orders", "telemetry_prefix": f"{unique}.telemetry",
                         "events": f"{unique}.events", "dead_letter": f"{unique}.dead_letter",
                         "journal": f"{unique}.journal"},
        "kafka.consumer.session_timeout_ms": 2000,
        # samples only: each machine's are in order on one Kafka partition (records of different topics,
        # e.g. a cycle and a sample, reach the bridge in no particular order)
        "mqtt.targets": [{"name": "spb", "host": broker.host, "port": broker.port, "format": "sparkplug", "qos": 1,
                          "reconnect": FAST_RECONNECT, "records": ["sample"]}],
        "mqtt.bridge": {"group_id": f"{unique}-bridge", "http_port": 0, "commit_interval_s": 0.1},
        "formats.sparkplug": {"group_id": unique[:100], "naming": "flat"},
    })
    sink = ListSink()
    sim = Simulation(config, sink)
    sim.start_arrivals()
    sim.env.run(until=3600)
    records = sink.records
    await produce_coffeemek(config, records)
    group = config.formats.sparkplug.group_id
    edge = next(iter(config.locations))  # one location: the edge node is named after it
    last = {r.machine_id: r for r in records if isinstance(r, MachineSample)}
    async with MqttCollector(broker.host, broker.port, f"spBv1.0/{group}/#") as collector:
        view = HostView(collector)
        async with running(Bridge(config), timeout_s=30) as bridge:
            # the host's view ends as each machine's last sample (an earlier sample with the same
            # counters and state may come first: the signals tell the last one)
            await view.until(lambda v: all(caught_up(v.host.values.get(m, {}), r) for m, r in last.items()),
                             "every machine's last counters, state and signals", 60)
            await asyncio.to_thread(publish, broker, f"spBv1.0/{group}/DCMD/{edge}/{next(iter(last))}",
                                    command(("cmd_block", spb.BOOLEAN, True)))
            await view.until(lambda _: bridge.mqtt[0].sparkplug.commands_rejected == 1,  # type: ignore[union-attr]
                             "the device command rejected: the bridge runs no model")
    assert view.kinds()[0] == "NBIRTH" and view.seen[0][1] == "" and collector.messages[0].topic.endswith(f"/{edge}")
    assert_seq_continues(view.seen)
    instants = {epoch_ms(config.simulation.start)(r.sim_time) for r in records if isinstance(r, MachineSample)}
    assert {p.timestamp for kind, _, p in view.seen if kind == "DDATA"} <= instants
    for machine, record in last.items():
        assert caught_up(view.host.values[machine], record), machine


def caught_up(values: dict[str, Any], sample: MachineSample) -> bool:
    """Whether a host's metrics of a machine (flat names) are those of ``sample``."""
    counters = sample.counters
    return (values.get("state") == sample.state
            and (counters is None or values.get("good_pieces") == counters.good_pieces)
            and all(values.get(name) == value for name, value in sample.signals.items()))
