"""The AsyncAPI document and the published schema files: valid against the official AsyncAPI 3.0
schema, complete and self-consistent, up to date in docs/, strict enough that a broken message
fails, and made by `factorysim asyncapi` (exit code 2 for a bad config)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from simulator.cli import main
from simulator.config.loader import load, parse
from simulator.config.mqtt import FORMATS
from simulator.contracts import registry
from simulator.contracts.asyncapi import document
from simulator.contracts.catalogue import dumps, schema_files
from simulator.contracts.model import Message, TopicMessages, parameter
from simulator.contracts.registry import MQTT_CONTRACTS, missing_contracts
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.registry import build_format
from simulator.model.records import ListSink
from simulator.model.simulation import Simulation

from harness.contracts import Contract, problems, validator

ROOT = Path(__file__).resolve().parent.parent
ASYNCAPI_SCHEMA = json.loads((ROOT / "tests/data/asyncapi/asyncapi-3.0.0.schema.json").read_text(encoding="utf-8"))
CONFIGS = ("config.yaml", "profiles/spaceship.yaml", "profiles/enms.yaml", "profiles/smart-factory.yaml",
           "profiles/global.yaml")
REGENERATE = "factorysim asyncapi --config config.yaml --out docs/asyncapi.json --schemas-dir docs/schemas"


def official_errors(doc: dict[str, Any]) -> list[str]:
    """What the official AsyncAPI 3.0.0 JSON Schema finds wrong with ``doc`` (draft-07, as it declares)."""
    checker = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in checker.iter_errors(doc)]


def rich_config() -> Any:
    """The reference plant with every format on a target (one with a command topic, one with TLS and a
    template of its own), samples, a Kafka cluster with SASL over TLS, and shared plants."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["telemetry"] = {"sample_interval_s": 300}
    data["kafka"] = {"bootstrap_servers": "kafka-1:9093,kafka-2:9093",
                     "security": {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                  "sasl_username": "factorysim", "sasl_password_env": "KAFKA_PASSWORD"},
                     "scale_out": {"enabled": True}, "topic_creation": {"partitions": 6}}
    data["mqtt"] = {"targets": [
        {"name": "cm", "host": "broker", "format": "coffeemek", "command_topic": "factory/cmd", "qos": 2},
        {"name": "ship", "host": "broker", "port": 8883, "format": "spaceship", "tls": {"enabled": True},
         "topic_template": "{prefix}/{location}/{machine_type}/{kind}", "records": ["cycle", "lot_event"]},
        {"name": "energy", "host": "broker", "format": "enms", "protocol": "3.1.1", "retain": True},
        {"name": "ns", "host": "broker", "format": "uns", "availability_topic": None},
        {"name": "off", "host": "broker", "format": "uns", "enabled": False},
        {"name": "spb", "host": "broker", "format": "sparkplug", "qos": 0, "command_topic": "factory/spb-cmd"},
    ]}
    data["formats"] = {"uns": {"state_as": "code"}}
    return parse(data, environ={})


@pytest.mark.parametrize("path", CONFIGS)
def test_the_document_of_every_shipped_config_is_valid_asyncapi_3(path: str) -> None:
    doc = document(load(ROOT / path, environ={}))
    assert official_errors(doc) == []
    consistent(doc)


