"""profiles/global.yaml: the CoffeeMek plant grown to twelve plants around the world.  It loads and
validates; every plant has its own time zone, pools and (where it has one) shift calendar; its queues
are stable by the numbers (the offered load of every pool below 1, as the file's header says) and in
a run (two simulated days offline: every plant completes lots, its pools are as busy as the numbers
say, their queues empty again and no plant's backlog grows); and `factorysim run` publishes the
telemetry of every machine of the twelve plants on its embedded broker and on MQTT."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytz

from simulator.config.loader import CONFIG_PATH_VARIABLES, ENV_OVERRIDES, GENERIC_PREFIX, load
from simulator.config.plant import Stage
from simulator.config.schema import Config
from simulator.model.records import NullSink
from simulator.model.shifts import CalendarClock, machines_allowed
from simulator.model.simulation import Simulation
from simulator.net import free_port
from simulator.programs.offline import run_offline
from simulator.reporting.summary import build_report

from harness.cli_process import PROFILE_VARIABLES, ROOT, factorysim
from harness.collector import MqttCollector, ReceivedMessage
from harness.mosquitto import Mosquitto
from harness.service import Reader

PROFILE = ROOT / "profiles" / "global.yaml"
HOUR_S, DAY_S = 3600.0, 86400.0
WEEK_S = 7 * DAY_S


def profile(**overrides: Any) -> Config:
    return load(PROFILE, environ={}, overrides=overrides)


# -- the numbers: offered load from the rates and mean times ------------------------------------------------------
def lots_per_hour(config: Config) -> dict[str, float]:
    """Generated lots per hour of each plant: the arrival rate split by the location mix."""
    mix = config.arrivals.location_mix
    assert mix is not None
    total = sum(mix.values())
    shares: dict[str, float] = defaultdict(float)
    for name, weight in mix.items():
        location = config.location_of(name)
        assert location is not None
        shares[location] += weight / total
    return {location: config.arrivals.rate_per_hour * shares[location] for location in config.locations}


def visits(config: Config) -> dict[str, float]:
    """Mean visits of a lot to each stage: a failed quality check sends it back to its rework stage
    and through the stages after it again, at most ``max_reworks`` times."""
    names = [stage.name for stage in config.route]
    counts = dict.fromkeys(names, 1.0)
    for i, stage in enumerate(config.route):
        quality = stage.quality
        if quality is None or quality.rework_probability == 0:
            continue
        back = names.index(quality.rework_stage) if quality.rework_stage is not None else i - 1
        again = sum(quality.rework_probability ** k for k in range(1, quality.max_reworks + 1))
        for name in names[back:i + 1]:
            counts[name] += again
    return counts


def busy_s(config: Config, stage: Stage) -> float:
    """Mean time a visit keeps a machine running or blocked: its processing and its per-cycle block."""
    disruptions = config.disruptions_of(stage)
    assert stage.processing_time is not None and disruptions.failures is None  # what the profile uses
    return stage.processing_time.mean + disruptions.block_probability * disruptions.repair_time.mean


def occupied_s(config: Config, stage: Stage) -> float:
    """:func:`busy_s` plus the visit's share of planned maintenance: what a visit takes of a machine."""
    maintenance = config.disruptions_of(stage).maintenance
    share = maintenance.duration.mean / maintenance.every_cycles if maintenance and maintenance.every_cycles else 0.0
    return busy_s(config, stage) + share


def machine_seconds(config: Config, location: str, machine_type: str, start_s: float, span_s: float) -> float:
    """The machine time a pool may work in ``[start_s, start_s + span_s)``: its machines where the
    plant has no calendar, else the machines each shift lets work (the model's own rounding)."""
    plant = config.locations[location]
    count = plant.machines[machine_type]
    if plant.shift_calendar is None:
        return count * span_s
    clock = CalendarClock(config.shift_calendars[plant.shift_calendar], plant.timezone, config.simulation.start)
    total, t, end = 0.0, start_s, start_s + span_s
    while t < end:
        factor, change = clock.factor_and_next_change(t)
        change = min(change, end)
        total += machines_allowed(factor, count) * (change - t)
        t = change
    return total


def offered_load(config: Config, location: str, stage: Stage, *, start_s: float = 0.0, span_s: float = WEEK_S,
                 held: Callable[[Config, Stage], float] = occupied_s) -> float:
    """The work arriving at a pool in the span over the machine time it may work then."""
    work = lots_per_hour(config)[location] * span_s / HOUR_S * visits(config)[stage.name] * held(config, stage)
    return work / machine_seconds(config, location, stage.machine_type, start_s, span_s)


