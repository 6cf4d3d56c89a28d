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


def test_each_topic_carries_the_same_fields_on_samples_and_cycle_records(run) -> None:  # type: ignore[no-untyped-def]
    keys: dict[str, set[frozenset[str]]] = defaultdict(set)
    for record, message, body in telemetry(run):
        keys[message.topic].add(frozenset(k for k in body if k not in record.signals))
    assert {topic: len(sets) for topic, sets in keys.items()} == dict.fromkeys(keys, 1)
    assert set(next(iter(keys["factory/cnc"]))) >= {"part_type", "part_id", "cycle_time", "quality"}
    assert set(next(iter(keys["factory/3dprinter"]))) >= {"part_type", "part_id", "progress", "quality"}
    assert set(next(iter(keys["factory/welding"]))) >= {"assembly_id", "assembly_type", "last_cycle_time", "quality"}
    assert set(next(iter(keys["factory/painting"]))) >= {"part_id", "color", "cycle_time", "quality"}
    assert set(next(iter(keys["factory/testing"]))) >= {"target_id", "target_type", "test_result", "issues_found"}


def test_cycle_fields_quality_and_test_results(run) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = run
    results = set()
    for record, _, body in telemetry(run):
        kind = config.model_of(record.machine_type)
        time_field = "last_cycle_time" if kind == "welding" else "cycle_time"
        if isinstance(record, MachineSample):
            assert body[time_field] is None and body["quality"] is None
            if kind == "test_rig":
                assert (body["test_result"], body["issues_found"]) == (None, 0)
            continue
        assert body[time_field] == round(record.cycle_time_s, 3)
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


def test_printer_progress_rises_through_each_print_and_is_1_at_its_end(run) -> None:  # type: ignore[no-untyped-def]
    _, records, _ = run
    started = {(r.lot_code, r.machine_id): r.sim_time for r in records
               if isinstance(r, LotEvent) and r.event_type == "stage.started"}
    jobs: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    ends: dict[tuple[str, str], CycleTelemetry] = {}
    idle = 0
    for record, _, body in telemetry(run):
        if record.machine_type != "3d_printer":
            assert "progress" not in body
            continue
        assert "progress_pct" not in body
        if isinstance(record, CycleTelemetry):
            assert body["progress"] == 1.0
            ends[(record.lot_code, record.machine_id)] = record
        elif record.lot_code is None:
            assert body["progress"] == 0.0
            idle += 1
        else:
            jobs[(record.lot_code, record.machine_id)].append((record.sim_time, body["progress"]))
    assert idle and len(jobs) >= 10
    steady = 0
    for job, points in jobs.items():
        values = [p for _, p in points]
        assert values == sorted(values) and all(0.0 <= p <= 1.0 for p in values), job
        end = ends.get(job)
        if end is not None and not end.blocked:  # never stopped: the share of the print's time gone by
            steady += 1
            for at, progress in points:
                assert progress == pytest.approx((at - started[job]) / end.processed_s, abs=1e-4)
    assert steady >= 5