def test_a_config_with_every_format_security_and_a_cluster_is_valid_asyncapi_3() -> None:
    doc = document(rich_config())
    assert official_errors(doc) == []
    consistent(doc)
    servers = doc["servers"]
    assert {name: (s["host"], s["protocol"]) for name, s in servers.items()} == {
        "kafka": ("kafka-1:9093", "kafka-secure"), "kafka-2": ("kafka-2:9093", "kafka-secure"),
        "mqtt-cm": ("broker:1883", "mqtt"), "mqtt-ship": ("broker:8883", "secure-mqtt"),
        "mqtt-energy": ("broker:1883", "mqtt"), "mqtt-ns": ("broker:1883", "mqtt"),
        "mqtt-spb": ("broker:1883", "mqtt")}  # a disabled target: none
    assert doc["components"]["securitySchemes"]["kafka-sasl-scram-sha-512"]["type"] == "scramSha512"
    assert servers["mqtt-energy"]["protocolVersion"] == "3.1.1"
    channels = doc["channels"]
    addresses = {c["address"] for c in channels.values()}
    assert {"coffeemek.orders.new_lots", "coffeemek.telemetry.fresa_cnc", "coffeemek.telemetry.fresa_cnc.samples",
            "coffeemek.events.production_status", "coffeemek.orders.dead_letter", "coffeemek.plants.journal",
            "coffeemek.plants.inbox", "coffeemek/telemetry/test/samples", "factory/cmd",
            "factory/{location}/fresa_cnc/telemetry", "factory/{location}/orders", "factory/{site}/{machine}/status",
            "v1/acme/plant-01/{line}/{machine}/state"} <= addresses
    ship = [c for c in channels.values() if c["address"].startswith("factory/{location}/")]
    assert all("sample" not in name for c in ship for name in c["messages"])  # records: cycle, lot_event
    inbox = next(c for c in channels.values() if c["address"] == "coffeemek.plants.inbox")
    assert inbox["bindings"]["kafka"]["partitions"] == 3  # one per plant
    assert channels["kafka.coffeemek.events.production_status"]["bindings"]["kafka"]["partitions"] == 6
    operations = doc["operations"]
    orders = operations["receive.kafka.coffeemek.orders.new_lots"]
    assert orders["bindings"]["kafka"]["groupId"] == {"enum": ["factorysim"]}
    assert operations["receive.cm.commands"]["action"] == "receive"
    assert operations["send.cm.coffeemek_telemetry_tornio"]["bindings"]["mqtt"] == {
        "qos": 2, "retain": False, "bindingVersion": "0.2.0"}
    status = next(k for k, c in channels.items() if c["address"] == "factory/{site}/{machine}/status")
    assert operations[f"send.{status}"]["bindings"]["mqtt"]["retain"] is True
    state = doc["components"]["messages"]["mqtt.uns.state"]["payload"]["properties"]
    assert state["value"] == {"enum": [0, 1, 2], "description": "0 running, 1 stopped, 2 fault"}
    assert state["unit"] == {"const": "enum"}
    # sparkplug: NDEATH is the Last Will (no availability topic), births at QoS 0, commands received
    assert servers["mqtt-spb"]["bindings"]["mqtt"]["lastWill"]["topic"] == "spBv1.0/factorysim/NDEATH/factorysim"
    spb = {c["address"]: k for k, c in channels.items() if "mqtt-spb" in c["servers"][0]["$ref"]}
    assert set(spb) == {f"spBv1.0/factorysim/{kind}/factorysim{device}" for kind, device in (
        ("NBIRTH", ""), ("NDEATH", ""), ("DBIRTH", "/{device}"), ("DDATA", "/{device}"), ("NCMD", ""),
        ("DCMD", "/{device}"))} | {"factory/spb-cmd"}
    assert operations[f"send.{spb['spBv1.0/factorysim/NBIRTH/factorysim']}"]["bindings"]["mqtt"]["qos"] == 0
    assert operations[f"receive.{spb['spBv1.0/factorysim/DCMD/factorysim/{device}']}"]["action"] == "receive"
    dbirth = doc["components"]["messages"]["mqtt.sparkplug.DBIRTH"]
    assert dbirth["payload"]["schemaFormat"] == "application/vnd.google.protobuf;version=2"
    assert "Signals/spindle_temp_c (Double)" in dbirth["summary"] and "Commands/Block (Boolean)" in dbirth["summary"]
    cycle = doc["components"]["messages"]["kafka.coffeemek.cycle.fresa_cnc"]
    assert cycle["bindings"]["kafka"]["key"]["type"] == "string"
    assert set(cycle["headers"]["required"]) == {"event_id", "event_type", "schema_version", "content_type"}


