"""The profiles under profiles/: they validate, simulate offline and show what they promise
(machine mix, sampling intervals, shifts in plant-local time, seasons, MQTT targets)."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytz

from simulator.config.loader import load
from simulator.config.schema import Config
from simulator.formats.registry import build_format
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample
from simulator.model.simulation import Simulation
from simulator.programs.offline import run_offline

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
NAMES = ("spaceship", "enms", "smart-factory")
# profiles/global.yaml (314 machines) has its own tests, tests/test_global_profile.py: the runs below
# would take minutes at its size
ALL = (*NAMES, "global")


def profile(name: str, **overrides: Any) -> Config:
    return load(PROFILES / f"{name}.yaml", environ={}, overrides=overrides)


def run(config: Config, hours: float, arrivals: bool = True) -> tuple[Simulation, ListSink]:
    sink = ListSink()
    sim = Simulation(config, sink)
    if arrivals:
        sim.start_arrivals()
    sim.env.run(until=hours * 3600)
    return sim, sink


def test_every_profile_is_in_the_list_and_has_its_own_topics() -> None:
    assert sorted(p.stem for p in PROFILES.glob("*.yaml")) == sorted(ALL)
    topics: set[str] = set()
    for name in ALL:
        config = profile(name)
        kafka = config.kafka
        assert kafka.bootstrap_servers == "embedded"
        assert config.http.port == 8080
        assert config.simulation.speed == 1.0
        assert config.arrivals.in_service
        assert len(config.mqtt.enabled_targets) == 1
        mine = {kafka.topics.orders, kafka.topics.events, kafka.topics.dead_letter, kafka.topics.telemetry_prefix}
        assert not any(t.startswith("coffeemek") for t in mine)
        assert not topics & mine
        topics |= mine


@pytest.mark.parametrize("name", NAMES)
def test_profile_simulates_offline_with_telemetry_of_every_machine_type(name: str) -> None:
    config = profile(name)
    sim, sink = run(config, hours=2)
    declared = {t for loc in config.locations.values() for t, n in loc.machines.items() if n > 0}
    sampled = {r.machine_type for r in sink.records if isinstance(r, MachineSample)}
    assert sampled == declared
    intervals = {r.machine_type: r.interval_s for r in sink.records if isinstance(r, MachineSample)}
    assert intervals == {t: config.sample_interval_of(t) for t in declared}
    events = Counter(r.event_type for r in sink.records if isinstance(r, LotEvent))
    assert events["lot.received"] > 0
    assert events["stage.completed"] > 0
    cycles = {r.stage for r in sink.records if isinstance(r, CycleTelemetry)}
    assert cycles >= {config.route[0].name}
    busy = {r.location for r in sink.records if isinstance(r, LotEvent) and r.event_type == "stage.started"}
    assert busy == set(config.locations)  # every location (line) works
    assert sim.stats.received > 0


def test_profiles_run_offline_through_the_wire_format(tmp_path: Path) -> None:
    config = profile("enms")
    out = tmp_path / "telemetry.jsonl"
    result = asyncio.run(run_offline(config, until_s=600.0, telemetry_out=out))
    topics = Counter(orjson.loads(line)["topic"] for line in out.read_bytes().splitlines())
    assert result.messages_written == sum(topics.values())
    assert topics["enms.telemetry.compressor.samples"] >= 599  # every second
    assert 59 <= topics["enms.telemetry.hvac.samples"] <= 60
    assert 19 <= topics["enms.telemetry.moulding.samples"] <= 20  # the stage's name, every 30 s


MQTT_TOPICS = {
    "spaceship": {"factory/cnc", "factory/3dprinter", "factory/welding", "factory/painting", "factory/testing",
                  "factory/orders"},
    "enms": {f"factory/demo/{m}/{k}" for m in ("compressor-1", "hvac-main", "conveyor-a", "hydraulic-pump-1",
                                                "injection-molding-1")
             for k in ("energy", "production", "environmental", "status")},
    "smart-factory": {f"v1/acme/plant-01/{line}/{machine}/{metric}" for line, machines in (
        ("line-01", ("cnc-01", "cnc-02", "robot-arm-01")), ("line-02", ("press-01", "conveyor-01", "robot-arm-02")),
        ("line-03", ("welder-01", "welder-02", "inspection-01")))
        for machine in machines for metric in ("temp", "vibration_rms", "energy_kw", "good_count", "bad_count",
                                               "state")},
}


@pytest.mark.parametrize("name", NAMES)
def test_profile_publishes_its_mqtt_topics(name: str) -> None:
    config = profile(name)
    (target,) = config.mqtt.enabled_targets
    fmt = build_format(target.format, config, config.simulation.seed, topic_template=target.topic_template)
    _, sink = run(config, hours=0.25)
    topics = {message.topic for record in sink.records for message in fmt.encode(record)}
    assert topics >= MQTT_TOPICS[name]


def test_spaceship_machine_counts_route_and_targets() -> None:
    config = profile("spaceship")
    (location,) = config.locations.values()
    assert location.machines == {"cnc": 5, "3d_printer": 8, "welding": 4, "painting": 3, "test_rig": 2}
    assert [s.machine_type for s in config.route] == ["cnc", "3d_printer", "welding", "painting", "test_rig"]
    testing = config.route[-1]
    assert testing.quality is not None
    assert testing.quality.rework_probability > 0
    assert config.telemetry.sample_interval_s <= 5
    local, aio = config.mqtt.targets
    assert (local.name, local.host, local.port, local.format, local.qos) == ("local", "localhost", 1883,
                                                                            "spaceship", 1)
    assert config.formats.spaceship.topic_prefix == "factory"
    # Azure IoT Operations: in the file, off until AIO_ENABLED=true (tests/test_deploy_manifests.py)
    assert (aio.name, aio.enabled, aio.port, aio.protocol, aio.format) == ("aio", False, 18883, "5", "spaceship")
    assert (aio.tls.enabled, aio.auth.method) == (True, "k8s-sat")
    assert config.mqtt.enabled_targets == (local,)


def test_spaceship_orders_are_dispatched_within_a_day() -> None:
    _, sink = run(profile("spaceship", **{"telemetry.sample_interval_s": 0}), hours=24)
    events = Counter(r.event_type for r in sink.records if isinstance(r, LotEvent))
    assert events["lot.received"] == pytest.approx(5 * 24, abs=1)  # a steady 5 orders an hour
    assert events["lot.completed"] >= 0.8 * events["lot.received"]


def test_smart_factory_has_three_lines_of_three_machines_and_a_command_topic() -> None:
    config = profile("smart-factory")
    machines = Simulation(config, ListSink()).plant.machines
    assert sorted(machines) == sorted(f"plant-01-{m}" for m in (
        "cnc-01", "cnc-02", "robot-arm-01", "robot-arm-02", "press-01", "conveyor-01", "welder-01", "welder-02",
        "inspection-01"))
    assert {m.model.kind for m in machines.values()} == {"cnc", "robot_arm", "press", "conveyor", "welding",
                                                         "inspection"}
    assert {s.machine_type for s in config.route} == set(config.locations["plant-01"].machines)  # all work lots
    (target,) = config.mqtt.enabled_targets
    assert (target.format, target.records, target.command_topic) == ("uns", ("sample",), "v1/acme/plant-01/cmd")
    uns = config.formats.uns
    assert (uns.tenant, uns.plant, uns.state_as) == ("acme", "plant-01", "code")
    assert {line: len(names) for line, names in uns.lines.items()} == {"line-01": 3, "line-02": 3, "line-03": 3}
    assert config.telemetry.sample_interval_s == 2


def test_smart_factory_sends_six_metrics_of_every_machine_every_2_s() -> None:
    config = profile("smart-factory")
    (target,) = config.mqtt.targets
    fmt = build_format(target.format, config, config.simulation.seed)
    _, sink = run(config, hours=0.5)
    per_instant: dict[tuple[str, float], list[str]] = defaultdict(list)
    for record in sink.records:
        if record.kind in target.records:
            for message in fmt.encode(record):
                body = orjson.loads(message.value)
                per_instant[(message.topic.rsplit("/", 1)[0], record.sim_time)].append(body["metric"])
    assert {topic for topic, _ in per_instant} == {t.rsplit("/", 1)[0] for t in MQTT_TOPICS["smart-factory"]}
    assert all(sorted(m) == sorted(("temp", "vibration_rms", "energy_kw", "good_count", "bad_count", "state"))
               for m in per_instant.values())
    for machine in {topic for topic, _ in per_instant}:
        instants = sorted(t for topic, t in per_instant if topic == machine)
        assert {round(b - a, 6) for a, b in itertools.pairwise(instants)} == {2.0}
        assert len(instants) >= 899


# -- enms: shifts in plant-local time, continuous-duty utilities, seasons --------------------------
def enms_window(start_utc: str, minutes: float, **overrides: Any) -> dict[str, list[MachineSample]]:
    """Samples of each machine type in ``minutes`` from ``start_utc`` (no orders: utilities only)."""
    config = profile("enms", **{"simulation.start": start_utc, **overrides})
    _, sink = run(config, hours=minutes / 60, arrivals=False)
    out: dict[str, list[MachineSample]] = defaultdict(list)
    for r in sink.records:
        if isinstance(r, MachineSample):
            out[r.machine_type].append(r)
    return out


def mean_power(window: list[MachineSample]) -> float:
    return statistics.fmean(float(s.signals["power_kw"]) for s in window)  # type: ignore[arg-type]


def test_enms_intervals_utilities_and_shift_pattern() -> None:
    config = profile("enms")
    assert {t: config.sample_interval_of(t) for t in config.locations["demo"].machines} == {
        "compressor": 1, "hvac": 10, "conveyor": 10, "hydraulic_pump": 30, "injection_moulding": 30}
    assert {t for t, s in config.machine_types.items() if s.duty == "continuous"} == {"compressor", "hvac"}
    climate = config.locations["demo"].climate
    assert climate is not None
    assert (climate.summer_offset_c, climate.winter_offset_c) == (15.0, -10.0)
    # Berlin in October is UTC+2: 10:00 local Tuesday, 02:00 local Wednesday, 10:00 local Saturday
    day = enms_window("2025-10-07T08:00:00Z", 10)
    night = enms_window("2025-10-08T00:00:00Z", 10)
    saturday = enms_window("2025-10-11T08:00:00Z", 10)
    powers = []
    for window, factor in ((day, 1.0), (night, 0.5), (saturday, 0.3)):
        compressor = window["compressor"]
        assert len(compressor) >= 599
        assert {s.state for s in compressor} == {"running"}
        assert {s.state for s in window["hvac"]} == {"running"}
        pressure = statistics.fmean(float(s.signals["pressure_bar"]) for s in compressor)  # type: ignore[arg-type]
        assert pressure == pytest.approx(6.5 + 1.3 * factor, abs=0.05)  # the compressor model at this load
        powers.append(mean_power(compressor))
    assert powers[0] > powers[1] > powers[2]
    assert powers[0] == pytest.approx(75.0, rel=0.02)  # rated power at full load


def test_enms_shift_change_follows_local_time_across_dst() -> None:
    # Berlin springs forward on Sunday 30 March 2025.  The Sunday night shift (0.5 x weekend 0.3)
    # ends at 06:00 local: 05:00Z on Monday 24 March (CET), 04:00Z on Monday 31 March (CEST).
    step: dict[str, float] = {}
    for start in ("2025-03-24T03:50:00Z", "2025-03-24T04:50:00Z", "2025-03-31T03:50:00Z", "2025-03-31T04:50:00Z"):
        window = enms_window(start, 20, **{"machine_types.compressor.sample_interval_s": 60})
        compressor = window["compressor"]
        before = [s for s in compressor if s.sim_time < 600]
        after = [s for s in compressor if s.sim_time > 600]
        step[start] = mean_power(after) - mean_power(before)
    assert abs(step["2025-03-24T03:50:00Z"]) < 3.0  # 04:50 -> 05:10 CET: still the night shift
    assert step["2025-03-24T04:50:00Z"] > 15.0  # 05:50 -> 06:10 CET: night (0.15) -> early shift (1.0)
    assert step["2025-03-31T03:50:00Z"] > 15.0  # 05:50 -> 06:10 CEST
    assert abs(step["2025-03-31T04:50:00Z"]) < 3.0  # 06:50 -> 07:10 CEST: early shift throughout


def test_enms_seasons_drive_the_hvac() -> None:
    # 15:00 local on a July Wednesday against 15:00 local on a January Wednesday
    summer = enms_window("2025-07-16T12:55:00Z", 10)["hvac"]
    winter = enms_window("2025-01-15T13:55:00Z", 10)["hvac"]
    mild_spring_night = enms_window("2025-05-14T00:00:00Z", 10)["hvac"]  # 02:00 local, night shift
    outdoor = {name: statistics.fmean(float(s.signals["outdoor_temp_c"]) for s in w)  # type: ignore[arg-type]
               for name, w in (("summer", summer), ("winter", winter), ("spring", mild_spring_night))}
    assert outdoor["summer"] == pytest.approx(30.0, abs=0.2)  # 10 + 15 + 5
    assert outdoor["winter"] == pytest.approx(5.0, abs=0.2)  # 10 - 10 + 5
    assert outdoor["summer"] > outdoor["spring"] > outdoor["winter"]
    assert mean_power(summer) > 2 * mean_power(mild_spring_night)
    assert mean_power(winter) > mean_power(mild_spring_night)  # heating in winter
    assert statistics.fmean(float(s.signals["cop"]) for s in summer) < \
        statistics.fmean(float(s.signals["cop"]) for s in mild_spring_night)  # type: ignore[arg-type]


def test_enms_profile_starts_on_a_monday_at_the_first_shift() -> None:
    start = profile("enms").simulation.start.astimezone(pytz.timezone("Europe/Berlin"))
    assert (start.weekday(), start.hour) == (0, 6)


def test_every_profile_has_kafka_topics_and_a_group_of_its_own() -> None:
    # two configs on one cluster (or one embedded broker's data) must not share a run: the journal
    # of one would be continued, or refused, by the other
    configs = {"config.yaml": load(PROFILES.parent / "config.yaml", environ={})} | {n: profile(n) for n in ALL}
    seen: dict[str, str] = {}
    for name, config in configs.items():
        topics = config.kafka.topics
        for topic in (topics.orders, topics.events, topics.dead_letter, topics.journal, topics.snapshots,
                      topics.telemetry_prefix, config.kafka.consumer.group_id):
            assert topic not in seen, f"{name} and {seen.get(topic)} share {topic}"
            seen[topic] = name


@pytest.mark.parametrize("name", NAMES)
def test_a_profile_with_a_warm_up_goes_live_with_a_busy_plant(name: str) -> None:
    # what `factorysim run` does before going live (tests/test_warm_start.py runs the service)
    config = profile(name)
    assert config.warm_up_s > 0
    sim = Simulation(config, ListSink())
    sim.start_arrivals(until=config.warm_up_s)
    sim.env.run(until=config.warm_up_s)
    idle = sum(m.state in ("idle", "off_shift") for m in sim.plant.machines.values())
    assert idle <= len(sim.plant.machines) / 2, Counter(m.state for m in sim.plant.machines.values())
