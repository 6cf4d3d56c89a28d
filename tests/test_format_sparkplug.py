"""The ``sparkplug`` format and its edge node without a broker: births, report by exception, seq,
bdSeq, rebirth, device commands and the configuration rules, every payload read back with an
independent decoder (Google's protobuf runtime, harness/sparkplug_decode.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from simulator.adapters.sparkplug_node import SparkplugNode
from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.formats.registry import build_format
from simulator.formats.sparkplug import SparkplugFormat, edge_node_id
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample, Record
from simulator.model.simulation import Simulation

from harness import sparkplug_decode as spb
from plants import plant

SEED = 11
Published = list[tuple[str, bytes]]


def records_of(config: Config, hours: float = 12.0) -> list[Record]:
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.start_arrivals(limit=60)
    sim.env.run(until=hours * 3600)
    return sink.records


def with_options(config: Config, **options: Any) -> Config:
    data = config.model_dump(mode="json", exclude_none=True)
    data.setdefault("formats", {})["sparkplug"] = options
    return parse(data, environ={})


class Edge:
    """A format and its edge node with a recording publish: what a target would put on the broker."""

    def __init__(self, config: Config, on_command: Callable[[bytes], Any] | None = None) -> None:
        self.fmt = build_format("sparkplug", config, SEED)
        assert isinstance(self.fmt, SparkplugFormat)
        self.node = SparkplugNode(self.fmt.table, self.fmt.epoch_ms(0.0), on_command)
        self.published: Published = []
        self.will = self.node.will()
        self.node.connected(self.publish)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        assert not retain
        self.published.append((topic, payload))

    def send(self, records: list[Record]) -> None:
        """Each record's messages as the session publishes them (the node makes the payload)."""
        for record in records:
            for message in self.fmt.encode(record):
                payload = self.node.prepare(message)
                if payload is not None:
                    self.publish(message.topic, payload)


def kind_of(topic: str) -> tuple[str, str]:
    parts = topic.split("/")
    return parts[2], parts[4] if len(parts) > 4 else ""


@pytest.fixture(scope="module")
def reference(default_yaml: dict[str, Any]) -> tuple[Config, list[Record]]:
    config = parse(default_yaml, environ={})
    return config, records_of(config)


def test_births_name_every_metric_once_and_data_carries_aliases_only(reference) -> None:  # type: ignore[no-untyped-def]
    config, records = reference
    edge = Edge(config)
    node_id = edge_node_id(config)
    births = list(edge.published)
    nbirth_topic, nbirth = births[0]
    assert nbirth_topic == f"spBv1.0/factorysim/NBIRTH/{node_id}"
    node = spb.decode(nbirth)
    assert node.seq == 0 and node.by_name() == {"bdSeq": 0, "Node Control/Rebirth": False}
    assert [m.datatype for m in node.metrics] == [spb.INT64, spb.BOOLEAN]
    machines = [slot.id for slot in config.machine_slots]
    assert [t for t, _ in births[1:]] == [f"spBv1.0/factorysim/DBIRTH/{node_id}/{m}" for m in machines]
    aliases = [m.alias for _, p in births for m in spb.decode(p).metrics]
    assert len(aliases) == len(set(aliases)), "aliases are unique across the edge node"
    first = spb.decode(births[1][1])
    names = first.by_name()
    assert {"State", "Anomaly", "Lot/Current", "Lot/Last Event", "Counters/Good Pieces", "OEE/OEE",
            "Signals/power_kw", "Info/Machine Type", "Commands/Block", "Commands/Anomaly"} <= set(names)
    assert names["Info/Machine Type"] == config.machine_slots[0].machine_type and names["State"] is None
    assert names["Commands/Block"] is False and names["Commands/Anomaly"] == ""
    assert all(m.datatype in (spb.INT64, spb.DOUBLE, spb.BOOLEAN, spb.STRING) for m in first.metrics)
    assert [spb.decode(p).seq for _, p in births] == list(range(len(births)))

    edge.send(records[:2000])
    data = edge.published[len(births):]
    assert data and {kind_of(t)[0] for t, _ in data} == {"DDATA"}
    known = set(aliases)
    for _, payload in data:
        decoded = spb.decode(payload)
        assert decoded.timestamp is not None and decoded.metrics
        for m in decoded.metrics:
            assert m.name is None and m.datatype is None and m.alias in known and m.timestamp == decoded.timestamp