def header_table(path: Path) -> dict[str, list[str]]:
    """The rows of the table in the file's opening comment (from its ``plant`` line to the next empty
    comment line), by plant."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.lstrip("#").split()
        if not line.startswith("#") or (in_table and not words):
            break
        if in_table:
            rows[words[0]] = words[1:]
        in_table = in_table or words[:1] == ["plant"]
    return rows


# -- the file ---------------------------------------------------------------------------------------------------
def test_the_profile_validates_and_follows_the_profile_conventions() -> None:
    ended = factorysim("validate-config", str(PROFILE))
    assert ended.code == 0, ended.stderr
    assert "global.orders.new_lots" in ended.stdout  # the normalised config
    config = profile()
    assert len(config.locations) == 12
    assert config.simulation.warm_up == "auto" and config.warm_up_s > 0
    assert config.telemetry.sample_interval_s == 10
    assert config.telemetry.cycle_records and config.telemetry.lot_events
    assert config.arrivals.in_service and config.simulation.speed == 1.0
    assert config.kafka.bootstrap_servers == "embedded" and config.http.port == 8080
    topics = config.kafka.topics
    assert all(t.startswith("global.") for t in (topics.orders, topics.events, topics.dead_letter, topics.journal,
                                                  topics.snapshots, topics.telemetry_prefix))
    (target,) = config.mqtt.enabled_targets
    assert (target.host, target.port, target.format, target.qos) == ("localhost", 1883, "coffeemek", 1)
    assert target.queue.overflow == "drop-oldest"  # a missing local broker never holds the plant
    reference = load(ROOT / "config.yaml", environ={})
    assert config.route == reference.route and config.disruptions == reference.disruptions


def test_every_plant_has_its_own_time_zone_pools_and_calendar() -> None:
    config = profile()
    zones = [plant.timezone for plant in config.locations.values()]
    assert len(set(zones)) == 12
    start = config.simulation.start
    offsets = {pytz.timezone(zone).utcoffset(start.replace(tzinfo=None)) for zone in zones}
    assert len(offsets) >= 10
    assert max(offsets) - min(offsets) >= dt.timedelta(hours=15)  # from the Pacific coast to Japan
    route_types = {stage.machine_type for stage in config.route}
    pools = {name: tuple(plant.machines[t] for t in sorted(route_types)) for name, plant in config.locations.items()}
    assert all(set(plant.machines) == route_types for plant in config.locations.values())
    assert len(set(pools.values())) == 12  # every plant sized on its own
    sizes = sorted(sum(p) for p in pools.values())
    assert 200 <= sum(sizes) <= 500
    assert sizes[-1] >= 4 * sizes[0]  # small, medium and large plants
    machines = Simulation(config, NullSink()).plant.machines
    assert Counter(m.location for m in machines.values()) == {name: sum(p) for name, p in pools.items()}
    assert all(machine_id.startswith(f"{m.location}-") for machine_id, m in machines.items())
    calendars = {plant.shift_calendar for plant in config.locations.values()}
    assert None in calendars and len(calendars - {None}) == len(config.shift_calendars) >= 2


def test_every_pool_s_offered_load_is_below_one_as_the_header_says() -> None:
    config = profile()
    table = header_table(PROFILE)
    assert sorted(table) == sorted(config.locations)
    rate = lots_per_hour(config)
    bottlenecks = {}
    for name, plant in config.locations.items():
        loads = [offered_load(config, name, stage) for stage in config.route]
        assert max(loads) < 0.85, (name, loads)  # stable, with headroom for a bad week
        bottlenecks[name] = max(loads)
        zone, calendar, machines, lots, *listed = table[name]
        assert (zone, calendar) == (plant.timezone, plant.shift_calendar or "24/7"), name
        assert (int(machines), float(lots)) == (sum(plant.machines.values()), round(rate[name], 2)), name
        assert [float(x) for x in listed] == [round(x, 2) for x in loads], name
    # the mix weights the plants by what they can make: every plant's bottleneck is about as busy
    assert min(bottlenecks.values()) >= 0.6, bottlenecks
    assert math.isclose(sum(rate.values()), config.arrivals.rate_per_hour)


def test_a_warm_up_goes_live_with_a_busy_plant() -> None:
    # as `factorysim run` does before going live (samples do not change what machines do)
    config = profile(**{"telemetry.sample_interval_s": 0})
    sim = Simulation(config, NullSink())
    sim.start_arrivals(until=config.warm_up_s)
    sim.env.run(until=config.warm_up_s)
    idle = Counter(m.location for m in sim.plant.machines.values() if m.state in ("idle", "off_shift"))
    assert sum(idle.values()) <= len(sim.plant.machines) / 2, idle
    assert sim.stats.in_progress > 0 and sim.stats.completed > 0


# -- two simulated days offline -----------------------------------------------------------------------------------
def queue_steps(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """Each pool's queue length after every change, from the lot events: a lot queues, then starts."""
    steps: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(lambda: [(0.0, 0)])
    for event in events:
        change = {"lot.queued": 1, "stage.started": -1}.get(event["event_type"])
        if change is not None:
            series = steps[(event["location"], event["stage"])]
            series.append((event["sim_time_s"], series[-1][1] + change))
    return steps