def test_ids_count_each_machines_cycles_and_types_belong_to_the_lot(run) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = run
    id_field = {"cnc": "part_id", "3d_printer": "part_id", "welding": "assembly_id", "painting": "part_id",
                "test_rig": "target_id"}
    type_field = {"cnc": "part_type", "3d_printer": "part_type", "welding": "assembly_type", "painting": "color",
                  "test_rig": "target_type"}
    numbers: dict[str, list[int]] = defaultdict(list)
    lot_types: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record, _, body in telemetry(run):
        kind = config.model_of(record.machine_type)
        if kind not in id_field:
            continue
        c = record.counters
        assert c is not None
        name = body[id_field[kind]]
        if record.lot_code is None:
            assert body[type_field[kind]] is None
            assert name == (f"A-{c.cycles}" if kind == "welding" and c.cycles else None)  # a station's last weld
            continue
        prefix, _, number = name.rpartition("-")
        expected = c.cycles if isinstance(record, CycleTelemetry) else c.cycles + 1  # the cycle in progress
        assert int(number) == expected
        if isinstance(record, CycleTelemetry):
            numbers[record.machine_id].append(int(number))
        lot_types[(kind, record.lot_code)].add(body[type_field[kind]])
        if kind in ("cnc", "3d_printer"):
            assert prefix == "".join(ch for ch in body["part_type"] if ch.isupper())
        else:
            assert prefix == {"welding": "A", "painting": "Frame"}.get(kind) or \
                config.formats.spaceship.products[body["target_type"]]
    for machine, seen in numbers.items():
        assert seen == list(range(1, len(seen) + 1)), machine
    assert all(len(types) == 1 for types in lot_types.values())  # every message of a lot names the same
    options = config.formats.spaceship
    for kind, values in (("cnc", options.cnc_part_types), ("3d_printer", options.printer_part_types),
                         ("welding", options.assembly_types), ("painting", options.colors)):
        chosen = {next(iter(t)) for (k, _), t in lot_types.items() if k == kind}
        assert chosen <= set(values) and len(chosen) >= 2, kind


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
    config, records, encoded = run
    options = config.formats.spaceship
    received = [r for r in records if isinstance(r, LotEvent) and r.event_type == "lot.received"]
    completed = {r.lot_code: r for r in records if isinstance(r, LotEvent) and r.event_type == "lot.completed"}
    scrapped = {r.lot_code for r in records if isinstance(r, LotEvent) and r.event_type == "lot.scrapped"}
    assert completed and scrapped
    orders = [b for r, m, b in encoded if m.topic == "factory/orders"]
    dispatches = [(r, b) for r, m, b in encoded if m.topic == "factory/dispatch"]
    assert [b["order_id"] for b in orders] == [r.lot_code for r in received]
    products = {}
    for record, body in zip(received, orders, strict=True):
        (item,) = body["items"]
        products[record.lot_code] = item["product_type"]
        assert body == {"timestamp": body["timestamp"], "event_type": "order_placed", "order_id": record.lot_code,
                        "items": [{"product_type": item["product_type"], "quantity": record.quantity}],
                        "customer": record.customer, "quantity": record.quantity,
                        "priority": {"alta": "high", "normale": "normal", "bassa": "low"}[record.priority or ""],
                        "location": "Hangar", "status": "received"}
        assert item["product_type"] in options.products
    assert len(set(products.values())) >= 2
    assert {b["order_id"] for _, b in dispatches} == set(completed)
    assert not scrapped & {b["order_id"] for _, b in dispatches}
    destinations: dict[str, set[str]] = defaultdict(set)
    for record, body in dispatches:
        lot = completed[body["order_id"]]
        assert record is lot
        assert body["event_type"] == "order_dispatched"
        assert body["items"] == [{"product_type": products[lot.lot_code], "quantity": lot.quantity}]
        assert body["destination"] in options.destinations and body["carrier"] in options.carriers
        destinations[body["customer"]].add(body["destination"])
        assert body["lead_time_s"] == round(lot.lead_time_s or 0, 3) and body["quantity"] == lot.quantity
        assert body["customer"] == lot.customer and body["status"] == "dispatched"
    assert all(len(d) == 1 for d in destinations.values())  # a customer's ships go to one place
    assert len({b["dispatch_id"] for _, b in dispatches}) == len(dispatches)
    # the tested unit is the order's product
    for record, _, body in telemetry(run):
        if record.machine_type == "test_rig" and record.lot_code is not None:
            assert body["target_type"] == products[record.lot_code]
    others = [r for r, _, _ in encoded if isinstance(r, LotEvent) and r.event_type not in
              ("lot.received", "lot.completed")]
    assert others == []


def test_the_lots_names_depend_on_the_seed_and_the_lists_of_the_config() -> None:
    options = {"products": {"Lander": "LND"}, "cnc_part_types": ["HullPanel", "NoseCone"],
               "destinations": ["Phobos"], "carriers": ["Tug"]}
    config = spaceship_plant(spaceship=options)
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.start_arrivals(limit=12)
    sim.env.run(until=86400)
    names = {}
    for seed in (SEED, SEED, SEED + 1):
        fmt = SpaceshipFormat(config, seed)
        bodies = [orjson.loads(m.value) for r in sink.records for m in fmt.encode(r) if m.topic == "factory/cnc"]
        names[seed] = [*names.get(seed, []), [(b["order_id"], b["part_type"]) for b in bodies if b["part_type"]]]
        dispatched = [orjson.loads(m.value) for r in sink.records for m in fmt.encode(r)
                      if m.topic == "factory/dispatch"]
        assert dispatched and {(d["destination"], d["carrier"]) for d in dispatched} == {("Phobos", "Tug")}
        assert {i["product_type"] for d in dispatched for i in d["items"]} == {"Lander"}
    same, again = names[SEED]
    assert same == again  # the same seed names every lot the same
    assert {part for _, part in same} == {"HullPanel", "NoseCone"}
    assert names[SEED + 1][0] != same  # another seed chooses otherwise


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
