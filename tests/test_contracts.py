"""Every message every format makes validates against its schema in the AsyncAPI document, found
as a consumer finds it: by topic, then by payload, headers and key.  Offline runs of the reference
plant and of each profile, with samples, blocks and anomalies, encoded by each wire format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import machines
from simulator.adapters.mqtt import sparkplug_node
from simulator.config.loader import parse
from simulator.config.mqtt import FORMATS
from simulator.config.schema import Config
from simulator.contracts.asyncapi import document
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.registry import build_format
from simulator.model.control import block_machine, plant_anomaly, set_anomaly
from simulator.model.records import ListSink
from simulator.model.simulation import Simulation

from harness import sparkplug_decode
from harness.contracts import Checked, Contract

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("config.yaml", "profiles/spaceship.yaml", "profiles/enms.yaml", "profiles/smart-factory.yaml",
           "profiles/global.yaml")
SEED = 11
RUN_ID = "contracts"
HOUR = 3600.0


def every_format_config(path: str) -> Config:
    """The config at ``path`` with a target of each format (named after it), samples every hour."""
    data: dict[str, Any] = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))
    data.setdefault("telemetry", {})["sample_interval_s"] = 3600
    data.setdefault("mqtt", {})["targets"] = [{"name": name, "host": "localhost", "format": name}
                                              for name in FORMATS]
    data.setdefault("simulation", {})["warm_up"] = 0
    for settings in (data.get("machine_types") or {}).values():
        if isinstance(settings, dict):
            settings.pop("sample_interval_s", None)
    data.pop("environment", None)
    return parse(data, environ={})


def simulate(config: Config) -> list[Any]:
    """Two simulated days of lots, with a block command, each machine's own anomalies in turn and a
    plant-wide bearing fault and energy spike."""
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.start_arrivals(limit=40)
    sim.env.run(until=6 * HOUR)
    machine_ids = sorted(sim.plant.machines)
    block_machine(sim, machine_ids[0], "jam", 1800.0)
    for round_ in range(3):
        for machine_id in machine_ids:
            own = machines.get(config.model_of(sim.plant.machines[machine_id].machine_type)).anomalies
            if len(own) > round_:
                set_anomaly(sim, machine_id, own[round_], 1.0, 2 * HOUR)
        sim.env.run(until=sim.now + 3 * HOUR)
    plant_anomaly(sim, "bearing_fault", True)
    plant_anomaly(sim, "energy_spike", True)
    sim.env.run(until=sim.now + 2 * HOUR)
    plant_anomaly(sim, "bearing_fault", False)
    plant_anomaly(sim, "energy_spike", False)
    sim.env.run(until=48 * HOUR)
    return sink.records


@pytest.fixture(scope="module", params=CONFIGS)
def run(request: pytest.FixtureRequest) -> tuple[Config, list[Any], dict[str, Any]]:
    config = every_format_config(request.param)
    return config, simulate(config), document(config)


def test_every_kafka_message_matches_exactly_one_message_of_its_topic(run) -> None:  # type: ignore[no-untyped-def]
    config, records, doc = run
    contract = Contract(doc, ["kafka"])
    checked = Checked()
    fmt = CoffeeMekFormat(config, SEED, RUN_ID)
    for record in records:
        for message in fmt.encode(record):
            contract.check(checked, message.topic, message.value, message.headers, message.key)
    assert not checked.failures, "\n".join(checked.failures[:10])
    expected = {f"kafka.{m['name']}" for key, m in doc["components"]["messages"].items()
                if key.startswith("kafka.coffeemek.")}
    assert set(checked.counts) == expected  # every cycle, sample and event message was made and checked


@pytest.mark.parametrize("format_name", [name for name in FORMATS if name != "sparkplug"])  # JSON payloads
def test_every_mqtt_message_matches_exactly_one_message_of_its_topic(run, format_name: str) -> None:  # type: ignore[no-untyped-def]
    config, records, doc = run
    contract = Contract(doc, [f"mqtt-{format_name}"])
    checked = Checked()
    fmt = build_format(format_name, config, SEED, run_id=RUN_ID,
                       topic_template=next(t.topic_template for t in config.mqtt.targets if t.name == format_name))
    for record in records:
        for message in fmt.encode(record):
            contract.check(checked, message.topic, message.value)
    assert not checked.failures, "\n".join(checked.failures[:10])
    expected = {key for key, m in doc["components"]["messages"].items()
                if key.startswith(f"mqtt.{format_name}.")}
    assert set(checked.counts) == expected


def test_every_sparkplug_message_is_on_the_channel_of_its_kind_and_its_births_list_the_metrics(run) -> None:  # type: ignore[no-untyped-def]
    """The edge node's messages (births, data, the death on a clean stop), decoded by the protobuf
    runtime: each on exactly one channel, as the message of its kind; every metric a DBIRTH names
    is in the DBIRTH message's list with its datatype; every message the node sends was seen."""
    config, records, doc = run
    contract = Contract(doc, ["mqtt-sparkplug"])
    fmt = build_format("sparkplug", config, SEED, run_id=RUN_ID)
    node = sparkplug_node(fmt, None)
    assert node is not None
    sent: list[tuple[str, bytes]] = []
    will = node.will()
    node.connected(lambda topic, payload, _qos, _retain: sent.append((topic, payload)))
    for record in records:
        for message in fmt.encode(record):
            payload = node.prepare(message)
            if payload is not None:
                sent.append((message.topic, payload))
    node.closing(lambda topic, payload, _qos, _retain: sent.append((topic, payload)))
    datatypes = {4: "Int64", 10: "Double", 11: "Boolean", 12: "String"}  # the Sparkplug B datatype codes
    seen: set[str] = set()
    for topic, payload in [will, *sent]:
        channel = contract.channel(topic)
        assert channel is not None, topic
        (ref,) = channel["messages"].values()
        key = ref["$ref"].rsplit("/", 1)[1]
        described = doc["components"]["messages"][key]
        assert described["name"] == f"sparkplug.{topic.split('/')[2]}", topic
        decoded = sparkplug_decode.decode(payload)
        if described["name"] == "sparkplug.DBIRTH":
            for metric in decoded.metrics:
                assert f"{metric.name} ({datatypes[metric.datatype]})" in described["summary"], metric  # type: ignore[index]
        seen.add(key)
    sends = {key for key, m in doc["components"]["messages"].items() if key.startswith("mqtt.sparkplug.")} - {
        "mqtt.sparkplug.NCMD", "mqtt.sparkplug.DCMD"}  # the two a host sends
    assert seen == sends