def empty_time(series: list[tuple[float, int]], start: float, end: float) -> float:
    """Seconds of ``[start, end)`` in which the queue was empty."""
    total = 0.0
    for (t0, length), (t1, _) in zip(series, [*series[1:], (end, 0)], strict=True):
        if length == 0:
            total += max(0.0, min(t1, end) - max(t0, start))
    return total


def in_plant(events: list[dict[str, Any]], location: str, at: float) -> int:
    """Lots of ``location`` received and not yet finished at ``at``."""
    change = {"lot.received": 1, "lot.completed": -1, "lot.scrapped": -1}
    return sum(change.get(e["event_type"], 0) for e in events if e["location"] == location and e["sim_time_s"] <= at)


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, Any], list[dict[str, Any]]]:
    """`factorysim simulate --until 2d --telemetry-out …` of the profile (samples off: they do not change
    the queues, and two days of them take minutes): its report and its lot events."""
    config = profile(**{"telemetry.sample_interval_s": 0, "telemetry.cycle_records": False})
    out = tmp_path_factory.mktemp("global") / "telemetry.jsonl"
    result = asyncio.run(run_offline(config, until_s=2 * DAY_S, telemetry_out=out))
    assert result.sim.now == 2 * DAY_S
    events = [message["value"] for message in map(orjson.loads, out.read_bytes().splitlines())
              if message["topic"] == config.kafka.topics.events]
    return config, build_report(result.sim), events


def test_every_plant_completes_lots_and_its_pools_are_as_busy_as_the_numbers_say(
        two_days: tuple[Config, dict[str, Any], list[dict[str, Any]]]) -> None:
    config, report, events = two_days
    rate = lots_per_hour(config)
    for name in config.locations:
        lots = report["lots"]["by_location"][name]
        expected = rate[name] * 48
        assert abs(lots["received"] - expected) <= 4 * math.sqrt(expected), (name, lots)  # Poisson arrivals
        finished = {e["lot_code"] for e in events if e["location"] == name and e["sim_time_s"] >= DAY_S
                    and e["event_type"] == "lot.completed"}
        assert len(finished) >= rate[name] * 24 / 2, (name, len(finished))  # the second day's output
        arrived = lots["received"] / expected  # the work that came, not the mean
        for stage in config.route:
            pool = report["stages"][stage.name]["by_location"][name]
            assert pool["cycles"] > 0, (name, stage.name)
            # running or blocked as much as the arrived work and the calendar say for these two days: a
            # little less, as the first lots take hours to reach the later stages and what comes while a
            # plant is closed waits for its next shift; an overloaded pool would sit near 1 instead
            offered = arrived * offered_load(config, name, stage, span_s=2 * DAY_S, held=busy_s)
            assert 0.6 * offered <= pool["busy"] <= 1.15 * offered, (name, stage.name, pool, offered)
            assert pool["busy"] < 0.9, (name, stage.name, pool)


def test_no_queue_grows_without_bound(two_days: tuple[Config, dict[str, Any], list[dict[str, Any]]]) -> None:
    config, report, events = two_days
    steps = queue_steps(events)
    for name in config.locations:
        for stage in config.route:
            series = steps[(name, stage.name)]
            assert series[-1][1] == report["stages"][stage.name]["by_location"][name]["queue_length"]
            # the second day is a whole local day everywhere, with its shifts: a queue that builds (at
            # night, say) is worked off again, while an overloaded pool's queue would never empty
            assert empty_time(series, DAY_S, 2 * DAY_S) > HOUR_S, (name, stage.name, max(n for _, n in series))
        # and a plant holds about as many lots at the end of the second day as at the end of the first
        first, second = in_plant(events, name, DAY_S), in_plant(events, name, 2 * DAY_S)
        assert second <= first + 5 * math.sqrt(first + second) + 2, (name, first, second)


