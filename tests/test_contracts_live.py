"""The service against a real broker: every record it writes to Kafka (cycle telemetry, samples, lot
events, dead letters) matches its message in the AsyncAPI document, and GET /asyncapi.json answers
the document `factorysim asyncapi` prints for the same config file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from simulator.adapters.kafka_admin import ensure_topics
from simulator.cli import main
from simulator.config.kafka import TopicCreation
from simulator.config.loader import load
from simulator.contracts.asyncapi import document
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.lotsender.plan import BAD_HEADER, RUN_HEADER, SEQ_HEADER, GeneratedLots
from simulator.programs.bridge import Bridge

from harness import sparkplug_decode
from harness.collector import MqttCollector
from harness.contracts import Checked, Contract
from harness.mosquitto import Mosquitto
from harness.service import Reader, finished, produce, running, running_service, service_config, wait_for

ROOT = Path(__file__).resolve().parent.parent
LOTS = 24


def lot_sender(config: Any, unique: str, dialect: str, bad_ratio: float, count: int) -> list[Any]:
    generated = GeneratedLots(config.arrivals, {name: 1.0 for name in config.locations}, seed=23,
                              code_prefix=f"L-{unique}-{dialect}", dialect=dialect,  # type: ignore[arg-type]
                              rate_per_min=None, bad_ratio=bad_ratio, timestamp=lambda: "2026-11-30T16:50:00.000Z")
    found = []
    for planned in generated:
        if (planned.bad_kind is not None) == (bad_ratio > 0):
            found.append(planned)
        if len(found) == count:
            return found
    return found


async def test_the_service_writes_what_its_document_describes(default_yaml: dict[str, Any], kafka_bootstrap: str,
                                                              unique: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = {**default_yaml, "telemetry": {**default_yaml.get("telemetry", {}), "sample_interval_s": 900}}
    path = tmp_path / "config.yaml"
    # paced (not as fast as possible): the samples of idle machines would outrun the reader
    made = service_config(data, kafka_bootstrap, unique, **{"simulation.speed": 7200})
    path.write_text(yaml.safe_dump(made.model_dump(mode="json")), encoding="utf-8")
    config = load(path, environ={})
    assert main(["asyncapi", "--config", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    contract = Contract(printed, ["kafka"])
    topics = config.kafka.topics
    good = [*lot_sender(config, unique, "it", 0.0, LOTS // 2), *lot_sender(config, unique, "en", 0.0, LOTS // 2)]
    bad = lot_sender(config, unique, "en", 1.0, 12)
    checked = Checked()
    for planned in good:  # what lot-sender sends is an order of the document
        contract.check(checked, topics.orders, planned.value, key=planned.key)
    sample_topics = [c["address"] for c in printed["channels"].values() if c["address"].endswith(".samples")]
    stage_topics = [f"{topics.telemetry_prefix}.{stage.name}" for stage in config.route]
    async with running_service(config) as service:
        await produce(kafka_bootstrap, topics.orders, [p.value for p in good], [p.key for p in good])
        for planned in bad:  # with lot-sender's headers, which dead letters keep
            await produce_with_headers(kafka_bootstrap, topics.orders, planned.value, planned.key,
                                       [(RUN_HEADER, unique.encode()), (SEQ_HEADER, str(planned.seq).encode()),
                                        (BAD_HEADER, str(planned.bad_kind).encode())])
        read = [topics.events, topics.dead_letter, *stage_topics, *sample_topics]
        async with Reader(kafka_bootstrap, read) as reader:
            await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == LOTS and len(c.of(topics.dead_letter)) == len(bad)
                and all(c.of(t) for t in sample_topics), 90, "every lot finished, every bad order dead-lettered")
        assert service.http is not None
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{service.http.port}/asyncapi.json") as response:
            assert response.status == 200 and response.content_type == "application/json"
            served = await response.json()
        await wait_for(lambda: service.healthy, 5, "a healthy service")
    async with Reader(kafka_bootstrap, read) as reader:  # everything the service wrote until it stopped
        collected = await reader.read_all()
    assert served == printed
    for topic in [topics.events, *stage_topics, *sample_topics]:
        assert collected.of(topic), topic
        for record in collected.of(topic):
            contract.check(checked, topic, record.value, record.headers, record.key)
    for record in collected.of(topics.dead_letter):
        name, why = contract.match(topics.dead_letter, None, record.headers, record.key)
        assert name is not None, why
        checked.ok(name)
    assert not checked.failures, "\n".join(checked.failures[:10])
    assert checked.counts["kafka.dead_letter"] == len(bad)
    assert checked.counts["kafka.order"] == LOTS
    assert checked.counts["kafka.coffeemek.lot_event"] >= 4 * LOTS
    assert {name for name in checked.counts if name.startswith("kafka.coffeemek.")} == {
        key for key in printed["components"]["messages"] if key.startswith("kafka.coffeemek.")}


async def test_every_mqtt_target_publishes_what_the_document_describes(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str,
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory()
    data = {**default_yaml, "telemetry": {**default_yaml.get("telemetry", {}), "sample_interval_s": 3600}}
    target = {"host": broker.host, "port": broker.port, "reconnect": {"initial_s": 0.1, "max_s": 0.5}}
    config = service_config(data, kafka_bootstrap, unique, **{
        "simulation.speed": 3600,
        "mqtt.targets": [
            {**target, "name": "cm", "format": "coffeemek", "topic_template": f"{unique}/cm/{{topic}}"},
            {**target, "name": "ship", "format": "spaceship"},
            {**target, "name": "energy", "format": "enms"},
            {**target, "name": "ns", "format": "uns", "topic_template": f"{unique}/ns/{{line}}/{{machine}}/{{metric}}",
             "qos": 0}],
        "formats.spaceship.topic_prefix": f"{unique}/ship",
        "formats.enms.topic_prefix": f"{unique}/energy",
    })
    doc = document(config)
    contracts = {name: Contract(doc, [f"mqtt-{name}"]) for name in ("cm", "ship", "energy", "ns")}
    lots = lot_sender(config, unique, "en", 0.0, 8)
    dispatch = f"{unique}/ship/dispatch"
    async with MqttCollector(broker.host, broker.port, f"{unique}/#") as collector, running_service(config):
        await produce(kafka_bootstrap, config.kafka.topics.orders, [p.value for p in lots], [p.key for p in lots])
        await collector.wait_for(lambda messages: len(collector.of(dispatch)) >= 2 and any(
            m.topic.endswith("/samples") for m in messages), 90, "lots dispatched, and samples")
    checked = Checked()
    for message in collector.messages:
        target_name = message.topic.split("/")[1]
        contracts[target_name].check(checked, message.topic, message.payload)
    assert not checked.failures, "\n".join(checked.failures[:10])
    made = {name.split(".")[1] for name in checked.counts}
    assert made == {"coffeemek", "spaceship", "enms", "uns"}
    assert {"mqtt.spaceship.dispatch", "mqtt.enms.status", "mqtt.uns.state", "mqtt.coffeemek.lot_event"} <= set(
        checked.counts)


async def test_a_sparkplug_target_publishes_what_the_document_describes(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str,
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    """Births and data on Mosquitto, decoded by the protobuf runtime: each on the channel of its kind,
    as a protobuf message of the document, and every metric a DBIRTH names listed (with its datatype)
    in the DBIRTH message; NDEATH is the target's Last Will; commands are received."""
    broker = mosquitto_factory()
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "simulation.speed": 3600, "formats.sparkplug.group_id": unique,
        "mqtt.targets": [{"name": "spb", "host": broker.host, "port": broker.port, "format": "sparkplug",
                          "reconnect": {"initial_s": 0.1, "max_s": 0.5}}]})
    doc = document(config)
    contract = Contract(doc, ["mqtt-spb"])
    lots = lot_sender(config, unique, "en", 0.0, 4)
    async with MqttCollector(broker.host, broker.port, f"spBv1.0/{unique}/#") as collector, running_service(config):
        await produce(kafka_bootstrap, config.kafka.topics.orders, [p.value for p in lots], [p.key for p in lots])
        await collector.wait_for(lambda messages: any("/DDATA/" in m.topic for m in messages), 90, "device data")
    datatypes = {4: "Int64", 10: "Double", 11: "Boolean", 12: "String"}  # the Sparkplug B datatype codes
    kinds = set()
    for message in collector.messages:
        channel = contract.channel(message.topic)
        assert channel is not None, message.topic
        (ref,) = channel["messages"].values()
        described = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
        kind = message.topic.split("/")[2]
        kinds.add(kind)
        assert described["name"] == f"sparkplug.{kind}"
        assert described["contentType"] == "application/x-protobuf"
        assert described["payload"]["schemaFormat"].startswith("application/vnd.google.protobuf")
        payload = sparkplug_decode.decode(message.payload)
        if kind == "DBIRTH":
            for metric in payload.metrics:
                assert f"{metric.name} ({datatypes[metric.datatype]})" in described["summary"], metric  # type: ignore[index]
    assert {"NBIRTH", "DBIRTH", "DDATA"} <= kinds
    assert doc["servers"]["mqtt-spb"]["bindings"]["mqtt"]["lastWill"]["topic"] == \
        f"spBv1.0/{unique}/NDEATH/factorysim"
    received = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in doc["operations"].values()
                if op["action"] == "receive"}
    assert {doc["channels"][c]["address"] for c in received} - {config.kafka.topics.orders} == {
        f"spBv1.0/{unique}/NCMD/factorysim", f"spBv1.0/{unique}/DCMD/factorysim/{{device}}"}
    assert not any("availability" in address for address in (c["address"] for c in doc["channels"].values()))


