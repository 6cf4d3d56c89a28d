"""The enms MQTT format: energy, production, environmental and retained status per machine."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest

from simulator.config.schema import Config
from simulator.formats.enms import EnmsFormat, machine_uuid
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample, Record
from simulator.model.simulation import Simulation

from plants import plant

SEED = 9
KINDS = ("energy", "production", "environmental", "status")
ENERGY_FIELDS = ["time", "machine_id", "power_kw", "energy_kwh", "voltage_v", "current_a", "power_factor",
                 "frequency_hz", "time_local"]
OFFSETS = {"Italia": "+02:00", "Brasile": "-03:00"}  # June: Rome is on summer time


def uniform(low: float, high: float) -> dict[str, Any]:
    return {"distribution": "uniform", "low": low, "high": high}


def energy_plant(**enms: Any) -> Config:
    machines = {"injection_moulding": 2, "hydraulic_pump": 1, "conveyor": 1, "compressor": 1, "hvac": 1}
    return plant(
        stages=[
            {"name": "moulding", "machine_type": "injection_moulding", "processing_time": uniform(900, 1800)},
            {"name": "pressing", "machine_type": "hydraulic_pump", "processing_time": uniform(300, 900)},
            {"name": "conveying", "machine_type": "conveyor", "processing_time": uniform(120, 300),
             "quality": {"scrap_probability": 0.3}},
        ],
        locations={"Italia": {"timezone": "Europe/Rome", "machines": machines, "climate": {}},
                   "Brasile": {"timezone": "America/Sao_Paulo", "machines": machines}},
        machine_types={"compressor": {"duty": "continuous", "sample_interval_s": 300},
                       "hvac": {"duty": "continuous"}, "hydraulic_pump": {"sample_interval_s": 0}},
        disruptions={"block_probability": 0.2, "repair_time": uniform(300, 1200),
                     "failures": {"mtbf_h": 12, "repair_time": uniform(600, 1800)}},
        telemetry={"sample_interval_s": 900},
        arrivals={"rate_per_hour": 2.0},
        formats={"enms": enms},
    )


@pytest.fixture(scope="module")
def run() -> tuple[Config, list[Record], list[tuple[Record, Any, dict[str, Any]]]]:
    config = energy_plant()
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.plant.machines["Italia-compressor-01"].anomaly = "leak"
    sim.start_arrivals(limit=25)
    sim.env.run(until=2 * 86400)
    fmt = EnmsFormat(config, SEED)
    return config, sink.records, [(r, m, orjson.loads(m.value)) for r in sink.records for m in fmt.encode(r)]


def by_kind(run, kind: str):  # type: ignore[no-untyped-def]
    return [(r, m, b) for r, m, b in run[2] if m.topic.endswith(f"/{kind}")]


def test_topics_and_what_each_record_produces(run) -> None:  # type: ignore[no-untyped-def]
    config, records, _ = run
    fmt = EnmsFormat(config, SEED)
    for record in records:
        messages = fmt.encode(record)
        if isinstance(record, LotEvent):
            machine_event = record.event_type in {"stage.started", "stage.completed", "machine.blocked",
                                                  "machine.repaired", "maintenance.started", "maintenance.completed"}
            assert len(messages) == (1 if machine_event and record.machine_id else 0)
            continue
        short = record.machine_id.removeprefix(f"{record.location}-")
        base = f"factory/{record.location.lower()}/{short}/"
        kinds = [m.topic.removeprefix(base) for m in messages]
        if isinstance(record, MachineSample):
            assert kinds == list(KINDS)
        else:  # a sampled machine's energy comes with its samples
            assert kinds == (["production"] if record.machine_type != "hydraulic_pump" else ["energy", "production"])
        assert [m.retain for m in messages] == [k == "status" for k in kinds]
        assert all(m.key == record.machine_id.encode() for m in messages)


def test_energy_has_exactly_the_reference_fields(run) -> None:  # type: ignore[no-untyped-def]
    energy = by_kind(run, "energy")
    assert {r.machine_type for r, _, _ in energy} == {"injection_moulding", "hydraulic_pump", "conveyor", "compressor",
                                                      "hvac"}
    for record, _, body in energy:
        assert list(body) == ENERGY_FIELDS
        for name in ("power_kw", "energy_kwh", "voltage_v", "current_a", "power_factor"):
            assert body[name] == record.signals[name]
        assert body["machine_id"] == machine_uuid(record.machine_id) == str(
            uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:factorysim:machine"), record.machine_id))
        assert body["frequency_hz"] == {"Italia": 50.0, "Brasile": 60.0}[record.location]
        utc = dt.datetime.fromisoformat(body["time"])
        assert body["time"].endswith("Z") and body["time_local"].endswith(OFFSETS[record.location])
        assert dt.datetime.fromisoformat(body["time_local"]) == utc
        span = record.interval_s if isinstance(record, MachineSample) else record.cycle_time_s
        assert body["energy_kwh"] == pytest.approx(body["power_kw"] * span / 3600, abs=1e-3)


def test_production_reports_each_cycle_s_pieces_once_and_the_running_totals(run) -> None:  # type: ignore[no-untyped-def]
    made: dict[str, list[int]] = {}
    for record, _, body in by_kind(run, "production"):
        c = record.counters
        assert c is not None
        assert all(isinstance(body[k], int) for k in (
            "production_count", "production_count_good", "production_count_bad", "cycles", "total_production_count",
            "total_production_count_good", "total_production_count_bad"))
        assert body["production_count"] == body["production_count_good"] + body["production_count_bad"]
        assert (body["cycles"], body["total_production_count_good"], body["total_production_count_bad"]) == (
            c.cycles, c.good_pieces, c.bad_pieces)
        assert body["total_production_count"] == c.good_pieces + c.bad_pieces
        assert (body["availability"], body["performance"], body["quality"], body["oee"]) == (
            round(c.availability, 4), round(c.performance, 4), round(c.quality, 4), round(c.oee, 4))
        assert body["throughput_units_per_hour"] == round(body["total_production_count"] * 3600 / c.planned_s, 2)
        assert isinstance(body["throughput_units_per_hour"], float)
        assert body["operating_mode"] == {"running": "running", "idle": "idle", "blocked": "fault",
                                          "maintenance": "maintenance", "off_shift": "offline"}[record.state]
        assert isinstance(body["speed_percent"], float) and 0.0 <= body["speed_percent"] <= 100.0
        assert (body["speed_percent"] > 0) <= (record.state == "running")
        if isinstance(record, CycleTelemetry):
            good = record.test_outcome in (None, "pass")
            assert (body["production_count"], body["production_count_good"]) == (
                record.quantity, record.quantity if good else 0)
            assert (body["lot_code"], body["quantity"]) == (record.lot_code, record.quantity)
            assert body["cycle_time_s"] == round(record.cycle_time_s, 3)
        else:
            assert body["production_count"] == body["production_count_good"] == body["production_count_bad"] == 0
            assert body["quantity"] is None and body["cycle_time_s"] is None
        made.setdefault(record.machine_id, []).append(body["production_count"])
    # the messages of a machine add up to the pieces its counters hold at its last message: each piece once
    _, records, _ = run
    last = {r.machine_id: r.counters for r in records if isinstance(r, CycleTelemetry | MachineSample)}
    for machine_id, counts in made.items():
        totals = last[machine_id]
        assert totals is not None
        assert sum(counts) == totals.good_pieces + totals.bad_pieces
    assert any(b["production_count_bad"] for _, _, b in by_kind(run, "production"))


def test_environmental_values_are_the_machine_signals(run) -> None:  # type: ignore[no-untyped-def]
    roles = {"compressor": ("discharge_temp_c", "pressure_bar", "vibration_mm_s", ("flow_m3_min", 60.0)),
             "injection_moulding": ("barrel_temp_c", "injection_pressure_bar", None, None),
             "conveyor": ("motor_temp_c", None, "vibration_mm_s", None),
             "hvac": ("supply_temp_c", None, None, None)}
    seen = set()
    for record, _, body in by_kind(run, "environmental"):
        temp, pressure, vibration, flow = roles[record.machine_type]
        seen.add(record.machine_type)
        assert body["machine_temp_c"] == record.signals[temp]
        assert body["pressure_bar"] == (record.signals[pressure] if pressure else None)
        assert body["vibration_mm_s"] == (record.signals[vibration] if vibration else None)
        assert body["flow_rate_m3h"] == (round(record.signals[flow[0]] * flow[1], 3) if flow else None)
        assert body["indoor_humidity_percent"] is None and body["indoor_temp_c"] == 22.0
        hvac = record.machine_type == "hvac"
        assert body["outdoor_temp_c"] == (record.signals["outdoor_temp_c"] if hvac else None)
        assert (body["supply_air_temp_c"], body["return_air_temp_c"], body["cop"]) == (
            (record.signals["supply_temp_c"], record.signals["return_temp_c"], record.signals["cop"]) if hvac
            else (None, None, None))
        assert all(isinstance(v, float) for k, v in body.items() if k not in ("time", "time_local", "machine_id")
                   and v is not None)
    assert seen == set(roles)


def test_status_is_retained_and_follows_machine_events(run) -> None:  # type: ignore[no-untyped-def]
    status = by_kind(run, "status")
    last: dict[str, dict[str, Any]] = {}
    blocked = 0
    for record, message, body in status:
        assert message.retain
        last[record.machine_id or ""] = body
        assert body["machine_name"] == record.machine_id
        assert body["is_running"] is (body["state"] == "running")
        if isinstance(record, MachineSample):
            assert body["source"] == "sample" and body["state"] == record.state
            assert body["alarm"] == (record.alarms or None) and body["anomaly"] == record.anomaly
            assert body["current_power_kw"] == record.signals["power_kw"]
            assert isinstance(body["speed_percent"], float)
            assert body["cycle_phase"] == record.signals.get("cycle_phase")
            assert body["active_stages"] == record.signals.get("stages_active")
            assert body["load_state"] == record.signals.get("load_state")
            continue
        assert body["source"] == record.event_type
        assert body["current_power_kw"] is body["speed_percent"] is body["cycle_phase"] is None
        if record.event_type == "machine.blocked":
            blocked += 1
            assert (body["state"], body["operating_mode"]) == ("blocked", "fault")
            assert body["alarm"] == f"BLOCK: {record.reason}" and body["alarm_active"]
        elif record.event_type == "machine.repaired":
            continuous = record.machine_id.split("-")[1] in ("compressor", "hvac")  # type: ignore[union-attr]
            assert body["state"] == ("running" if record.lot_code or continuous else "idle")
            assert body["alarm"] is None
    assert blocked > 0
    leaky = [b for r, _, b in status if r.machine_id == "Italia-compressor-01" and isinstance(r, MachineSample)]
    assert leaky and all(b["anomaly"] == "leak" for b in leaky)
    phases = {b["cycle_phase"] for r, _, b in status if isinstance(r, MachineSample)
              and r.machine_type == "injection_moulding"}
    assert phases == {"idle", "heating", "injection", "cooling", "ejection"}
    stages = {b["active_stages"] for r, _, b in status if isinstance(r, MachineSample) and r.machine_type == "hvac"}
    assert stages and all(isinstance(n, int) for n in stages)


def test_status_of_blocked_samples_lies_inside_a_block(run) -> None:  # type: ignore[no-untyped-def]
    _, records, _ = run
    down: dict[str, str] = {}  # machine -> reason of the block in force
    checked = 0
    for record in records:
        if isinstance(record, LotEvent) and record.event_type == "machine.blocked":
            down[record.machine_id or ""] = record.reason or ""
        elif isinstance(record, LotEvent) and record.event_type == "machine.repaired":
            down.pop(record.machine_id or "")
        elif isinstance(record, MachineSample) and record.state == "blocked":
            checked += 1
            (status,) = [m for m in EnmsFormat(run[0], SEED).encode(record) if m.topic.endswith("/status")]
            assert orjson.loads(status.value)["alarm"] == f"BLOCK: {down[record.machine_id]}"
    assert checked > 0


def test_site_option_and_unique_machine_levels() -> None:
    config = energy_plant(site="Plant-7", topic_prefix="energy")
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.env.run(until=1000)
    topics = {m.topic for r in sink.records for m in EnmsFormat(config, SEED).encode(r)}
    # one site for two locations: the machine level keeps the location so topics stay unique
    assert "energy/Plant-7/Italia-compressor-01/status" in topics
    assert "energy/Plant-7/Brasile-compressor-01/status" in topics
