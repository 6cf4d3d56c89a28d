"""The EnMS profile end to end: ``profiles/enms.yaml`` as a service on Kafka with its MQTT target on a
real Mosquitto.  Every topic, every field's name and type, and the values against the EnMS factory
simulator's own figures (kept below as data: machine types, sampling intervals, power and pressure
ranges, the payload fields); random anomalies at about the configured rate, the same ones the model
makes for the seed, and the same on Kafka as on MQTT."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from test_mqtt_service import PROFILES, Watch, profile_config

from simulator.config.schema import Config
from simulator.formats.enms import EnmsFormat
from simulator.model.records import ListSink, MachineSample
from simulator.model.simulation import Simulation

from harness.collector import MqttCollector
from harness.mosquitto import Mosquitto
from harness.service import Reader, running_service, wait_for

# -- what the EnMS factory simulator publishes -------------------------------------------------------------
# Field types: a Python type, a tuple of types (None: null allowed), or a set of allowed values.
UTC, LOCAL, UUID = "utc", "local", "uuid"
FLOAT, INT, BOOL, STR = float, int, bool, str
OPT_FLOAT, OPT_INT, OPT_STR = (float, None), (int, None), (str, None)
SHARE = "share"  # a float 0..1
PERCENT = "percent"  # a float 0..100
MODES = {"running", "idle", "fault", "maintenance", "offline"}
STATES = {"idle", "running", "blocked", "maintenance", "off_shift"}
HEAD = {"time": UTC, "time_local": LOCAL, "machine_id": UUID}
FIELDS: dict[str, dict[str, Any]] = {
    # the seed's energy reading, in its order, then the local time
    "energy": {"time": UTC, "machine_id": UUID, "power_kw": FLOAT, "energy_kwh": FLOAT, "voltage_v": FLOAT,
               "current_a": FLOAT, "power_factor": FLOAT, "frequency_hz": FLOAT, "time_local": LOCAL},
    "production": {**HEAD, "production_count": INT, "production_count_good": INT, "production_count_bad": INT,
                   "throughput_units_per_hour": FLOAT, "operating_mode": MODES, "speed_percent": PERCENT,
                   "lot_code": OPT_STR, "quantity": OPT_INT, "cycle_time_s": OPT_FLOAT, "cycles": INT,
                   "total_production_count": INT, "total_production_count_good": INT,
                   "total_production_count_bad": INT, "availability": SHARE, "performance": SHARE,
                   "quality": SHARE, "oee": SHARE},
    "environmental": {**HEAD, "machine_temp_c": OPT_FLOAT, "indoor_temp_c": FLOAT, "outdoor_temp_c": OPT_FLOAT,
                      "indoor_humidity_percent": OPT_FLOAT, "pressure_bar": OPT_FLOAT, "flow_rate_m3h": OPT_FLOAT,
                      "vibration_mm_s": OPT_FLOAT, "supply_air_temp_c": OPT_FLOAT, "return_air_temp_c": OPT_FLOAT,
                      "cop": OPT_FLOAT},
    "status": {**HEAD, "machine_name": STR, "machine_type": STR, "state": STATES, "is_running": BOOL,
               "operating_mode": MODES, "current_power_kw": OPT_FLOAT, "speed_percent": (float, None),
               "cycle_phase": OPT_STR, "active_stages": OPT_INT, "load_state": OPT_STR, "lot_code": OPT_STR,
               "alarm": OPT_STR, "alarm_active": BOOL, "anomaly": OPT_STR, "source": STR},
}
OPERATING_MODES = {"running": "running", "idle": "idle", "blocked": "fault", "maintenance": "maintenance",
                   "off_shift": "offline"}
# Per machine type: the sampling interval (s), power (kW) and pressure (bar) the EnMS simulator states,
# and what its process state takes.
MACHINES: dict[str, dict[str, Any]] = {
    "compressor": {"interval_s": 1, "power_kw": (15, 75), "pressure_bar": (6, 8),
                   "load_state": {"loaded", "unloaded", "off"}},
    "hvac": {"interval_s": 10, "power_kw": (20, 150), "active_stages": {0, 1, 2, 3, 4}},
    "conveyor": {"interval_s": 10, "power_kw": (5, 30)},
    "hydraulic_pump": {"interval_s": 30, "power_kw": (10, 50), "pressure_bar": (150, 200),
                       "cycle_phase": {"build", "hold", "release", "idle"}},
    "injection_moulding": {"interval_s": 30, "power_kw": (25, 200),
                           "cycle_phase": {"heating", "injection", "cooling", "ejection", "idle"}},
}
NOISE = 0.15  # power carries ±3 % noise (one sigma): a value 5 sigma off the seed's range is a fault
SITE_OFFSET = dt.timedelta(hours=2)  # Berlin in October (summer time)


def uuid_of(machine_id: str) -> str:
    return str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:factorysim:machine"), machine_id))


def has_type(value: Any, expected: Any) -> bool:
    if isinstance(expected, set):
        return value in expected
    if isinstance(expected, tuple):
        return any(value is None if t is None else has_type(value, t) for t in expected)
    if expected is FLOAT:
        return isinstance(value, float)
    if expected is INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (UTC, LOCAL):
        return isinstance(value, str) and (value.endswith("Z") if expected == UTC else value[-6] in "+-")
    if expected == UUID:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    if expected == SHARE:
        return isinstance(value, float | int) and not isinstance(value, bool) and 0 <= value <= 1
    if expected == PERCENT:
        return isinstance(value, float) and 0 <= value <= 100
    return isinstance(value, expected)


def check_enms_message(topic: str, body: dict[str, Any], uuids: dict[str, str]) -> None:
    """One message of the enms profile: its fields, their types and what ties them to the topic."""
    _, _, level, kind = topic.split("/")
    fields = FIELDS[kind]
    assert list(body) == list(fields) if kind == "energy" else set(body) == set(fields), (topic, sorted(body))
    wrong = {k: body[k] for k, t in fields.items() if not has_type(body[k], t)}
    assert not wrong, (topic, wrong)
    assert body["machine_id"] == uuids[level], topic
    local = dt.datetime.fromisoformat(body["time_local"])
    assert local == dt.datetime.fromisoformat(body["time"]) and local.utcoffset() == SITE_OFFSET
    if kind == "energy":
        assert body["frequency_hz"] == 50.0
    elif kind == "production":
        assert body["production_count"] == body["production_count_good"] + body["production_count_bad"]
        assert body["total_production_count"] == body["total_production_count_good"] + body[
            "total_production_count_bad"]
    elif kind == "environmental":
        assert body["indoor_temp_c"] == 21.0
    else:
        assert body["is_running"] == (body["state"] == "running")
        assert body["operating_mode"] == OPERATING_MODES[body["state"]]
        assert body["alarm_active"] == (body["alarm"] is not None)
        assert (body["state"] == "blocked") == (body["alarm"] is not None and body["alarm"].startswith("BLOCK: "))


# -- the run ---------------------------------------------------------------------------------------------------
RUN_S = 3600.0  # simulated: an hour, the compressor sampled 3,600 times
SPEED = 180.0
ANOMALIES = {"probability_per_hour": 0.9, "duration": {"distribution": "uniform", "low": 60, "high": 300},
             "severity": {"distribution": "uniform", "low": 1.0, "high": 2.0}}


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory(extra_config=["max_queued_messages 0"])


def onsets_in(statuses: list[tuple[str, str | None]]) -> int:
    """How many anomalies start in a machine's samples (time, anomaly), in time order."""
    count, last = 0, None
    for _, anomaly in statuses:
        if anomaly is not None and anomaly != last:
            count += 1
        last = anomaly
    return count


