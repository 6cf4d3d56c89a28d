"""The uns MQTT format: one metric per message under v1/{tenant}/{plant}/{line}/{machine}/{metric}."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import orjson
import pytest

from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.formats.uns import UnsFormat
from simulator.model.control import plant_anomaly
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample, Record
from simulator.model.simulation import Simulation

from plants import plant

SEED = 21
PAYLOAD = ["ts", "id", "tenant", "plant", "line", "machine", "metric", "value", "unit", "q"]
UNITS = {"temp": "°C", "vibration_rms": "mm/s", "energy_kw": "kW", "good_count": "units", "bad_count": "units",
         "state": ""}
TEMPERATURE = {"milling": "spindle_temp_c", "lathe": "spindle_temp_c", "assembly": None}


def uniform(low: float, high: float) -> dict[str, Any]:
    return {"distribution": "uniform", "low": low, "high": high}


def uns_plant(sample_interval_s: float = 900, welder_on_b: bool = False, **uns: Any) -> Config:
    machines = {"milling": 2, "lathe": 1, "assembly": 1}
    return plant(
        stages=[{"name": "mill", "machine_type": "milling", "processing_time": uniform(600, 1800)},
                {"name": "turn", "machine_type": "lathe", "processing_time": uniform(600, 1200)},
                {"name": "assemble", "machine_type": "assembly", "processing_time": uniform(600, 1800)}],
        locations={"Line-A": {"timezone": "Europe/Rome", "machines": machines},
                   "Line-B": {"timezone": "Asia/Ho_Chi_Minh",
                              "machines": {**machines, "welder": 1} if welder_on_b else machines}},
        disruptions={"block_probability": 0.2, "repair_time": uniform(300, 900),
                     "maintenance": {"every_cycles": 10, "duration": {"distribution": "constant", "value": 1200}}},
        telemetry={"sample_interval_s": sample_interval_s},
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


# -- state as the integer code ------------------------------------------------------------------------------
CODES = {"running": 0, "idle": 1, "maintenance": 1, "off_shift": 1, "blocked": 2}


def test_state_as_code_gives_integers_in_the_enum_unit_for_records_and_events(run) -> None:  # type: ignore[no-untyped-def]
    records, text_messages = run
    config = uns_plant(state_as="code")
    fmt = UnsFormat(config, SEED)
    coded = [(r, m) for r in records for m in fmt.encode(r)]
    assert [m.topic for _, m in coded] == [m.topic for _, m in text_messages]
    seen = set()
    for (record, message), (_, text_message) in zip(coded, text_messages, strict=True):
        body, text_body = orjson.loads(message.value), orjson.loads(text_message.value)
        if body["metric"] != "state":
            assert body == text_body  # only the state changes
            continue
        assert type(body["value"]) is int and body["unit"] == "enum", body
        assert body["value"] == CODES[text_body["value"]], (record, text_body)
        assert {k: v for k, v in body.items() if k not in ("value", "unit")} == \
            {k: v for k, v in text_body.items() if k not in ("value", "unit")}
        seen.add(text_body["value"])
    assert {"running", "idle", "blocked", "maintenance"} <= seen


def faulted_run(state_as: str) -> tuple[Simulation, list[tuple[Record, dict[str, Any]]], float, float]:
    """The uns plant with a plant-wide bearing fault from 4 h to 6 h, samples every minute."""
    config = uns_plant(sample_interval_s=60, state_as=state_as)
    sink = ListSink()
    sim = Simulation(config, sink, seed=SEED)
    sim.start_arrivals(limit=20)
    on, off = 4 * 3600.0, 6 * 3600.0
    sim.env.run(until=on)
    plant_anomaly(sim, "bearing_fault", True)
    sim.env.run(until=off)
    plant_anomaly(sim, "bearing_fault", False)
    sim.env.run(until=8 * 3600)
    fmt = UnsFormat(config, SEED)
    return sim, [(r, orjson.loads(m.value)) for r in sink.records for m in fmt.encode(r)], on, off


@pytest.mark.parametrize(("state_as", "fault"), [("text", "faulted"), ("code", 2)])
def test_a_machine_with_a_bearing_fault_reports_the_fault_state_whatever_it_does(state_as: str,
                                                                                 fault: str | int) -> None:
    _, messages, on, off = faulted_run(state_as)
    samples = [(r, b) for r, b in messages if isinstance(r, MachineSample) and b["metric"] == "state"]
    during = [(r, b) for r, b in samples if on <= r.sim_time < off]
    assert {b["value"] for _, b in during} == {fault}
    assert {r.state for r, _ in during} >= {"idle", "running"}  # idle machines too
    outside = {b["value"] for r, b in samples if not on <= r.sim_time < off}
    assert fault not in outside or state_as == "code"  # (code 2 is also a blocked machine's)
    assert "faulted" not in outside


def test_bad_count_rises_during_a_bearing_fault_and_stops_after_it() -> None:
    sim, messages, on, off = faulted_run("code")
    last: dict[tuple[str, str], dict[float, int]] = {}
    for record, body in messages:
        if isinstance(record, MachineSample) and body["metric"] == "bad_count":
            last.setdefault((body["line"], body["machine"]), {})[record.sim_time] = body["value"]

    def at(series: dict[float, int], instant: float) -> int:
        return series[max(t for t in series if t <= instant)]

    rose = [m for m, series in last.items() if at(series, off) > at(series, on)]
    assert len(rose) >= 3, last.keys()  # the machines that finished work during the fault
    for series in last.values():
        assert at(series, on) == 0  # no test here: nothing was bad before
        assert at(series, 8 * 3600) == at(series, off + 60)  # nothing bad once the fault is cleared
    machines = sim.plant.machines.values()
    assert sum(m.bad_pieces for m in machines) == sum(at(series, 8 * 3600) for series in last.values())


# -- lines --------------------------------------------------------------------------------------------------
def test_lines_put_machines_on_their_line_by_id_or_by_a_name_only_one_machine_has() -> None:
    config = uns_plant(welder_on_b=True, lines={"cell-1": ["welder-01", "Line-A-milling-02"],
                                                "cell-2": ["Line-B-lathe-01"]})
    placed = {"Line-B-welder-01": "cell-1", "Line-A-milling-02": "cell-1", "Line-B-lathe-01": "cell-2"}
    _, messages = encode_run(config, SEED)
    seen: dict[str, set[str]] = {}
    for record, message in messages:
        machine_id = record.machine_id or ""
        body = orjson.loads(message.value)
        line = placed.get(machine_id, record.location)
        assert body["line"] == line
        assert message.topic == f"v1/acme/plant-01/{line}/{body['machine']}/{body['metric']}"
        seen.setdefault(machine_id, set()).add(line)
    assert {m: seen[m] for m in placed} == {m: {line} for m, line in placed.items()}
    assert set().union(*seen.values()) == {"cell-1", "cell-2", "Line-A", "Line-B"}


@pytest.mark.parametrize(("lines", "message"), [
    ({"x": ["milling-01"]}, r"line 'x': 'milling-01' names 2 machines \(Line-A-milling-01, Line-B-milling-01\); "
                            r"give the machine id"),
    ({"x": ["drill-01"]}, r"line 'x': no machine 'drill-01'; known: assembly-01, lathe-01, milling-01, milling-02"),
    ({"x": ["Line-A-lathe-01"], "y": ["Line-A-lathe-01"]},
     r"machine 'Line-A-lathe-01' is on two lines \('x' and 'y'\)"),
])
def test_lines_that_do_not_fit_the_plant_are_one_config_error(lines: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration: formats\.uns\.lines: " + message) as error:
        uns_plant(lines=lines)
    assert len(error.value.problems) == 1
    with pytest.raises(ConfigError, match=r"formats\.uns\.state_as: .*'text' or 'code'"):
        uns_plant(state_as="number")


def test_temp_is_the_temperature_a_bearing_fault_heats() -> None:
    config = uns_plant(welder_on_b=True)
    _, messages = encode_run(config, SEED)
    welder = [(r, orjson.loads(m.value)) for r, m in messages
              if isinstance(r, MachineSample) and r.machine_type == "welder"]
    temps = [(r, b) for r, b in welder if b["metric"] == "temp"]
    assert temps and all(b["value"] == r.signals["wire_drive_temp_c"] for r, b in temps)  # not the seam's
    assert {b["metric"] for _, b in welder} == {"temp", "vibration_rms", "energy_kw", "good_count", "bad_count",
                                                 "state"}