async def produce_with_headers(bootstrap: str, topic: str, value: bytes, key: bytes,
                               headers: list[tuple[str, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_the_bridge_answers_the_document_of_its_config(kafka_bootstrap: str, unique: str,
                                                             mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory()
    config = load(ROOT / "profiles/global.yaml", environ={}, overrides={
        "kafka.bootstrap_servers": kafka_bootstrap,
        "kafka.topics": {"telemetry_prefix": f"{unique}.telemetry", "events": f"{unique}.events"},
        "http.host": "127.0.0.1",
        "mqtt.targets": [{"name": "edge", "host": "127.0.0.1", "port": broker.port, "format": "uns",
                          "command_topic": f"{unique}/cmd"}],
        "mqtt.bridge": {"group_id": f"{unique}-bridge", "http_port": 0},
    })
    await ensure_topics({"bootstrap_servers": kafka_bootstrap}, CoffeeMekFormat(config, 1).cycle_topics.values(),
                        TopicCreation())
    await ensure_topics({"bootstrap_servers": kafka_bootstrap},
                        [config.kafka.topics.events, *CoffeeMekFormat(config, 1).sample_topics.values()],
                        TopicCreation())
    async with running(Bridge(config), timeout_s=30) as bridge, aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{bridge.http_port}/asyncapi.json") as response:
        assert response.status == 200
        served = await response.json()
    assert served == document(config)
    assert any(c["address"] == f"{unique}/cmd" for c in served["channels"].values())
    assert served["servers"]["mqtt-edge"]["host"] == f"127.0.0.1:{broker.port}"