@pytest.mark.timeout(300)
async def test_enms_profile_end_to_end_topics_fields_values_and_random_anomalies(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    # the profile as it is, but faster, and with anomalies often enough to count in an hour
    config = profile_config("enms", kafka_bootstrap, unique, broker,
                            **{"simulation.speed": SPEED, "disruptions.anomalies": ANOMALIES})
    start = config.simulation.start
    pump_samples = f"{config.kafka.topics.telemetry_prefix}.pressing.samples"
    async with MqttCollector(broker.host, broker.port, "factory/#") as collector:
        watch = Watch(collector)
        async with running_service(config) as service:
            machines = sorted(service.sim.plant.machines)
            await wait_for(lambda: service.sim.now >= RUN_S, RUN_S / SPEED * 4, f"{RUN_S:.0f} simulated seconds")
            service.driver.pause()  # then let the target deliver what it holds before the stop
            target = service.mqtt[0]
            await wait_for(lambda: len(target) == 0 and target.session.in_flight == 0, 60, "the target drained")
        published = service.mqtt[0].messages_published
        assert service.mqtt[0].messages_acknowledged == published
        await watch.until(lambda w: sum(len(m) for m in w.messages.values()) >= published, 30,
                          f"all {published} messages at the collector")
    bodies = watch.all_bodies()

    # topics: factory/demo/<machine>/<kind>, four per machine, one machine per type
    levels: dict[str, set[str]] = defaultdict(set)
    for topic in watch.topics:
        prefix, site, level, kind = topic.split("/")
        assert (prefix, site) == ("factory", "demo"), topic
        levels[level].add(kind)
    assert len(levels) == len(machines) == len(MACHINES)
    assert all(kinds == set(FIELDS) for kinds in levels.values()), levels
    names = {level: {b["machine_name"] for b in watch.bodies[f"factory/demo/{level}/status"]} for level in levels}
    assert all(len(n) == 1 for n in names.values()), names
    machine_of = {level: n.pop() for level, n in names.items()}
    assert sorted(machine_of.values()) == machines
    types = {level: {b["machine_type"] for b in watch.bodies[f"factory/demo/{level}/status"]}.pop()
             for level in levels}
    assert sorted(types.values()) == sorted(MACHINES)

    # every field, its type and what ties it to its topic
    uuids = {level: uuid_of(machine_of[level]) for level in levels}
    for topic, body in bodies:
        check_enms_message(topic, body, uuids)

    # samples: the seed's intervals and ranges, and one instant's four messages agree with each other
    sample_of: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for topic, body in bodies:
        _, _, level, kind = topic.split("/")
        from_sample = body["source"] == "sample" if kind == "status" else kind != "production" or (
            body["quantity"] is None)  # (a cycle's production message has its lot's quantity)
        if from_sample:
            sample_of[(level, body["time"])][kind] = body
    seen_phases: dict[str, set[Any]] = defaultdict(set)
    checked_ranges = 0
    for level, mtype in types.items():
        seed = MACHINES[mtype]
        times = sorted(t for (lv, t), kinds in sample_of.items() if lv == level and "status" in kinds)
        instants = [dt.datetime.fromisoformat(t) for t in times]
        gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(instants)}
        assert gaps == {seed["interval_s"]}, (mtype, gaps)
        assert len(times) >= RUN_S / seed["interval_s"] - 1
        for t in times:
            kinds = sample_of[(level, t)]
            assert set(kinds) == set(FIELDS), (level, t, set(kinds))
            energy, status, env = kinds["energy"], kinds["status"], kinds["environmental"]
            assert status["current_power_kw"] == energy["power_kw"]
            assert energy["energy_kwh"] == pytest.approx(energy["power_kw"] * seed["interval_s"] / 3600, abs=1e-4)
            assert kinds["production"]["production_count"] == 0  # pieces come with the cycle messages
            assert kinds["production"]["speed_percent"] == status["speed_percent"]
            for process in ("cycle_phase", "active_stages", "load_state"):
                if process in seed:
                    seen_phases[mtype].add(status[process])
                    assert status[process] in seed[process], (mtype, status[process])
                else:
                    assert status[process] is None
            if status["anomaly"] is not None or status["state"] not in ("running", "idle", "blocked"):
                continue  # the seed's figures describe a machine in service without a fault
            low, high = seed["power_kw"]
            assert low * (1 - NOISE) <= energy["power_kw"] <= high * (1 + NOISE), (mtype, status["state"], energy)
            checked_ranges += 1
            if "pressure_bar" in seed and status["state"] == "running" and status.get("cycle_phase") != "release":
                low, high = seed["pressure_bar"]
                assert low <= env["pressure_bar"] <= high, (mtype, env)
    assert checked_ranges > RUN_S / 2
    assert seen_phases["injection_moulding"] >= {"heating", "injection", "cooling", "ejection"}
    assert seen_phases["hvac"] - {0}  # the HVAC works in stages
    assert seen_phases["compressor"] >= {"loaded"}

    # production: the pieces of the messages add up to the machines' totals
    made: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    for topic, body in bodies:
        _, _, level, kind = topic.split("/")
        if kind == "production":
            made[level] += body["production_count"]
            totals[level] = max(totals[level], body["total_production_count"])
    assert made == totals
    assert sum(made.values()) > 0

    # random anomalies: the ones the model makes for this seed, at about the configured rate
    per_machine: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for (level, t), kinds in sample_of.items():
        assert set(kinds) == set(FIELDS), (level, t, set(kinds))
        per_machine[machine_of[level]].append((t, kinds["status"]["anomaly"]))
    end = min(max(t for t, _ in samples) for samples in per_machine.values())
    seen = {mid: sorted(s for s in samples if s[0] <= end) for mid, samples in per_machine.items()}
    end_s = (dt.datetime.fromisoformat(end) - start).total_seconds()
    expected = model_anomalies(config, end_s)
    assert seen == {mid: [s for s in samples if s[0] <= end] for mid, samples in expected.items()}
    onsets = sum(onsets_in(samples) for samples in seen.values())
    rate_h = -math.log(1 - ANOMALIES["probability_per_hour"])
    mean = len(machines) * (end_s / 3600) / (1 / rate_h + 180 / 3600)
    assert abs(onsets - mean) <= 4 * math.sqrt(mean) + 1, (onsets, mean)
    assert onsets >= 3

    # the same anomalies on Kafka: the pump's samples there and on MQTT
    pump = next(mid for mid in machines if mid.startswith("hydraulic-pump"))  # the profile's ids
    on_mqtt = [a for _, a in seen[pump]]
    async with Reader(kafka_bootstrap, [pump_samples]) as reader:
        collected = await reader.read_until(lambda c: len(c.of(pump_samples)) >= len(per_machine[pump]), 30,
                                            "the pump's samples on Kafka")
    on_kafka = sorted((m["timestamp_utc"], m.get("anomalia")) for m in collected.json(pump_samples))
    assert [a for t, a in on_kafka if t <= end] == on_mqtt


