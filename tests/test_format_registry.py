"""Formats by name, topic templates, and decoding coffeemek messages back into records."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import orjson
import pytest

from simulator.config.mqtt import FORMATS
from simulator.config.schema import Config
from simulator.formats import Format
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.coffeemek_decode import DecodeError, decode_record
from simulator.formats.registry import build_format, check_topic_template, template_spec
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample, Record
from simulator.model.simulation import Simulation

from plants import plant

SEED = 5


def uniform(low: float, high: float) -> dict[str, Any]:
    return {"distribution": "uniform", "low": low, "high": high}


def mixed_plant(start: str) -> Config:
    """Every record kind and machine situation: five route types, utilities, idle sampled machines,
    blocks, failures, maintenance, shifts, rework and scrap, two time zones."""
    machines = {"cnc": 2, "3d_printer": 2, "welding": 1, "painting": 1, "test_rig": 1, "compressor": 1, "hvac": 1,
                "milling": 1}
    return plant(
        stages=[
            {"name": "machining", "machine_type": "cnc", "processing_time": uniform(600, 1800)},
            {"name": "printing", "machine_type": "3d_printer", "processing_time": uniform(900, 2400)},
            {"name": "welding", "machine_type": "welding", "processing_time": uniform(300, 900)},
            {"name": "painting", "machine_type": "painting", "processing_time": uniform(300, 900)},
            {"name": "testing", "machine_type": "test_rig", "processing_time": uniform(200, 600),
             "quality": {"rework_probability": 0.2, "scrap_probability": 0.1, "rework_stage": "painting"}},
        ],
        locations={
            "Torino": {"timezone": "Europe/Rome", "machines": machines, "shift_calendar": "two_shifts",
                       "climate": {}},
            "Pune": {"timezone": "Asia/Kolkata", "machines": machines},
        },
        shift_calendars={"two_shifts": {"shifts": [{"name": "early", "start": "06:00", "end": "14:00"},
                                                   {"name": "late", "start": "14:00", "end": "22:00"}]}},
        machine_types={"compressor": {"duty": "continuous", "sample_interval_s": 600},
                       "hvac": {"duty": "continuous"}, "welding": {"sample_interval_s": 0}},
        disruptions={"block_probability": 0.15, "repair_time": uniform(300, 1200),
                     "failures": {"mtbf_h": 30, "repair_time": uniform(600, 1800)},
                     "maintenance": {"every_cycles": 12, "duration": {"distribution": "constant", "value": 1800}}},
        telemetry={"sample_interval_s": 1800},
        arrivals={"rate_per_hour": 3.0},
        simulation={"start": start},
    )


# a start on a whole second, and one off the millisecond grid the night Rome changes to summer time
@pytest.fixture(scope="module", params=["2025-06-25T06:00:00Z", "2025-03-29T20:59:59.123456Z"])
def mixed(request: pytest.FixtureRequest) -> tuple[Config, list[Record]]:
    config = mixed_plant(request.param)
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.plant.machines["Torino-cnc-01"].anomaly = "bearing_fault"
    sim.plant.machines["Pune-compressor-01"].anomaly = "leak"
    sim.start_arrivals(limit=40)
    sim.env.run(until=3 * 86400)
    return config, sink.records


def test_the_run_covers_what_the_round_trip_must_survive(mixed) -> None:  # type: ignore[no-untyped-def]
    _, records = mixed
    events = {r.event_type for r in records if isinstance(r, LotEvent)}
    assert {"machine.blocked", "machine.repaired", "maintenance.started", "lot.reworked", "lot.scrapped",
            "lot.completed"} <= events
    samples = [r for r in records if isinstance(r, MachineSample)]
    cycles = [r for r in records if isinstance(r, CycleTelemetry)]
    assert {r.state for r in samples} >= {"idle", "running", "off_shift"}
    assert any(r.blocked for r in cycles) and {r.test_outcome for r in cycles} >= {"pass", "rework", "scrap"}
    assert any(r.anomaly for r in samples) and any(r.anomaly for r in cycles)


@pytest.mark.parametrize("target", ["coffeemek-kafka", *FORMATS])
def test_encoding_a_decoded_record_gives_the_same_messages(mixed, target: str) -> None:  # type: ignore[no-untyped-def]
    config, records = mixed
    kafka = CoffeeMekFormat(config, SEED)
    fmt: Format = kafka if target == "coffeemek-kafka" else build_format(target, config, SEED, run_id="i1")
    produced = 0
    for record in records:
        (message,) = kafka.encode(record)
        decoded = decode_record(message.topic, message.value)
        expected = fmt.encode(record)
        assert fmt.encode(decoded) == expected, (target, record)
        produced += len(expected)
    assert produced > 1000


def test_a_decoded_record_is_the_original_at_millisecond_precision(mixed) -> None:  # type: ignore[no-untyped-def]
    config, records = mixed
    kafka = CoffeeMekFormat(config, SEED)
    timed = {"sim_time", "last_maintenance_sim_s", "blocked_s", "cycle_time_s", "processed_s", "waited_s",
             "lead_time_s"}
    for record in records:
        (message,) = kafka.encode(record)
        decoded = decode_record(message.topic, message.value)
        assert type(decoded) is type(record)
        for field in dataclasses.fields(record):  # type: ignore[arg-type]
            original, back = getattr(record, field.name), getattr(decoded, field.name)
            if field.name in timed and original is not None:
                assert math.isclose(back, original, abs_tol=0.001), (field.name, original, back)
            else:
                assert back == original, (field.name, original, back)
        if not isinstance(record, LotEvent):
            assert list(decoded.signals) == list(record.signals)  # same order: formats iterate them


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b'{"tipo_messaggio": "ciclo"}', b'{"hello": 1}',
                                   b'{"event_type": "lot.queued", "event_id": "x-1"}'])
def test_foreign_messages_do_not_decode(value: bytes) -> None:
    with pytest.raises(DecodeError, match=r"coffeemek\.telemetry\.test"):
        decode_record("coffeemek.telemetry.test", value)


def test_build_format_by_name_and_unknown_names(default_config: Config) -> None:
    for name in FORMATS:
        assert build_format(name, default_config, 1).name == name
    with pytest.raises(ValueError, match="unknown format 'sparkplug-c'; allowed: coffeemek, spaceship, enms, uns, "
                                         "sparkplug"):
        build_format("sparkplug-c", default_config, 1)


def test_default_templates() -> None:
    assert template_spec("coffeemek")[0] == "{topic}"
    assert template_spec("spaceship")[0] == "{prefix}/{kind}"
    assert template_spec("enms")[0] == "{prefix}/{site}/{machine}/{kind}"
    assert template_spec("uns")[0] == "v1/{tenant}/{plant}/{line}/{machine}/{metric}"
    with pytest.raises(ValueError, match="format 'sparkplug' takes no topic template: Sparkplug fixes its topics"):
        template_spec("sparkplug")


@pytest.mark.parametrize(("name", "template", "problem"), [
    ("uns", "v1/{tenant}/{site}/{metric}", "unknown placeholder {site}; allowed: {tenant}, {plant}, {line}"),
    ("enms", "{prefix}/{machine!r}/{kind}", "unknown placeholder {machine!r}"),
    ("spaceship", "{prefix}/{kind:>10}", "unknown placeholder {kind:>10}"),
    ("spaceship", "{prefix}/{kind", "expected '}'"),
    ("spaceship", "{prefix}/+/{kind}", "must not contain '+', '#'"),
    ("coffeemek", "mirror/{}", "unknown placeholder {}; allowed: {topic}, {location}"),
    ("spaceship", "//", "the topic is empty"),
])
def test_bad_topic_templates_are_rejected_clearly(name: str, template: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        check_topic_template(name, template)
    assert repr(template) in str(caught.value) and repr(name) in str(caught.value)
    with pytest.raises(ValueError, match=r"unknown placeholder|must not contain|expected|empty"):
        build_format(name, plant(), 1, topic_template=template)


def test_custom_templates_and_empty_levels(mixed) -> None:  # type: ignore[no-untyped-def]
    config, records = mixed
    spaceship = build_format("spaceship", config, SEED, topic_template="plants/{location}/{kind}/{machine}")
    enms = build_format("enms", config, SEED, topic_template="energy/{location}/{machine_type}/{machine_id}/{kind}")
    uns = build_format("uns", config, SEED, topic_template="uns/{plant}/{line}/{machine_type}/{machine}/{metric}")
    sample = next(r for r in records if isinstance(r, MachineSample) and r.machine_id == "Torino-cnc-02")
    received = next(r for r in records if isinstance(r, LotEvent) and r.event_type == "lot.received"
                    and r.location == "Pune")
    assert spaceship.encode(sample)[0].topic == "plants/Torino/cnc/cnc-02"
    assert spaceship.encode(received)[0].topic == "plants/Pune/orders"  # no machine: the level drops out
    assert [m.topic for m in enms.encode(sample)] == [
        f"energy/Torino/cnc/Torino-cnc-02/{kind}" for kind in ("energy", "production", "environmental", "status")]
    assert {m.topic for m in uns.encode(sample)} >= {"uns/plant-01/Torino/cnc/cnc-02/state"}


def test_coffeemek_on_mqtt_uses_the_kafka_topics_with_slashes(mixed) -> None:  # type: ignore[no-untyped-def]
    config, records = mixed
    kafka = CoffeeMekFormat(config, SEED)
    mqtt = build_format("coffeemek", config, SEED)
    located = build_format("coffeemek", config, SEED, topic_template="factorysim/{location}/{topic}")
    for record in records[:500]:
        (k,) = kafka.encode(record)
        (m,) = mqtt.encode(record)
        (loc,) = located.encode(record)
        assert m.topic == k.topic.replace(".", "/") and "." not in m.topic
        assert loc.topic == f"factorysim/{record.location}/{m.topic}"
        assert (m.value, m.key, m.headers, m.retain) == (k.value, k.key, k.headers, False)
    assert orjson.loads(mqtt.encode(records[0])[0].value)["event_type"] == "lot.received"
