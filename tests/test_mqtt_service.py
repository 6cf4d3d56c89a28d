"""The service with in-process MQTT targets, a real Mosquitto and a real Kafka: each profile publishes
its wire format on the documented topics with the documented fields, the values agree with what
the simulation says on Kafka, /health reports the target, and the MQTT command topic drives the
model (block, repair) while malformed commands are counted and change nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
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

from harness.collector import MqttCollector, ReceivedMessage
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
    MQTT target on ``broker`` and an ephemeral HTTP port; ``overrides`` are dotted keys."""
    return load(PROFILES / f"{name}.yaml", environ={}, overrides={
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
ENMS_FIELDS = {
    "energy": {"time", "time_local", "machine_id", "power_kw", "energy_kwh", "voltage_v", "current_a",
               "power_factor", "frequency_hz"},
    "production": {"time", "time_local", "machine_id", "lot_code", "quantity", "cycle_time_s", "cycles",
                   "production_count", "good_count", "reject_count", "throughput_pcs_h", "availability",
                   "performance", "quality", "oee"},
    "environmental": {"time", "time_local", "machine_id", "temperature_c", "pressure_bar", "humidity_pct",
                      "vibration_mm_s", "ambient_temp_c", "outdoor_temp_c"},
    "status": {"time", "time_local", "machine_id", "machine_name", "machine_type", "state", "running",
               "operating_mode", "lot_code", "alarm", "alarm_active", "anomaly", "source"},
}
OPERATING_MODES = {"running": "production", "idle": "standby", "blocked": "fault", "maintenance": "maintenance",
                   "off_shift": "off"}
BLOCKED_MACHINE = "conveyor-a"  # the last stage: idle for the first simulated hour


def check_enms_message(topic: str, body: dict[str, Any], uuids: dict[str, str]) -> None:
    _, _, machine, kind = topic.split("/")  # the profile's machine ids (compressor-1, hvac-main …)
    assert set(body) == ENMS_FIELDS[kind], topic
    assert body["machine_id"] == uuids[machine]
    local = dt.datetime.fromisoformat(body["time_local"])
    assert local == utc_instant(body["time"])
    assert local.utcoffset() == dt.timedelta(hours=2)  # Berlin in October (summer time)
    if kind == "energy":
        assert body["frequency_hz"] == 50.0
        assert all(is_number(body[k]) for k in ("power_kw", "energy_kwh", "voltage_v", "current_a", "power_factor"))
        assert body["power_kw"] >= 0
    elif kind == "production":
        assert all(isinstance(body[k], int) for k in ("cycles", "production_count", "good_count", "reject_count"))
        assert body["production_count"] == body["good_count"] + body["reject_count"]
        assert all(0.0 <= body[k] <= 1.0 for k in ("availability", "performance", "quality", "oee"))
    elif kind == "environmental":
        assert body["ambient_temp_c"] == 21
        assert all(body[k] is None or is_number(body[k]) for k in ENMS_FIELDS[kind] - {"time", "time_local",
                                                                                      "machine_id"})
    else:
        assert body["machine_name"] == machine
        assert body["state"] in MACHINE_STATES
        assert body["running"] == (body["state"] == "running")
        assert body["operating_mode"] == OPERATING_MODES[body["state"]]
        assert body["alarm_active"] == (body["alarm"] is not None)
        assert (body["state"] == "blocked") == (body["alarm"] is not None and body["alarm"].startswith("BLOCK: "))


async def test_enms_profile_publishes_four_topics_per_machine_with_retained_status_that_agrees_with_kafka(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    mosquitto_sub = require_executable("mosquitto_sub", "mosquitto-clients")
    config = profile_config("enms", kafka_bootstrap, unique, broker, **{"simulation.speed": 300})
    topics = config.kafka.topics
    conveyor_samples = f"{topics.telemetry_prefix}.conveying.samples"
    machines = ["compressor-1", "hvac-main", "conveyor-a", "hydraulic-pump-1", "injection-molding-1"]
    wanted = {f"factory/demo/{m}/{k}" for m in machines for k in ENMS_FIELDS}
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
        assert (status_body["operating_mode"], status_body["alarm_active"], status_body["running"]) == (
            "fault", True, False)
        assert status_body["lot_code"] is None


# --- smart factory (uns) ------------------------------------------------------------------------------------
UNS_FIELDS = {"ts", "id", "tenant", "plant", "line", "machine", "metric", "value", "unit", "q"}
UNS_UNITS = {"temp": "°C", "vibration_rms": "mm/s", "energy_kw": "kW", "good_count": "pcs", "bad_count": "pcs",
             "state": ""}
UNS_TREE = "v1/acme/plant-01/+/+/+"  # every metric; not the command topic v1/acme/plant-01/cmd


async def test_smart_factory_profile_publishes_one_metric_per_message_in_the_uns(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    config = profile_config("smart-factory", kafka_bootstrap, unique, broker, **{"simulation.speed": 60})
    async with MqttCollector(broker.host, broker.port, UNS_TREE) as collector:
        watch = Watch(collector)
        async with running_service(config) as service, aiohttp.ClientSession() as http:
            machines = set(service.sim.plant.machines)
            assert len(machines) == 9

            def machines_with_every_common_metric(w: Watch) -> set[tuple[str, str]]:
                metrics: dict[tuple[str, str], set[str]] = defaultdict(set)
                for topic in w.topics:
                    *_, line, machine, metric = topic.split("/")
                    metrics[(line, machine)].add(metric)
                return {k for k, v in metrics.items() if v >= {"state", "energy_kw", "good_count", "bad_count"}}

            await watch.until(lambda w: len(machines_with_every_common_metric(w)) == 9, 20,
                              "state, power and counts of all nine machines")
            await target_health(http, service, "edge", "uns", broker)
    watch.refresh()
    bodies = watch.all_bodies()
    assert {f"{line}-{machine}" for line, machine in machines_with_every_common_metric(watch)} == machines
    ids = [body["id"] for _, body in bodies]
    assert len(set(ids)) == len(ids), "message ids repeat"
    for topic, body in bodies:
        v1, tenant, plant, line, machine, metric = topic.split("/")
        assert set(body) == UNS_FIELDS, topic
        assert (v1, body["tenant"], body["plant"]) == ("v1", tenant, plant) == ("v1", "acme", "plant-01")
        assert (body["line"], body["machine"], body["metric"]) == (line, machine, metric)
        assert f"{line}-{machine}" in machines
        assert line in {"line-01", "line-02", "line-03"}
        assert body["unit"] == UNS_UNITS[metric]
        assert body["q"] == 100
        assert str(uuid.UUID(body["id"])) == body["id"]
        utc_instant(body["ts"])
        value = body["value"]
        if metric == "state":
            assert value in MACHINE_STATES
        elif metric in ("good_count", "bad_count"):
            assert isinstance(value, int) and value >= 0
        else:
            assert is_number(value)
    assert any(t.endswith("/cnc-01/temp") for t in watch.topics)  # a CNC has a spindle temperature


# --- commands over MQTT ---------------------------------------------------------------------------------------
def publish(broker: Mosquitto, topic: str, *payloads: bytes) -> None:
    """Publish with QoS 1 from a separate paho client and wait for each PUBACK (blocking)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"commander-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv311)
    client.connect(broker.host, broker.port, 30)
    client.loop_start()
    try:
        for payload in payloads:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


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
            # a test rig waits for its first lot for several simulated minutes: idle, so a block applies
            machine_id = next(m for m, machine in sorted(service.sim.plant.machines.items())
                              if machine.machine_type == "test_rig" and machine.state == "idle")
            line, short = machine_id[:7], machine_id[8:]
            state_topic = f"v1/acme/plant-01/{line}/{short}/state"
            machine = service.sim.plant.machines[machine_id]

            block = {"command": "block", "machine_id": machine_id, "reason": "fixture jammed"}
            await asyncio.to_thread(publish, broker, command_topic, orjson.dumps(block))
            await wait_for(lambda: machine.state == "blocked", 10, "the machine blocked by the MQTT command")
            status, view = await get(http, f"{base}/machines/{machine_id}")
            assert status == 200
            assert (view["state"], view["blocked"], view["current_lot"]) == ("blocked", True, None)
            assert (view["block"]["reason"], view["block"]["cause"], view["block"]["until_s"]) == (
                "fixture jammed", "command", None)
            await watch.until(lambda w: any(b["value"] == "blocked" for b in w.bodies[state_topic]), 10,
                              f"'blocked' on {state_topic}")

            def kafka_event(event_type: str) -> Callable[[Collected], bool]:
                return lambda c: any(e["event_type"] == event_type and e["machine_id"] == machine_id
                                     for e in c.json(events))

            await reader.read_until(kafka_event("machine.blocked"), 20, "machine.blocked on Kafka")

            # malformed or inapplicable: rejected, counted, nothing changes, the service goes on
            await asyncio.to_thread(
                publish, broker, command_topic, b"this is not json",
                orjson.dumps({"command": "block", "machine_id": "line-09-cnc-01"}),
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
            await watch.until(lambda w: w.bodies[state_topic][-1]["value"] != "blocked", 10,
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
    # the UNS state of the machine follows: blocked from the block until the repair, then idle or running
    states = [b["value"] for b in watch.bodies[state_topic]]
    first_blocked = states.index("blocked")
    after = states[first_blocked:]
    n_blocked = next(i for i, s in enumerate(after) if s != "blocked")
    assert n_blocked >= 2, states  # the block event and at least one sample while blocked
    assert after[n_blocked] in ("idle", "running")
    assert "blocked" not in after[n_blocked:]
    assert set(states[:first_blocked]) <= {"idle"}


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
