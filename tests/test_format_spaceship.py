"""The spaceship MQTT format: topics by machine kind, fields from simulated state, orders and dispatch."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest

from simulator.config.schema import Config
from simulator.formats.spaceship import SpaceshipFormat
from simulator.model.order import Order
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample, Record
from simulator.model.simulation import Simulation

from plants import plant

SEED = 3
KIND_TOPIC = {"cnc": "cnc", "3d_printer": "3dprinter", "welding": "welding", "painting": "painting",
              "test_rig": "testing", "assembly": "telemetry", "compressor": "telemetry"}
TELEMETRY_FIELDS = {"timestamp", "machine_id", "station_id", "status", "off_shift", "location", "machine_type",
                    "order_id", "alarm", "anomaly", "good_count", "bad_count", "oee"}


def uniform(low: float, high: float) -> dict[str, Any]:
    return {"distribution": "uniform", "low": low, "high": high}


def spaceship_plant(**formats: Any) -> Config:
    return plant(
        stages=[
            {"name": "machining", "machine_type": "cnc", "processing_time": uniform(600, 1800)},
            {"name": "printing", "machine_type": "3d_printer", "processing_time": uniform(900, 2400)},
            {"name": "welding", "machine_type": "welding", "processing_time": uniform(300, 900)},
            {"name": "painting", "machine_type": "painting", "processing_time": uniform(300, 900)},
            {"name": "testing", "machine_type": "test_rig", "processing_time": uniform(200, 600),
             "quality": {"rework_probability": 0.2, "scrap_probability": 0.15, "rework_stage": "painting"}},
        ],
        locations={"Hangar": {"timezone": "Europe/Rome", "shift_calendar": "day",
                              "machines": {"cnc": 2, "3d_printer": 2, "welding": 1, "painting": 1, "test_rig": 1,
                                           "assembly": 1, "compressor": 1}}},
        shift_calendars={"day": {"shifts": [{"name": "day", "start": "06:00", "end": "22:00"}]}},
        disruptions={"block_probability": 0.2, "repair_time": uniform(300, 1200)},
        telemetry={"sample_interval_s": 600},
        arrivals={"rate_per_hour": 3.0},
        formats=formats,
    )


@pytest.fixture(scope="module")
def run() -> tuple[Config, list[Record], list[tuple[Record, Any, dict[str, Any]]]]:
    config = spaceship_plant()
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.start_arrivals(limit=40)
    sim.env.run(until=4 * 86400)
    fmt = SpaceshipFormat(config, SEED)
    encoded = [(r, m, orjson.loads(m.value)) for r in sink.records for m in fmt.encode(r)]
    return config, sink.records, encoded


def telemetry(run):  # type: ignore[no-untyped-def]
    return [(r, m, b) for r, m, b in run[2] if not isinstance(r, LotEvent)]


def test_machine_telemetry_goes_to_the_topic_of_its_kind(run) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = run
    seen = set()
    for record, message, body in telemetry(run):
        kind = config.model_of(record.machine_type)
        assert message.topic == f"factory/{KIND_TOPIC[kind]}"
        assert message.key == record.machine_id.encode() and not message.retain
        assert body.keys() >= TELEMETRY_FIELDS
        assert body["machine_id"] == record.machine_id and body["station_id"] == f"Hangar-{record.machine_type}"
        assert body["timestamp"].endswith("Z")
        seen.add(message.topic)
    assert seen == {f"factory/{t}" for t in KIND_TOPIC.values()}


def test_status_follows_the_machine_state(run) -> None:  # type: ignore[no-untyped-def]
    mapping = {"running": "running", "idle": "idle", "maintenance": "maintenance", "blocked": "faulted",
               "off_shift": "idle"}
    states = set()
    for record, _, body in telemetry(run):
        states.add(record.state)
        assert body["status"] == mapping[record.state]
        assert body["off_shift"] is (record.state == "off_shift")
        assert body["order_id"] == record.lot_code
    assert states >= {"running", "idle", "blocked", "off_shift"}


def test_a_faulted_machine_shows_the_alarm_of_its_block(run) -> None:  # type: ignore[no-untyped-def]
    _, records, _ = run
    blocks: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    open_blocks: dict[str, tuple[float, str]] = {}
    for r in records:
        if isinstance(r, LotEvent) and r.event_type == "machine.blocked":
            assert r.machine_id is not None and r.reason is not None
            open_blocks[r.machine_id] = (r.sim_time, r.reason)
        elif isinstance(r, LotEvent) and r.event_type == "machine.repaired":
            assert r.machine_id is not None
            start, reason = open_blocks.pop(r.machine_id)
            blocks[r.machine_id].append((start, r.sim_time, reason))
    faulted = 0
    for record, _, body in telemetry(run):
        if body["status"] == "faulted":
            faulted += 1
            assert isinstance(record, MachineSample)
            (reason,) = [why for start, end, why in blocks[record.machine_id] if start <= record.sim_time <= end]
            assert body["alarm"] == f"BLOCK: {reason}"
        elif isinstance(record, CycleTelemetry) and record.blocked:
            assert body["alarm"] == f"BLOCK: {record.block_reason}"  # the cycle was stopped by that block
        elif record.anomaly is None:
            assert body["alarm"] is None
    assert faulted > 0


def test_cycle_fields_quality_and_test_results(run) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = run
    results = set()
    for record, _, body in telemetry(run):
        kind = config.model_of(record.machine_type)
        if isinstance(record, MachineSample):
            assert "cycle_time" not in body and "quality" not in body and "test_result" not in body
            continue
        assert body["cycle_time"] == round(record.cycle_time_s, 3)
        assert body["quality"] == {None: "good", "pass": "good", "rework": "rework", "scrap": "scrap"}[
            record.test_outcome]
        if kind == "test_rig":
            results.add(body["test_result"])
            assert body["test_result"] == ("pass" if record.test_outcome == "pass" else "fail")
            assert (body["issues_found"] >= 1) == (body["test_result"] == "fail")
            assert body["test_pressure_bar"] == record.signals["test_pressure_bar"]
        else:
            assert "test_result" not in body and "issues_found" not in body
    assert results == {"pass", "fail"}


def test_printer_progress_is_known_only_at_the_end_of_a_job(run) -> None:  # type: ignore[no-untyped-def]
    printers = [(r, b) for r, _, b in telemetry(run) if r.machine_type == "3d_printer"]
    assert printers
    for record, body in printers:
        assert "progress_pct" not in body
        assert body["progress"] == (1.0 if isinstance(record, CycleTelemetry) else None)
        assert body["nozzle_temp_c"] == record.signals["nozzle_temp_c"]
    others = [b for r, _, b in telemetry(run) if r.machine_type != "3d_printer"]
    assert all("progress" not in b for b in others)


def test_oee_and_piece_counts_come_from_the_counters(run) -> None:  # type: ignore[no-untyped-def]
    pieces: dict[str, int] = defaultdict(int)
    for record, _, body in telemetry(run):
        c = record.counters
        assert c is not None
        assert body["oee"] == {"availability": round(c.availability, 4), "performance": round(c.performance, 4),
                               "quality": round(c.quality, 4), "oee": round(c.oee, 4)}
        assert 0 <= body["oee"]["oee"] <= body["oee"]["availability"] <= 1
        if isinstance(record, CycleTelemetry):
            pieces[record.machine_id] += record.quantity
        # every piece the machine has worked so far is counted good or bad
        assert body["good_count"] + body["bad_count"] == pieces[record.machine_id]
    rig = [b for r, _, b in telemetry(run) if r.machine_type == "test_rig"][-1]
    assert rig["bad_count"] > 0 and rig["oee"]["quality"] < 1


def test_orders_and_dispatch_follow_the_lots(run) -> None:  # type: ignore[no-untyped-def]
    _, records, encoded = run
    received = [r for r in records if isinstance(r, LotEvent) and r.event_type == "lot.received"]
    completed = {r.lot_code: r for r in records if isinstance(r, LotEvent) and r.event_type == "lot.completed"}
    scrapped = {r.lot_code for r in records if isinstance(r, LotEvent) and r.event_type == "lot.scrapped"}
    assert completed and scrapped
    orders = [b for r, m, b in encoded if m.topic == "factory/orders"]
    dispatches = [(r, b) for r, m, b in encoded if m.topic == "factory/dispatch"]
    assert [b["order_id"] for b in orders] == [r.lot_code for r in received]
    for record, body in zip(received, orders, strict=True):
        assert body == {"timestamp": body["timestamp"], "order_id": record.lot_code, "customer": record.customer,
                        "quantity": record.quantity, "priority": {"alta": "high", "normale": "normal",
                                                                   "bassa": "low"}[record.priority or ""],
                        "location": "Hangar", "status": "received"}
    assert {b["order_id"] for _, b in dispatches} == set(completed)
    assert not scrapped & {b["order_id"] for _, b in dispatches}
    for record, body in dispatches:
        lot = completed[body["order_id"]]
        assert record is lot
        assert body["lead_time_s"] == round(lot.lead_time_s or 0, 3) and body["quantity"] == lot.quantity
        assert body["customer"] == lot.customer and body["status"] == "dispatched"
    assert len({b["dispatch_id"] for _, b in dispatches}) == len(dispatches)
    others = [r for r, _, _ in encoded if isinstance(r, LotEvent) and r.event_type not in
              ("lot.received", "lot.completed")]
    assert others == []


def test_the_topic_prefix_is_configurable() -> None:
    config = spaceship_plant(spaceship={"topic_prefix": "sites/hangar"})
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.admit(Order("NEW-1", "Orbital", 5, "Hangar", "alta"))
    sim.env.run(until=3600)
    fmt = SpaceshipFormat(config, SEED)
    messages = [m for r in sink.records for m in fmt.encode(r)]
    orders = [orjson.loads(m.value)["order_id"] for m in messages if m.topic == "sites/hangar/orders"]
    assert orders == ["NEW-1"]
    assert {m.topic for m in messages} <= {f"sites/hangar/{t}" for t in (*KIND_TOPIC.values(), "orders")}