# -- the service ---------------------------------------------------------------------------------------------------
def clean_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """This process's environment without factorysim's variables (nor a profile's), with ``variables``,
    and the service's state (its embedded broker's data, the generated token) under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ENV_OVERRIDES and k not in CONFIG_PATH_VARIABLES and k not in PROFILE_VARIABLES
           and not k.startswith(GENERIC_PREFIX) and k != "RUNTIME_DIRECTORY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, "XDG_RUNTIME_DIR": str(tmp_path), "FACTORYSIM_EMBEDDED_DATA_DIR": str(tmp_path / "kafka"),
            **variables}


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health/ready") as ready:
        status = ready.status
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as answer:
        return status, await answer.json()


def samples_by_machine(messages: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each machine's samples, once each (a record sent again has its event id), in time order."""
    unique = {body["id_evento"]: body for body in messages if body["tipo_messaggio"] == "campione"}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for body in sorted(unique.values(), key=lambda b: b["sim_time_s"]):
        out[body["id_macchina"]].append(body)
    return out


class SeenOnMqtt:
    """The machines whose samples a collector has received, and their plants; read once per message."""

    def __init__(self) -> None:
        self.read = 0
        self.machines: dict[str, str] = {}

    def update(self, messages: list[ReceivedMessage]) -> dict[str, str]:
        for message in messages[self.read:]:
            if message.topic.endswith("/samples"):
                body = orjson.loads(message.payload)
                self.machines[body["id_macchina"]] = body["luogo"]
        self.read = len(messages)
        return self.machines


@pytest.mark.timeout(240)
async def test_the_service_publishes_telemetry_of_every_machine_of_the_twelve_plants(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = profile()
    machines = {slot.id: slot.location for slot in config.machine_slots}
    assert set(machines.values()) == set(config.locations)
    port = free_port()
    env = clean_environment(tmp_path, HEALTH_CHECK_PORT=str(port), FACTORYSIM__SIMULATION__WARM_UP="0",
                            MQTT_BROKER=mosquitto.host, MQTT_PORT=str(mosquitto.port))
    sample_topics = [f"{config.kafka.topics.telemetry_prefix}.{stage.name}.samples" for stage in config.route]
    rounds = 3  # every machine sampled three times: the 10 s interval shows
    with (tmp_path / "service.log").open("wb") as log:
        async with MqttCollector(mosquitto.host, mosquitto.port, "global/telemetry/#") as collector:
            service = await asyncio.to_thread(
                subprocess.Popen, [sys.executable, "-m", "simulator", "run", "--config", str(PROFILE), "--speed", "5"],
                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 90
                while True:  # ready: the embedded broker up, the topics there, the run live
                    assert service.poll() is None, (tmp_path / "service.log").read_text()[-3000:]
                    assert loop.time() < deadline, "the service was not ready within 90 s"
                    try:
                        status, state = await health(port)
                    except aiohttp.ClientError:
                        status = 0
                    if status == 200:
                        break
                    await asyncio.sleep(0.2)
                assert state["kafka"]["embedded"] and state["simulation"]["warm_up_s"] == 0
                async with Reader(state["kafka"]["broker"], sample_topics) as reader:
                    collected = await reader.read_until(
                        lambda c: len(machines) == sum(len(v) >= rounds for v in samples_by_machine(
                            body for topic in sample_topics for body in c.json(topic)).values()),
                        120, f"{rounds} samples of each of the {len(machines)} machines on Kafka")
                on_mqtt = SeenOnMqtt()
                await collector.wait_for(lambda messages: set(on_mqtt.update(messages)) == set(machines), 60,
                                         "samples of every machine on MQTT")
                service.send_signal(signal.SIGTERM)
                await asyncio.to_thread(service.wait, 60)
            finally:
                if service.poll() is None:
                    service.kill()
                    await asyncio.to_thread(service.wait)
    assert service.returncode == 0, (tmp_path / "service.log").read_text()[-3000:]

    samples = samples_by_machine(body for topic in sample_topics for body in collected.json(topic))
    assert set(samples) == set(machines)
    for machine_id, bodies in samples.items():
        location = machines[machine_id]
        assert {b["luogo"] for b in bodies} == {location}
        times = [b["sim_time_s"] for b in bodies]
        assert {round(b - a, 3) for a, b in itertools.pairwise(times)} == {10.0}, machine_id
        zone = pytz.timezone(config.locations[location].timezone)
        for body in bodies:  # each plant's local time
            utc = dt.datetime.fromisoformat(body["timestamp_utc"])
            assert dt.datetime.fromisoformat(body["timestamp_locale"]).utcoffset() == zone.utcoffset(
                utc.replace(tzinfo=None)), (machine_id, body["timestamp_locale"])
    assert on_mqtt.machines == machines  # each machine in its own plant