def consistent(doc: dict[str, Any]) -> None:
    """What the JSON Schema of AsyncAPI cannot check: every reference resolves, every address
    placeholder is a parameter (and no other), every payload is a valid draft 2020-12 schema."""
    def resolve(ref: str) -> Any:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    for channel_id, channel in doc["channels"].items():
        placeholders = set(re.findall(r"\{([A-Za-z0-9_]+)\}", channel["address"]))
        assert placeholders == set(channel.get("parameters", {})), channel_id
        for ref in [*channel["messages"].values(), *channel["servers"]]:
            resolve(ref["$ref"])
    for operation in doc["operations"].values():
        resolve(operation["channel"]["$ref"])
        for ref in operation["messages"]:
            assert ref["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            resolve(ref["$ref"])
    for message in doc["components"]["messages"].values():
        for schema in (message.get("payload"), message.get("headers")):
            if schema is not None:
                jsonschema.Draft202012Validator.check_schema(schema)
                assert "$ref" not in json.dumps(schema)  # self-contained: the same in any document


def test_every_format_a_target_can_speak_has_a_contract() -> None:
    assert missing_contracts() == [], "add a contract module to simulator.contracts.registry.MODULES"
    assert set(MQTT_CONTRACTS) == set(FORMATS)


def test_docs_are_up_to_date() -> None:
    config = load(ROOT / "config.yaml", environ={})
    published = json.loads((ROOT / "docs/asyncapi.json").read_text(encoding="utf-8"))
    made = document(config)
    published["info"].pop("version")  # the installed package's
    made["info"].pop("version")
    assert published == made, f"docs/asyncapi.json is out of date: run `{REGENERATE}`"
    files = schema_files(config)
    on_disk = {p.name: p.read_bytes() for p in (ROOT / "docs/schemas").glob("*.json")}
    assert on_disk == {name: dumps(schema) for name, schema in files.items()}, \
        f"docs/schemas/ is out of date: run `{REGENERATE}` (after removing docs/schemas/*.json)"
    for schema in files.values():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_command_writes_the_document_and_the_schemas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ROOT / "profiles/smart-factory.yaml"
    assert main(["asyncapi", "--config", str(config)]) == 0
    printed = json.loads(capsys.readouterr().out)
    out, schemas = tmp_path / "asyncapi.json", tmp_path / "schemas"
    schemas.mkdir()
    assert main(["asyncapi", "--config", str(config), "--out", str(out), "--schemas-dir", str(schemas)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == printed == document(load(config))
    written = {p.name for p in schemas.iterdir()}
    assert {"uns.state.json", "coffeemek.cycle.machining.json", "coffeemek.sample.cnc.json",
            "coffeemek.cycle.machining.headers.json", "enms.status.json", "spaceship.sample.cnc.json",
            "order.json", "command.json", "dead_letter.headers.json"} <= written


def test_a_bad_config_or_output_is_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: {topics: {orders: 'not a topic!'}}\n", encoding="utf-8")
    assert main(["asyncapi", "--config", str(bad)]) == 2
    assert "kafka.topics.orders" in capsys.readouterr().err
    assert main(["asyncapi", "--config", str(ROOT / "config.yaml"), "--out", str(tmp_path / "no" / "a.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["asyncapi", "--config", str(ROOT / "config.yaml"), "--schemas-dir", str(tmp_path / "none")]) == 2
    assert "--schemas-dir" in capsys.readouterr().err


# -- a hand-broken message fails ------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """One real payload of every message of the rich config, with its schema (message key ->)."""
    config = rich_config()
    doc = document(config)
    sink = ListSink()
    sim = Simulation(config, sink, seed=5)
    sim.start_arrivals(limit=10)
    sim.env.run(until=86400)
    kafka = Contract(doc, ["kafka"])
    targets = [(Contract(doc, [f"mqtt-{t.name}"]), build_format(t.format, config, 5, topic_template=t.topic_template),
                t.records) for t in config.mqtt.enabled_targets
               if t.format != "sparkplug"]  # protobuf payloads: test_contracts.py decodes them
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for contract, fmt, kinds in [(kafka, CoffeeMekFormat(config, 5), ("cycle", "sample", "lot_event")), *targets]:
        done: set[str] = set()  # topics whose messages were all found
        for record in (r for r in sink.records if r.kind in kinds):
            for message in fmt.encode(record):
                if message.topic in done:
                    continue
                payload = orjson.loads(message.value)
                name, why = contract.match(message.topic, payload, message.headers, message.key)
                assert name is not None, why
                if name not in found:
                    found[name] = (payload, doc["components"]["messages"][name]["payload"])
                channel = contract.channel(message.topic)
                assert channel is not None
                if all(r["$ref"].rsplit("/", 1)[1] in found for r in channel["messages"].values()):
                    done.add(message.topic)
    return found


def test_a_payload_loses_a_field_changes_a_type_or_gains_a_field_and_fails(samples) -> None:  # type: ignore[no-untyped-def]
    assert len(samples) >= 25
    for key, (payload, schema) in samples.items():
        check = validator(schema)
        assert check.is_valid(payload), key
        for field in payload:
            assert not check.is_valid({k: v for k, v in payload.items() if k != field}), f"{key} without {field}"
            assert not check.is_valid({**payload, field: {"not": "a value of any field"}}), \
                f"{key} with an object as {field}"
        assert any("added_field" in e.message for e in check.iter_errors({**payload, "added_field": 1})), key


def test_a_signal_an_encoder_adds_without_its_schema_fails(samples) -> None:  # type: ignore[no-untyped-def]
    payload, schema = samples["kafka.coffeemek.cycle.fresa_cnc"]
    assert problems(schema, {**payload, "coppia_nm": 12.5})  # a milling machine has no torque
    nested, test_schema = samples["kafka.coffeemek.cycle.test"]
    broken = copy.deepcopy(nested)
    broken["risultati_test"]["umidita"] = 40.0
    assert problems(test_schema, broken)
    broken["risultati_test"] = {k: v for k, v in nested["risultati_test"].items() if k != "portata"}
    assert problems(test_schema, broken)


def test_words_and_enumerations_are_checked(samples) -> None:  # type: ignore[no-untyped-def]
    payload, schema = samples["kafka.coffeemek.lot_event"]
    assert problems(schema, {**payload, "event_type": "lot.teleported"})
    assert problems(schema, {**payload, "timestamp_utc": "yesterday"})
    assert problems(schema, {**payload, "timestamp_utc": "2025-13-45T99:00:00.000Z"})  # format checking is on
    assert problems(schema, {**payload, "event_id": "not-a-uuid"})
    blocked = {**payload, "event_type": "machine.blocked", "machine_id": "Italia-fresa_cnc-01", "reason": "jam",
               "cause": "failure"}
    assert problems(schema, blocked) == []
    assert problems(schema, {**blocked, "cause": None})  # a block always says what blocked the machine
    assert problems(schema, {**blocked, "machine_id": None})
    energy, energy_schema = samples["mqtt.enms.energy"]
    assert problems(energy_schema, {**energy, "frequency_hz": 55.0})


def test_a_format_contributes_its_channels_through_the_registry_protobuf_payloads_included(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new format's module gives the registry (here in the place of uns's): its topics, with a
    payload in another schema language, become channels of the document."""
    definition = 'syntax = "proto3"; message Payload { uint64 timestamp = 1; uint64 seq = 2; }'

    def contract(config: Any, target: Any) -> list[TopicMessages]:
        message = Message("binary.data", "Data", "A protobuf payload", definition,
                          content_type="application/x-protobuf", records=("sample",),
                          payload_format="application/vnd.google.protobuf;version=3")
        return [TopicMessages(f"spBv1.0/{target.name}/DDATA/{{node}}", {"node": parameter("the node")},
                              (message,), "device data")]

    monkeypatch.setitem(registry.MQTT_CONTRACTS, "uns", contract)
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["mqtt"] = {"targets": [{"name": "edge", "host": "broker", "format": "uns"}]}
    doc = document(parse(data, environ={}))
    assert official_errors(doc) == []
    channel = doc["channels"]["edge.spBv1.0_edge_DDATA_node"]
    assert channel["address"] == "spBv1.0/edge/DDATA/{node}" and channel["parameters"] == {
        "node": {"description": "the node"}}
    assert doc["components"]["messages"]["mqtt.binary.data"]["payload"] == {
        "schemaFormat": "application/vnd.google.protobuf;version=3", "schema": definition}


def test_a_target_whose_format_has_no_contract_is_named_not_described(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(registry.MQTT_CONTRACTS, "uns")
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["mqtt"] = {"targets": [{"name": "edge", "host": "broker", "format": "uns"}]}
    doc = document(parse(data, environ={}))
    assert official_errors(doc) == []
    assert doc["info"]["x-factorysim-formats-without-contract"] == ["uns"]
    assert "mqtt-edge" in doc["servers"]
    assert missing_contracts() == ["uns"]