def test_a_host_view_follows_the_records_although_only_changes_are_sent(reference) -> None:  # type: ignore[no-untyped-def]
    config, records = reference
    edge = Edge(config)
    host = spb.Host()
    sent_metrics = given_metrics = checked = 0
    for record in records:
        before = len(edge.published)
        edge.send([record])
        for topic, payload in edge.published[before:] if checked else edge.published:
            kind, device = kind_of(topic)
            host.apply(kind, device, spb.decode(payload))
        if isinstance(record, MachineSample | CycleTelemetry) and record.counters is not None:
            view = host.values[record.machine_id]
            assert view["State"] == record.state
            assert view["Counters/Good Pieces"] == record.counters.good_pieces
            assert view["Counters/Bad Pieces"] == record.counters.bad_pieces
            assert view["Anomaly"] == (record.anomaly or "")
            assert view["Lot/Current"] == (record.lot_code or "")
            for signal, value in record.signals.items():
                assert view[f"Signals/{signal}"] == value, signal
            given_metrics += len(record.signals) + 11
            sent_metrics += sum(len(spb.decode(p).metrics) for _, p in edge.published[before:])
            checked += 1
        elif isinstance(record, LotEvent) and record.machine_id is not None:
            assert host.values[record.machine_id]["Lot/Last Event"] == record.event_type
    assert checked > 100
    assert sent_metrics < given_metrics * 0.9, "unchanged metrics (counters, state, lot) are not sent again"
    assert edge.node.data_unchanged > 0 or sent_metrics < given_metrics


def test_seq_numbers_every_message_of_the_node_and_wraps_after_255(reference) -> None:  # type: ignore[no-untyped-def]
    config, records = reference
    edge = Edge(config)
    edge.send(records)
    seqs = [spb.decode(p).seq for _, p in edge.published]
    assert len(seqs) > 300
    assert seqs == [n % 256 for n in range(len(seqs))]


def test_a_rebirth_command_sends_births_with_the_current_values(reference) -> None:  # type: ignore[no-untyped-def]
    config, records = reference
    edge = Edge(config)
    host = spb.Host()
    edge.send(records[:3000])
    for topic, payload in edge.published:
        host.apply(*kind_of(topic), spb.decode(payload))
    before = len(edge.published)
    node_id = edge_node_id(config)
    assert edge.node.message(f"spBv1.0/factorysim/NCMD/{node_id}", spb.encode([("Node Control/Rebirth", spb.BOOLEAN,
                                                                                    True)]))
    rebirth = edge.published[before:]
    assert [kind_of(t)[0] for t, _ in rebirth] == ["NBIRTH"] + ["DBIRTH"] * len(config.machine_slots)
    assert [spb.decode(p).seq for _, p in rebirth] == list(range(len(rebirth)))
    assert spb.decode(rebirth[0][1]).by_name()["bdSeq"] == 0, "a rebirth keeps the connection's bdSeq"
    for topic, payload in rebirth[1:]:
        device = kind_of(topic)[1]
        births = spb.decode(payload).by_name()
        assert {k: v for k, v in births.items() if k in host.values[device]} == host.values[device]
    assert edge.node.rebirths_requested == 1 and edge.node.births == 2


def test_the_will_and_a_clean_stop_say_ndeath_with_the_connections_bdseq(reference) -> None:  # type: ignore[no-untyped-def]
    config, _ = reference
    edge = Edge(config)
    node_id = edge_node_id(config)
    topic, payload = edge.will
    assert topic == f"spBv1.0/factorysim/NDEATH/{node_id}"
    death = spb.decode(payload)
    assert death.by_name() == {"bdSeq": 0} and death.seq is None
    assert death.metrics[0].datatype == spb.INT64
    for expected in range(1, 260):  # every new connection takes the next one, 0..255
        topic, payload = edge.node.will()
        assert spb.decode(payload).by_name()["bdSeq"] == expected % 256
    edge.node.connected(edge.publish)
    assert spb.decode(edge.published[-len(config.machine_slots) - 1][1]).by_name()["bdSeq"] == 259 % 256
    edge.node.closing(edge.publish)
    assert edge.published[-1][0] == topic and spb.decode(edge.published[-1][1]).by_name() == {"bdSeq": 259 % 256}


def test_the_same_seed_gives_the_same_bytes(reference) -> None:  # type: ignore[no-untyped-def]
    config, records = reference
    first, second = Edge(config), Edge(config)
    first.send(records)
    second.send(records_of(config))
    assert first.published == second.published


def test_group_edge_node_and_flat_names_come_from_the_options() -> None:
    two = plant(locations={"Torino": {"timezone": "Europe/Rome", "machines": {"milling": 1}},
                           "Pune": {"timezone": "Asia/Kolkata", "machines": {"milling": 1}}})
    edge = Edge(two)
    assert edge.published[0][0] == "spBv1.0/factorysim/NBIRTH/factorysim", "several locations: one node"
    edge = Edge(with_options(two, group_id="plants", edge_node_id="edge-7", naming="flat"))
    assert [t for t, _ in edge.published] == ["spBv1.0/plants/NBIRTH/edge-7",
                                              "spBv1.0/plants/DBIRTH/edge-7/Torino-milling-01",
                                              "spBv1.0/plants/DBIRTH/edge-7/Pune-milling-01"]
    names = spb.decode(edge.published[1][1]).by_name()
    assert {"state", "good_pieces", "oee", "spindle_temp_c", "power_kw", "machine_type", "cmd_block"} <= set(names)
    assert not any("/" in name for name in names)