def model_anomalies(config: Config, until_s: float) -> dict[str, list[tuple[str, str | None]]]:
    """Each machine's samples (time as the enms messages show it, anomaly) up to ``until_s``, as the
    model alone makes them for the config's seed (no service, no broker; lots play no part in anomalies)."""
    sink = ListSink()
    sim = Simulation(config, sink)
    sim.env.run(until=until_s + 1.0)
    fmt = EnmsFormat(config, sim.seed)
    samples: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for record in sink.records:
        if isinstance(record, MachineSample):
            (status,) = [orjson.loads(m.value) for m in fmt.encode(record) if m.topic.endswith("/status")]
            samples[record.machine_id].append((status["time"], status["anomaly"]))
    return {mid: sorted(s) for mid, s in samples.items()}


def test_the_profile_s_own_anomaly_rate_over_two_years_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """profiles/enms.yaml's 10 % a day, as it is: about one anomaly per machine every ten days."""
    from simulator.config.loader import load
    from simulator.model import disruptions

    config = load(PROFILES / "enms.yaml", environ={}, overrides={  # no samples: only the clocks that matter
        f"machine_types.{mtype}.sample_interval_s": 0 for mtype in MACHINES})
    started: list[tuple[str, str, float | None]] = []
    real = disruptions.set_anomaly

    def counted(sim: Simulation, machine_id: str, kind: str, severity: float = 1.0,
                duration_s: float | None = None) -> dict[str, Any]:
        started.append((machine_id, kind, duration_s))
        return real(sim, machine_id, kind, severity, duration_s)

    monkeypatch.setattr(disruptions, "set_anomaly", counted)
    sim = Simulation(config, ListSink())
    days = 730
    sim.env.run(until=days * 86400.0)
    rate_day = -math.log(1 - 0.1)
    mean = len(sim.plant.machines) * days / (1 / rate_day + 1950 / 86400)
    assert abs(len(started) - mean) < 4 * math.sqrt(mean), (len(started), mean)
    assert {mid for mid, _, _ in started} == set(sim.plant.machines)
    assert all(300 <= d <= 3600 for _, _, d in started if d is not None)
