"""The service with in-process MQTT targets, a real Mosquitto and a real Kafka: each profile publishes
its wire format on the documented topics with the documented fields, the values agree with what
the simulation says on Kafka, /health reports the target, and the MQTT command topic drives the
model (block, repair) while malformed commands are counted and change nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import re
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.config.loader import load
from simulator.config.schema import Config
from simulator.programs.service import Service

from harness.collector import MqttCollector, ReceivedMessage, publish
from harness.dependencies import require_executable
from harness.mosquitto import Mosquitto
from harness.service import Collected, Reader, control_headers, running_service, wait_for

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
FAST_RECONNECT = {"initial_s": 0.05, "max_s": 0.2, "jitter": 0.5}
MACHINE_STATES = {"idle", "running", "blocked", "maintenance", "off_shift"}


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A Mosquitto that queues without limit for a subscriber that falls behind (its default drops QoS 1
    messages beyond 1,000 queued per client, which a collector in a busy test can reach)."""
    return mosquitto_factory(extra_config=["max_queued_messages 0"])


def profile_config(name: str, bootstrap: str, unique: str, broker: Mosquitto, **overrides: Any) -> Config:
    """profiles/<name>.yaml with its Kafka on ``bootstrap`` (topics and group unique to the test), its one
    MQTT target on ``broker`` and an ephemeral HTTP port; without the profile's warm-up (the tests
    compare what is published from simulated time 0, and send commands at once: tests/test_warm_start.py
    covers the warm-up); ``overrides`` are dotted keys."""
    return load(PROFILES / f"{name}.yaml", environ={}, overrides={
        "simulation.warm_up": 0,
        "kafka.bootstrap_servers": bootstrap,
        "kafka.topics": {"orders": f"{unique}.orders", "telemetry_prefix": f"{unique}.telemetry",
                         "events": f"{unique}.events", "dead_letter": f"{unique}.dead_letter",
                         "journal": f"{unique}.journal"},
        "kafka.consumer.group_id": f"{unique}-group",
        "kafka.consumer.session_timeout_ms": 2000,
        "kafka.producer.linger_ms": 5,
        "http": {"host": "127.0.0.1", "port": 0,
                 "generated_token_file": str(Path(tempfile.gettempdir()) / "factorysim-tests" / f"{unique}.token")},
        "mqtt.targets.0.host": broker.host,
        "mqtt.targets.0.port": broker.port,
        "mqtt.targets.0.reconnect": FAST_RECONNECT,
        **overrides,
    })


class Watch:
    """What a collector received, by topic, each payload parsed once: the service runs in the same
    event loop, so a wait must not re-read thousands of messages on every arrival."""

    def __init__(self, collector: MqttCollector) -> None:
        self.collector = collector
        self.messages: dict[str, list[ReceivedMessage]] = defaultdict(list)
        self.bodies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._seen = 0

    def refresh(self) -> Watch:
        new = self.collector.messages[self._seen:]
        self._seen += len(new)
        for message in new:
            self.messages[message.topic].append(message)
            self.bodies[message.topic].append(message.json())
        return self

    @property
    def topics(self) -> set[str]:
        return {topic for topic, messages in self.messages.items() if messages}

    def all_bodies(self) -> list[tuple[str, dict[str, Any]]]:
        return [(topic, body) for topic, bodies in self.bodies.items() for body in bodies]

    async def until(self, condition: Callable[[Watch], bool], timeout_s: float, what: str) -> Watch:
        await self.collector.wait_for(lambda _: condition(self.refresh()), timeout_s, what)
        return self


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def post(http: aiohttp.ClientSession, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json()


async def target_health(http: aiohttp.ClientSession, service: Service, name: str, fmt: str,
                        broker: Mosquitto) -> dict[str, Any]:
    """/health lists the target, connected, with acknowledged messages; returns its entry."""
    publisher = service.mqtt[0]
    await wait_for(lambda: publisher.messages_acknowledged > 0, 10, "acknowledged MQTT messages")
    status, health = await get(http, f"http://127.0.0.1:{service.http_port}/health")
    assert status == 200, health
    assert health["status"] == "healthy", health
    (target,) = health["mqtt"]["targets"]
    assert target["name"] == name
    assert target["format"] == fmt
    assert target["broker"] == f"{broker.host}:{broker.port}"
    assert (target["connected"], target["state"], target["last_error"]) == (True, "connected", None)
    assert target["messages_acknowledged"] > 0
    assert target["messages_published"] >= target["messages_acknowledged"]
    assert target["dropped_oldest"] == target["dropped_newest"] == target["encode_errors"] == 0
    return dict(target)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def utc_instant(text: str) -> dt.datetime:
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text)