async def test_device_commands_become_runtime_commands_and_bad_writes_are_counted(reference) -> None:  # type: ignore[no-untyped-def]
    config, _ = reference
    executed: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def execute(payload: bytes) -> None:
        executed.append(orjson.loads(payload))
        done.set()

    edge = Edge(config, execute)
    node_id = edge_node_id(config)
    machine = config.machine_slots[0].id
    dcmd = f"spBv1.0/factorysim/DCMD/{node_id}/{machine}"
    birth = spb.decode(edge.published[1][1])
    repair_alias = next(m.alias for m in birth.metrics if m.name == "Commands/Repair")

    async def write(payload: bytes, topic: str = dcmd) -> None:
        done.clear()
        assert edge.node.message(topic, payload)
        await asyncio.sleep(0)  # the command runs as its own task

    await write(spb.encode([("Commands/Block", spb.BOOLEAN, True)]))
    await write(spb.encode([("Commands/Anomaly", spb.STRING, "bearing_fault")]))
    await write(spb.encode([("Commands/Block", spb.BOOLEAN, False), ("Commands/Anomaly", spb.STRING, "")]))
    await write(spb.encode([("Commands/Clear Anomaly", spb.BOOLEAN, True)]))
    await write(spb.encode([(repair_alias, spb.BOOLEAN, True)]))  # a host writing by alias
    await asyncio.wait_for(done.wait(), 5)
    assert executed == [
        {"command": "block", "machine_id": machine, "reason": "sparkplug"},
        {"command": "anomaly", "machine_id": machine, "type": "bearing_fault"},
        {"command": "clear_anomaly", "machine_id": machine},
        {"command": "repair", "machine_id": machine},
    ]
    assert edge.node.commands_rejected == 0
    await write(spb.encode([("State", spb.STRING, "running")]))  # read-only
    await write(spb.encode([("Commands/Block", spb.STRING, "yes")]))  # wrong type
    await write(spb.encode([("Commands/Block", spb.BOOLEAN, True)]), f"spBv1.0/factorysim/DCMD/{node_id}/nope")
    await write(b"\xff\xff\xff")  # not protobuf
    await write(spb.encode([("Node Control/Reboot", spb.BOOLEAN, True)]), f"spBv1.0/factorysim/NCMD/{node_id}")
    assert edge.node.commands_rejected == 5 and len(executed) == 4
    bridge = Edge(config)  # no model: device commands cannot be executed
    assert bridge.node.message(dcmd, spb.encode([("Commands/Block", spb.BOOLEAN, True)]))
    assert bridge.node.commands_rejected == 1
    assert not edge.node.message("spBv1.0/factorysim/DCMD/other-node/x", b"")


def test_sparkplug_is_for_mqtt_targets_without_templates_or_spool() -> None:
    def config(**changes: Any) -> Config:
        return plant(**changes)

    target = {"name": "spb", "host": "localhost", "format": "sparkplug"}
    assert config(mqtt={"targets": [target]}).mqtt.targets[0].format == "sparkplug"
    with pytest.raises(ConfigError, match="format sparkplug takes no topic_template"):
        config(mqtt={"targets": [{**target, "topic_template": "x/{machine}"}]})
    with pytest.raises(ConfigError, match="format sparkplug publishes nothing retained"):
        config(mqtt={"targets": [{**target, "retain": True}]})
    with pytest.raises(ConfigError, match="format sparkplug keeps no spool"):
        config(mqtt={"targets": [{**target, "spool": {"path": "/tmp/x.sqlite3"}}]})
    with pytest.raises(ConfigError, match="format sparkplug is for MQTT targets only"):
        config(http_sinks=[{"name": "api", "url": "http://localhost:9/x", "format": "sparkplug"}])
    with pytest.raises(ConfigError, match="naming"):
        config(formats={"sparkplug": {"naming": "dotted"}})
    with pytest.raises(ConfigError, match="edge_node_id"):
        config(formats={"sparkplug": {"edge_node_id": "a/b"}})


@pytest.mark.parametrize("data", [
    b"\x12\x18\n\x0eCommands/Block\x10\x05\x18\x01 \x0bh\x01",  # a string value field sent as a varint
    b"\x12\x06\n\x01x\x69\x01\x02",  # a double value field sent as a 32-bit one, cut short
    b"\x12\x80",  # a metric whose length runs past the end
    b"\xff" * 20,  # a varint longer than 64 bits
])
def test_a_malformed_payload_is_a_decode_error_never_another_exception(data: bytes) -> None:
    from simulator.formats import sparkplug_wire as wire

    with pytest.raises(wire.DecodeError):
        wire.decode(data)
