"""The uns MQTT format: one metric per message under v1/{tenant}/{plant}/{line}/{machine}/{metric}."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import orjson
import pytest

from simulator.config.schema import Config
from simulator.formats.uns import UnsFormat
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample, Record
from simulator.model.simulation import Simulation

from plants import plant

SEED = 21
PAYLOAD = ["ts", "id", "tenant", "plant", "line", "machine", "metric", "value", "unit", "q"]
UNITS = {"temp": "°C", "vibration_rms": "mm/s", "energy_kw": "kW", "good_count": "pcs", "bad_count": "pcs",
         "state": ""}
TEMPERATURE = {"milling": "spindle_temp_c", "lathe": "spindle_temp_c", "assembly": None}


def uniform(low: float, high: float) -> dict[str, Any]:
    return {"distribution": "uniform", "low": low, "high": high}


def uns_plant(**uns: Any) -> Config:
    machines = {"milling": 2, "lathe": 1, "assembly": 1}
    return plant(
        stages=[{"name": "mill", "machine_type": "milling", "processing_time": uniform(600, 1800)},
                {"name": "turn", "machine_type": "lathe", "processing_time": uniform(600, 1200)},
                {"name": "assemble", "machine_type": "assembly", "processing_time": uniform(600, 1800)}],
        locations={"Line-A": {"timezone": "Europe/Rome", "machines": machines},
                   "Line-B": {"timezone": "Asia/Ho_Chi_Minh", "machines": machines}},
        disruptions={"block_probability": 0.2, "repair_time": uniform(300, 900),
                     "maintenance": {"every_cycles": 10, "duration": {"distribution": "constant", "value": 1200}}},
        telemetry={"sample_interval_s": 900},
        formats={"uns": uns},
    )


def encode_run(config: Config, seed: int, run_id: str = "") -> tuple[list[Record], list[tuple[Record, Any]]]:
    sink = ListSink()
    sim = Simulation(config, sink, seed=seed)
    sim.start_arrivals(limit=20)
    sim.env.run(until=86400)
    fmt = UnsFormat(config, seed, run_id)
    return sink.records, [(r, m) for r in sink.records for m in fmt.encode(r)]


@pytest.fixture(scope="module")
def run() -> tuple[list[Record], list[tuple[Record, Any]]]:
    return encode_run(uns_plant(), SEED)


def test_one_metric_per_message_on_its_topic(run) -> None:  # type: ignore[no-untyped-def]
    _, messages = run
    for record, message in messages:
        body = orjson.loads(message.value)
        assert list(body) == PAYLOAD
        short = (record.machine_id or "").removeprefix(f"{record.location}-")
        assert message.topic == f"v1/acme/plant-01/{record.location}/{short}/{body['metric']}"
        assert (body["tenant"], body["plant"], body["line"], body["machine"]) == (
            "acme", "plant-01", record.location, short)
        assert body["unit"] == UNITS[body["metric"]] and body["q"] == 100
        assert body["ts"].endswith("Z") and not message.retain
        assert message.key == (record.machine_id or "").encode()


def test_values_are_the_machine_readings_counters_and_state(run) -> None:  # type: ignore[no-untyped-def]
    records, messages = run
    per_record: dict[tuple[str, int], dict[str, Any]] = {}  # by (plant, seq): a record's identity
    for record, message in messages:
        body = orjson.loads(message.value)
        metrics = per_record.setdefault((record.location, record.seq), {})
        assert body["metric"] not in metrics  # each metric once per record
        metrics[body["metric"]] = body["value"]
    telemetry = [r for r in records if isinstance(r, CycleTelemetry | MachineSample)]
    assert telemetry
    for record in telemetry:
        metrics = per_record[(record.location, record.seq)]
        temp = TEMPERATURE[record.machine_type]
        expected = {"energy_kw": record.signals["power_kw"], "state": record.state}
        if temp is not None:
            expected["temp"] = record.signals[temp]
        if "vibration_mm_s" in record.signals:
            expected["vibration_rms"] = record.signals["vibration_mm_s"]
        assert record.counters is not None
        expected |= {"good_count": record.counters.good_pieces, "bad_count": record.counters.bad_pieces}
        assert metrics == expected
    states = {r.state for r in telemetry}
    assert {"running", "idle", "blocked"} <= states


def test_machine_events_publish_the_state_they_leave(run) -> None:  # type: ignore[no-untyped-def]
    records, messages = run
    states = {(r.location, r.seq): orjson.loads(m.value)["value"] for r, m in messages if isinstance(r, LotEvent)}
    expected = {"stage.started": "running", "stage.completed": "idle", "machine.blocked": "blocked",
                "maintenance.started": "maintenance", "maintenance.completed": "idle"}
    seen = Counter()
    for record in records:
        if not isinstance(record, LotEvent):
            continue
        if record.event_type == "machine.repaired":
            assert states[(record.location, record.seq)] == "running"  # per-cycle blocks: the lot goes on
        elif record.event_type in expected:
            assert states[(record.location, record.seq)] == expected[record.event_type]
        else:
            assert (record.location, record.seq) not in states
        seen[record.event_type] += 1
    assert seen["machine.blocked"] and seen["maintenance.started"]


def test_ids_are_unique_deterministic_and_differ_between_seeds_and_runs(run) -> None:  # type: ignore[no-untyped-def]
    _, messages = run
    ids = [orjson.loads(m.value)["id"] for _, m in messages]
    assert len(set(ids)) == len(ids) > 1000
    assert all(uuid.UUID(i).version == 5 for i in ids[:50])
    _, again = encode_run(uns_plant(), SEED)
    assert [orjson.loads(m.value)["id"] for _, m in again] == ids
    _, other_seed = encode_run(uns_plant(), SEED + 1)
    assert not set(ids) & {orjson.loads(m.value)["id"] for _, m in other_seed}
    _, other_run = encode_run(uns_plant(), SEED, run_id="another-run")
    assert not set(ids) & {orjson.loads(m.value)["id"] for _, m in other_run}


def test_tenant_and_plant_come_from_the_config() -> None:
    _, messages = encode_run(uns_plant(tenant="globex", plant="works-3"), SEED)
    _, message = messages[0]
    body = orjson.loads(message.value)
    assert message.topic.startswith("v1/globex/works-3/") and (body["tenant"], body["plant"]) == ("globex", "works-3")