# --- spaceship: tests/test_seed_spaceship.py checks the profile against the earlier simulator's documents ---


# --- enms -------------------------------------------------------------------------------------------------
ENMS_KINDS = ("energy", "production", "environmental", "status")
BLOCKED_MACHINE = "conveyor-a"  # the last stage: idle for the first simulated hour


def check_enms_message(topic: str, body: dict[str, Any], uuids: dict[str, str]) -> None:
    """Fields, types and topic of an enms message, against the EnMS simulator's table in
    tests/test_enms_profile.py (imported here: that module imports this one)."""
    from test_enms_profile import check_enms_message as check

    _, _, machine, _ = topic.split("/")  # the profile's machine ids (compressor-1, hvac-main …)
    check(topic, body, {machine: uuids[machine]})


async def test_enms_profile_publishes_four_topics_per_machine_with_retained_status_that_agrees_with_kafka(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    mosquitto_sub = require_executable("mosquitto_sub", "mosquitto-clients")
    config = profile_config("enms", kafka_bootstrap, unique, broker, **{"simulation.speed": 300})
    topics = config.kafka.topics
    conveyor_samples = f"{topics.telemetry_prefix}.conveying.samples"
    machines = ["compressor-1", "hvac-main", "conveyor-a", "hydraulic-pump-1", "injection-molding-1"]
    wanted = {f"factory/demo/{m}/{k}" for m in machines for k in ENMS_KINDS}
    status_topic = f"factory/demo/{BLOCKED_MACHINE}/status"
    async with MqttCollector(broker.host, broker.port, "factory/#") as collector:
        watch = Watch(collector)
        async with running_service(config) as service, \
                aiohttp.ClientSession(headers=control_headers(service)) as http:
            base = f"http://127.0.0.1:{service.http_port}"
            await watch.until(lambda w: w.topics >= wanted, 20, "the four topics of every machine")
            assert service.sim.plant.machines[BLOCKED_MACHINE].state == "idle"
            status, answer = await post(http, f"{base}/machines/{BLOCKED_MACHINE}/block", {"reason": "belt jam"})
            assert status == 200, answer
            assert answer["state"] == "blocked"

            def blocked_statuses(w: Watch) -> list[dict[str, Any]]:
                return [b for b in w.bodies[status_topic] if b["state"] == "blocked"]

            await watch.until(lambda w: {b["source"] for b in blocked_statuses(w)} >= {"machine.blocked", "sample"},
                              20, "the blocked conveyor's status, from the event and from a sample")
            from_event = next(b for b in blocked_statuses(watch) if b["source"] == "machine.blocked")
            from_sample = next(b for b in blocked_statuses(watch) if b["source"] == "sample")
            async with Reader(kafka_bootstrap, [topics.events, conveyor_samples]) as reader:
                collected = await reader.read_until(
                    lambda c: any(s["timestamp_utc"] == from_sample["time"] and s["id_macchina"] == BLOCKED_MACHINE
                                  for s in c.json(conveyor_samples))
                    and any(e["event_type"] == "machine.blocked" and e["machine_id"] == BLOCKED_MACHINE
                            for e in c.json(topics.events)), 20, "the conveyor's block on Kafka")
            target = await target_health(http, service, "local", "enms", broker)
            assert target["qos"] == 1

            # stop simulated time: what the broker retains is then the machines' last status
            status, answer = await post(http, f"{base}/simulation/pause")
            assert status == 200, answer
            publisher = service.mqtt[0]
            await wait_for(lambda: len(publisher) == 0 and publisher.session.in_flight == 0, 10, "the target idle")
            process = await asyncio.create_subprocess_exec(
                mosquitto_sub, "-h", broker.host, "-p", str(broker.port), "-t", "factory/demo/+/status",
                "-C", "5", "-W", "10", "-F", "%r %t %p", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(process.communicate(), 20)
            assert process.returncode == 0, err.decode()
    # the last statuses, retained: one per machine, and the conveyor's says blocked
    retained = {}
    for line in out.decode().splitlines():
        flag, topic, payload = line.split(" ", 2)
        assert flag == "1", line  # delivered because retained
        retained[topic] = orjson.loads(payload)
    assert set(retained) == {f"factory/demo/{m}/status" for m in machines}
    assert retained[status_topic]["state"] == "blocked"
    assert retained[status_topic]["alarm"] == "BLOCK: belt jam"

    uuids = {m: str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:factorysim:machine"), m)) for m in machines}
    watch.refresh()
    for topic, body in watch.all_bodies():
        check_enms_message(topic, body, uuids)
    # the status agrees with the simulation on Kafka: the block event and the sample of the same instant
    block = next(e for e in collected.json(topics.events)
                 if e["event_type"] == "machine.blocked" and e["machine_id"] == BLOCKED_MACHINE)
    assert (block["cause"], block["reason"], block["lot_code"]) == ("command", "belt jam", None)
    sample = next(s for s in collected.json(conveyor_samples)
                  if s["timestamp_utc"] == from_sample["time"] and s["id_macchina"] == BLOCKED_MACHINE)
    assert (sample["stato"], sample["blocco_macchina"], sample["motivo_blocco"]) == ("bloccata", True, "belt jam")
    assert from_event["time"] == block["timestamp_utc"]
    for status_body in (from_event, from_sample):
        assert status_body["alarm"] == sample["allarmi_utente"] == "BLOCK: belt jam"
        assert (status_body["operating_mode"], status_body["alarm_active"], status_body["is_running"]) == (
            "fault", True, False)
        assert status_body["lot_code"] is None


# --- smart factory (uns) ------------------------------------------------------------------------------------
# The Virtual Smart Factory as its edge agent published it: the plant, the topic tree and, per metric, the
# unit, the JSON type and the values (state codes 0 run, 1 stop, 2 fault).  The ranges span the agent's
# readings (45-60 °C, 1.8-3 mm/s, 15-35 kW; a bearing fault +15-25 °C and +5-10 mm/s, an energy spike x2.5-4)
# widened to machines that also stand idle (ambient temperature, almost no vibration, standby power).
SEED_PLANT = {"line-01": ("cnc-01", "cnc-02", "robot-arm-01"), "line-02": ("press-01", "conveyor-01", "robot-arm-02"),
              "line-03": ("welder-01", "welder-02", "inspection-01")}
SEED_FIELDS = ["ts", "id", "tenant", "plant", "line", "machine", "metric", "value", "unit", "q"]
SEED_METRICS: dict[str, tuple[str, type, float, float]] = {  # metric: (unit, type, lowest, highest)
    "temp": ("°C", float, 15.0, 110.0),
    "vibration_rms": ("mm/s", float, 0.0, 25.0),
    "energy_kw": ("kW", float, 0.0, 200.0),
    "good_count": ("units", int, 0, math.inf),
    "bad_count": ("units", int, 0, math.inf),
    "state": ("enum", int, 0, 2),
}
RUN, STOP, FAULT = 0, 1, 2
SEED_TOPICS = {f"v1/acme/plant-01/{line}/{machine}/{metric}" for line, machines in SEED_PLANT.items()
               for machine in machines for metric in SEED_METRICS}
UNS_TREE = "v1/acme/plant-01/+/+/+"  # every metric; not the command topic v1/acme/plant-01/cmd
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class UnsStream:
    """The uns messages a collector received, each parsed once, and by machine (``line/machine``) and sample
    instant (simulated seconds since ``start``, the run's calendar) the value of each metric."""

    def __init__(self, collector: MqttCollector, start: dt.datetime) -> None:
        self.collector = collector
        self.start = start
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.samples: dict[str, dict[float, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))

    def refresh(self) -> UnsStream:
        for message in self.collector.messages[len(self.bodies):]:
            body = message.json()
            self.bodies.append((message.topic, body))
            instant = round((utc_instant(body["ts"]) - self.start).total_seconds(), 3)
            machine = message.topic.rsplit("/", 1)[0].removeprefix("v1/acme/plant-01/")
            self.samples[machine][instant][body["metric"]] = body["value"]
        return self

    def sampled(self, count: int, after: float = -1.0) -> bool:
        """Every machine of the seed's plant has ``count`` complete samples (all six metrics) after ``after``."""
        def enough(series: dict[float, dict[str, Any]]) -> bool:
            found = 0
            for instant in reversed(series):
                if instant <= after:
                    return False
                found += len(series[instant]) == len(SEED_METRICS)
                if found >= count:
                    return True
            return False

        return len(self.samples) == 9 and all(enough(series) for series in self.samples.values())

    async def until(self, condition: Callable[[UnsStream], bool], timeout_s: float, what: str) -> UnsStream:
        await self.collector.wait_for(lambda _: condition(self.refresh()), timeout_s, what)
        return self


async def test_smart_factory_profile_is_the_seed_plant_with_six_typed_metrics_every_2_s(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    config = profile_config("smart-factory", kafka_bootstrap, unique, broker, **{"simulation.speed": 30})
    command_topic = config.mqtt.targets[0].command_topic
    async with MqttCollector(broker.host, broker.port, UNS_TREE) as collector:
        async with running_service(config) as service, aiohttp.ClientSession() as http:
            stream = UnsStream(collector, service.sim.start)
            await stream.until(lambda s: s.sampled(150) and any(  # counts are totals: the latest samples tell
                series[t].get("good_count", 0) > 0 for series in s.samples.values()
                for t in itertools.islice(reversed(series), 3)), 90,
                "150 samples (5 minutes) of all nine machines, and a first lot through a stage")
            # the seed's third command: without CLOUD_API_URL there is no cloud link to cut (the edge broker has
            # uplink: false), so it is refused with its reason and counted; the plant goes on
            await asyncio.to_thread(broker.wait_for_log, f"{service.mqtt[0].session.client_id} 1 {command_topic}")
            await asyncio.to_thread(publish, broker, command_topic, b'{"cmd": "network_outage", "value": true}')
            await wait_for(lambda: mqtt_commands(service) == {("network_outage", "rejected"): 1}, 10,
                           "network_outage rejected")
            await target_health(http, service, "edge", "uns", broker)
            assert service.healthy
            published = service.mqtt[0].messages_published
        await collector.wait_count(published, 10)
    stream.refresh()
    assert {topic for topic, _ in stream.bodies} == SEED_TOPICS
    ids = [body["id"] for _, body in stream.bodies]
    assert len(set(ids)) == len(ids), "message ids repeat"
    for topic, body in stream.bodies:
        _, tenant, plant, line, machine, metric = topic.split("/")
        assert list(body) == SEED_FIELDS, topic
        assert (body["tenant"], body["plant"], body["line"], body["machine"], body["metric"]) == (
            tenant, plant, line, machine, metric)
        assert machine in SEED_PLANT[line]
        unit, kind, lowest, highest = SEED_METRICS[metric]
        value = body["value"]
        assert (body["unit"], type(value)) == (unit, kind), body
        assert lowest <= value <= highest, body
        assert body["q"] == 100
        assert str(uuid.UUID(body["id"])) == body["id"]
        assert TIMESTAMP.match(body["ts"]), body["ts"]
    states = set()
    for machine, series in stream.samples.items():
        instants = sorted(series)
        assert all(set(series[t]) == set(SEED_METRICS) for t in instants), machine  # six metrics per sample
        assert {round(b - a, 3) for a, b in itertools.pairwise(instants)} == {2.0}, machine  # every 2 s
        for counter in ("good_count", "bad_count"):  # totals since the start: they never go back
            values = [series[t][counter] for t in instants]
            assert values == sorted(values), (machine, counter)
        states |= {series[t]["state"] for t in instants}
    assert {RUN, STOP} <= states


async def test_smart_factory_bearing_fault_over_mqtt_shows_on_every_machine_until_it_is_switched_off(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    # no blocks, no maintenance, no failed inspections: the fault is then the only cause of state 2 and of bad
    # pieces, and every machine is switched on (a machine in maintenance is off and shows no bearing)
    config = profile_config("smart-factory", kafka_bootstrap, unique, broker, **{
        "simulation.speed": 30, "disruptions.block_probability": 0, "disruptions.maintenance": None,
        "route.5.quality": None})
    command_topic = config.mqtt.targets[0].command_topic
    async with MqttCollector(broker.host, broker.port, UNS_TREE) as collector, running_service(config) as service:
        stream = UnsStream(collector, service.sim.start)
        machines = service.sim.plant.machines
        await asyncio.to_thread(broker.wait_for_log, f"{service.mqtt[0].session.client_id} 1 {command_topic}")
        await stream.until(lambda s: s.sampled(10), 30, "samples of all nine machines")
        await wait_for(lambda: any(m.state == "running" for m in machines.values()), 30, "a machine at work")

        await asyncio.to_thread(publish, broker, command_topic, b'{"cmd": "bearing_fault", "value": true}')
        await wait_for(lambda: all(m.anomaly == "bearing_fault" for m in machines.values()), 10,
                       "the bearing fault on every machine")
        switched_on = service.sim.now
        idle_then = {mid for mid, m in machines.items() if m.state == "idle"}
        assert idle_then, "no idle machine when the fault came"

        def bad_pieces(s: UnsStream) -> bool:
            return s.sampled(10, switched_on) and any(  # bad counts are totals: the latest samples tell
                series[t].get("bad_count", 0) > 0 for series in s.samples.values()
                for t in itertools.islice(reversed(series), 3))

        await stream.until(bad_pieces, 90, "bad pieces during the fault")
        await asyncio.to_thread(publish, broker, command_topic, b'{"cmd": "bearing_fault", "value": false}')
        await wait_for(lambda: all(m.anomaly is None for m in machines.values()), 10, "the fault cleared")
        switched_off = service.sim.now
        await stream.until(lambda s: s.sampled(15, switched_off), 30, "samples after the fault")
        assert mqtt_commands(service) == {("bearing_fault", "accepted"): 2}
    samples = stream.refresh().samples
    assert set(samples) == {f"{line}/{m}" for line, ms in SEED_PLANT.items() for m in ms}
    firsts, lasts = [], []
    for machine, series in samples.items():
        instants = [t for t in sorted(series) if len(series[t]) == 6]
        faulted = [t for t in instants if series[t]["state"] == FAULT]
        assert faulted, machine
        on, off = faulted[0], faulted[-1]
        firsts.append(on)
        lasts.append(off)
        before = [series[t] for t in instants if t < on]
        during = [series[t] for t in instants if on <= t <= off]
        after = [series[t] for t in instants if t > off]
        assert len(before) >= 10 and len(during) >= 10 and len(after) >= 10, machine
        assert all(s["state"] == FAULT for s in during), machine  # the whole time, idle or at work
        assert not any(s["state"] == FAULT for s in before + after), machine
        # hotter and shaking: +15-25 °C on its coolest reading before, at least +5 mm/s
        assert min(s["temp"] for s in during) >= min(s["temp"] for s in before) + 14, machine
        assert min(s["vibration_rms"] for s in during) >= 5.0, machine
        assert min(s["vibration_rms"] for s in after) < min(s["vibration_rms"] for s in during), machine
        # nothing it finished meanwhile was good; nothing was bad before or after
        assert {s["bad_count"] for s in before} == {0}, machine
        assert len({s["good_count"] for s in during}) == 1, machine
        assert len({s["bad_count"] for s in after}) == 1, machine
    assert max(firsts) - min(firsts) < 2.0  # one command, every machine at its next sample
    assert max(lasts) - min(lasts) < 2.0
    assert min(firsts) <= switched_on and max(lasts) <= switched_off
    total_bad = sum(series[max(series)]["bad_count"] for series in samples.values())
    assert total_bad > 0
    assert total_bad == sum(m.bad_pieces for m in machines.values())
    assert {f"plant-01-{name.split('/')[1]}" for name in samples} >= idle_then  # idle machines showed it too


# --- commands over MQTT ---------------------------------------------------------------------------------------
def mqtt_commands(service: Service) -> dict[tuple[str, str], float]:
    """factorysim_commands_total of source mqtt by (command, outcome), from the service's registry."""
    return {(s.labels["command"], s.labels["outcome"]): s.value
            for family in service.metrics.registry.collect() for s in family.samples
            if s.name == "factorysim_commands_total" and s.labels["source"] == "mqtt"}


async def test_commands_on_the_mqtt_command_topic_block_and_repair_and_malformed_ones_are_counted(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    config = profile_config("smart-factory", kafka_bootstrap, unique, broker, **{"simulation.speed": 60})
    command_topic = config.mqtt.targets[0].command_topic
    assert command_topic == "v1/acme/plant-01/cmd"
    events = config.kafka.topics.events
    async with MqttCollector(broker.host, broker.port, UNS_TREE) as collector:
        watch = Watch(collector)
        async with running_service(config) as service, aiohttp.ClientSession() as http, \
                Reader(kafka_bootstrap, [events]) as reader:
            base = f"http://127.0.0.1:{service.http_port}"
            publisher = service.mqtt[0]
            await asyncio.to_thread(broker.wait_for_log, f"{publisher.session.client_id} 1 {command_topic}")
            # the inspection, the last stage, waits for its first lot for many simulated minutes: idle, so a
            # block applies
            machine_id = "plant-01-inspection-01"
            state_topic = "v1/acme/plant-01/line-03/inspection-01/state"
            machine = service.sim.plant.machines[machine_id]
            assert machine.state == "idle"

            block = {"command": "block", "machine_id": machine_id, "reason": "fixture jammed"}
            await asyncio.to_thread(publish, broker, command_topic, orjson.dumps(block))
            await wait_for(lambda: machine.state == "blocked", 10, "the machine blocked by the MQTT command")
            status, view = await get(http, f"{base}/machines/{machine_id}")
            assert status == 200
            assert (view["state"], view["blocked"], view["current_lot"]) == ("blocked", True, None)
            assert (view["block"]["reason"], view["block"]["cause"], view["block"]["until_s"]) == (
                "fixture jammed", "command", None)
            await watch.until(lambda w: any(b["value"] == FAULT for b in w.bodies[state_topic]), 10,
                              f"the fault state (blocked) on {state_topic}")

            def kafka_event(event_type: str) -> Callable[[Collected], bool]:
                return lambda c: any(e["event_type"] == event_type and e["machine_id"] == machine_id
                                     for e in c.json(events))

            await reader.read_until(kafka_event("machine.blocked"), 20, "machine.blocked on Kafka")

            # malformed or inapplicable: rejected, counted, nothing changes, the service goes on
            await asyncio.to_thread(
                publish, broker, command_topic, b"this is not json",
                orjson.dumps({"command": "block", "machine_id": "plant-09-cnc-01"}),
                orjson.dumps({"command": "repair", "machine_id": machine_id, "force": True}))
            await wait_for(lambda: sum(v for (_, o), v in mqtt_commands(service).items() if o == "rejected") == 3,
                           10, "three rejected commands")
            assert mqtt_commands(service) == {("block", "accepted"): 1, ("invalid", "rejected"): 1,
                                              ("block", "rejected"): 1, ("repair", "rejected"): 1}
            assert publisher.session.commands_received == 4
            assert machine.state == "blocked"
            assert service.state == "running"
            assert service.healthy

            repair = {"command": "repair", "machine_id": machine_id}
            await asyncio.to_thread(publish, broker, command_topic, orjson.dumps(repair))
            await wait_for(lambda: machine.state != "blocked", 10, "the machine repaired by the MQTT command")
            collected = await reader.read_until(kafka_event("machine.repaired"), 20, "machine.repaired on Kafka")
            await watch.until(lambda w: w.bodies[state_topic][-1]["value"] != FAULT, 10,
                              f"the state after the repair on {state_topic}")
            status, health = await get(http, f"{base}/health")
            assert status == 200
            assert health["status"] == "healthy"
            assert health["mqtt"]["targets"][0]["commands_received"] == 5
            async with http.get(f"{base}/metrics") as response:
                metrics = {(s.labels["command"], s.labels["outcome"]): s.value
                           for family in text_string_to_metric_families(await response.text())
                           for s in family.samples
                           if s.name == "factorysim_commands_total" and s.labels["source"] == "mqtt"}
            assert metrics == {("block", "accepted"): 1, ("repair", "accepted"): 1, ("invalid", "rejected"): 1,
                               ("block", "rejected"): 1, ("repair", "rejected"): 1}

    mine = [e for e in collected.json(events) if e["machine_id"] == machine_id]
    assert [(e["event_type"], e["cause"], e["reason"]) for e in mine[:2]] == [
        ("machine.blocked", "command", "fixture jammed"), ("machine.repaired", "command", "fixture jammed")]
    # the UNS state of the machine follows, every 2 s: stopped (idle) before the block, the fault code from the
    # block until the repair, then stopped or running
    states = [b["value"] for b in watch.bodies[state_topic]]
    first_blocked = states.index(FAULT)
    after = states[first_blocked:]
    n_blocked = next(i for i, s in enumerate(after) if s != FAULT)
    assert n_blocked >= 2, states  # samples while blocked
    assert after[n_blocked] in (RUN, STOP)
    assert FAULT not in after[n_blocked:]
    assert set(states[:first_blocked]) <= {STOP}


async def test_at_speed_1_payload_timestamps_are_the_wall_clock_from_the_start(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    # the configured start lies an hour back; started "now" (the command line's default), the run's
    # calendar and every target's timestamps begin when it goes live
    an_hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    config = profile_config("spaceship", kafka_bootstrap, unique, broker,
                            **{"simulation.speed": 1, "simulation.start": an_hour_ago,
                               "telemetry.sample_interval_s": 1})
    behind: list[float] = []

    def note_lags(watch: Watch) -> bool:
        now = dt.datetime.now(dt.UTC)
        for _, body in watch.all_bodies()[len(behind):]:
            shown = dt.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
            behind.append((now - shown).total_seconds())
        return len(behind) >= 20

    async with MqttCollector(broker.host, broker.port, "factory/#") as collector:
        watch = Watch(collector)
        async with running_service(config, start_now=True):
            await watch.until(note_lags, 30, "20 messages")
    assert all(-0.05 < lag < 2.0 for lag in behind), behind  # (an hour when the targets took the configured start)
