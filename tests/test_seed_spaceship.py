"""The spaceship profile as a drop-in replacement of the SpaceShip factory / Edge MQTT simulator
(README "MQTT" -> "Formats and topics", "Profiles"): the service on a real Kafka and a real
Mosquitto publishes the earlier simulator's topics with its field names, types and values — checked
against a table taken from that simulator's documents, kept here as data — plus the documented
extra fields; ids look as that simulator named them, a print's progress rises from 0 to 1 on its
samples, part ids count each machine's cycles, and orders and dispatches are the lots Kafka saw."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from test_mqtt_service import Watch, profile_config, target_health, utc_instant

import machines
from machines.base import COMMON_SIGNALS
from simulator.config.schema import Config

from harness.collector import MqttCollector
from harness.mosquitto import Mosquitto
from harness.service import Reader, control_headers, running_service, wait_for

# -- what the earlier simulator's documents say ------------------------------------------------------------
NUMBER = (int, float)
TEXT = (str,)
NULL = (type(None),)
STATUS = {"running", "idle", "maintenance", "faulted"}  # "status field tracks machine state"
QUALITY = {"good", "scrap", "rework"}
TEST_RESULT = {"pass", "fail"}

# topic -> field -> (types, allowed values or None)
SEED_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "factory/cnc": {
        "timestamp": (TEXT, None), "machine_id": (TEXT, None), "station_id": (TEXT, None), "status": (TEXT, STATUS),
        "part_type": (TEXT + NULL, None), "part_id": (TEXT + NULL, None), "cycle_time": (NUMBER + NULL, None),
        "quality": (TEXT + NULL, QUALITY)},
    "factory/3dprinter": {
        "timestamp": (TEXT, None), "machine_id": (TEXT, None), "station_id": (TEXT, None), "status": (TEXT, STATUS),
        "part_type": (TEXT + NULL, None), "part_id": (TEXT + NULL, None), "progress": (NUMBER, None),
        "quality": (TEXT + NULL, QUALITY)},
    "factory/welding": {
        "timestamp": (TEXT, None), "machine_id": (TEXT, None), "station_id": (TEXT, None), "status": (TEXT, STATUS),
        "assembly_id": (TEXT + NULL, None), "assembly_type": (TEXT + NULL, None),
        "last_cycle_time": (NUMBER + NULL, None), "quality": (TEXT + NULL, QUALITY)},
    "factory/painting": {
        "timestamp": (TEXT, None), "machine_id": (TEXT, None), "station_id": (TEXT, None), "status": (TEXT, STATUS),
        "part_id": (TEXT + NULL, None), "color": (TEXT + NULL, None), "cycle_time": (NUMBER + NULL, None),
        "quality": (TEXT + NULL, QUALITY)},
    "factory/testing": {
        "timestamp": (TEXT, None), "machine_id": (TEXT, None), "station_id": (TEXT, None), "status": (TEXT, STATUS),
        "target_id": (TEXT + NULL, None), "target_type": (TEXT + NULL, None),
        "test_result": (TEXT + NULL, TEST_RESULT), "issues_found": ((int,), None)},
    "factory/orders": {
        "timestamp": (TEXT, None), "event_type": (TEXT, {"order_placed"}), "order_id": (TEXT, None),
        "items": ((list,), None)},
    "factory/dispatch": {
        "timestamp": (TEXT, None), "event_type": (TEXT, {"order_dispatched"}), "order_id": (TEXT, None),
        "destination": (TEXT, None), "carrier": (TEXT, None)},
}
# numbers' ranges (inclusive): progress 0.0 to 1.0, times in seconds, issues a count
RANGES = {"progress": (0.0, 1.0), "cycle_time": (0.001, 86_400.0), "last_cycle_time": (0.001, 86_400.0),
          "issues_found": (0, 3), "quantity": (1, 4)}
ITEM_FIELDS = {"product_type": str, "quantity": int}  # an order's items[]
# the seed's ids: CNC-01, 3DP-07, WELD-02, PAINT-05, TEST-01; stations LINE-1-STATION-A … QA-STATION-1
ID_PATTERNS = {
    "factory/cnc": (r"CNC-\d\d", r"LINE-1-STATION-A", r"[A-Z]+-\d+"),
    "factory/3dprinter": (r"3DP-\d\d", r"LINE-1-STATION-B", r"[A-Z]+-\d+"),
    "factory/welding": (r"WELD-\d\d", r"LINE-2-STATION-C", r"A-\d+"),
    "factory/painting": (r"PAINT-\d\d", r"LINE-2-STATION-D", r"Frame-\d+"),
    "factory/testing": (r"TEST-\d\d", r"QA-STATION-\d", r"(Spaceship|Shuttle|CargoPod|SparePartKit)-\d+"),
}
ID_FIELD = {"factory/cnc": "part_id", "factory/3dprinter": "part_id", "factory/welding": "assembly_id",
            "factory/painting": "part_id", "factory/testing": "target_id"}

# -- what factorysim adds (README: the spaceship format) -----------------------------------------------------
OTHER_TOPIC = "factory/telemetry"  # machines of other kinds: here an air compressor
TELEMETRY_EXTRAS: dict[str, tuple[tuple[type, ...], Any]] = {
    "off_shift": ((bool,), None), "location": (TEXT, {"Shipyard"}), "machine_type": (TEXT, None),
    "order_id": (TEXT + NULL, None), "alarm": (TEXT + NULL, None), "anomaly": (TEXT + NULL, None),
    "good_count": ((int,), None), "bad_count": ((int,), None), "oee": ((dict,), None)}
KIND_EXTRAS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "factory/3dprinter": {"cycle_time": (NUMBER + NULL, None)},
    "factory/testing": {"cycle_time": (NUMBER + NULL, None), "quality": (TEXT + NULL, QUALITY)},
    OTHER_TOPIC: {"timestamp": (TEXT, None), "machine_id": (TEXT, None), "station_id": (TEXT, None),
                  "status": (TEXT, STATUS), "cycle_time": (NUMBER + NULL, None), "quality": (TEXT + NULL, QUALITY)},
}
BUSINESS_EXTRAS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "factory/orders": {"customer": (TEXT, None), "quantity": ((int,), None),
                       "priority": (TEXT, {"high", "normal", "low"}), "location": (TEXT, {"Shipyard"}),
                       "status": (TEXT, {"received"})},
    "factory/dispatch": {"items": ((list,), None), "dispatch_id": (TEXT, None), "customer": (TEXT, None),
                         "quantity": ((int,), None), "priority": (TEXT, {"high", "normal", "low"}),
                         "location": (TEXT, {"Shipyard"}), "lead_time_s": (NUMBER, None),
                         "rework_count": ((int,), None), "status": (TEXT, {"dispatched"})},
}
TOPIC_TYPES = {"factory/cnc": "cnc", "factory/3dprinter": "3d_printer", "factory/welding": "welding",
               "factory/painting": "painting", "factory/testing": "test_rig", OTHER_TOPIC: "compressor"}
WANTED = {*SEED_FIELDS, OTHER_TOPIC}


def signal_fields(machine_type: str) -> set[str]:
    """The signals a machine type's messages carry under their own names (a printer's progress
    goes out as ``progress``)."""
    return ({*machines.get(machine_type).signal_names, *COMMON_SIGNALS}) - {"progress_pct"}


def check_field(topic: str, body: dict[str, Any], field: str, spec: tuple[tuple[type, ...], Any]) -> None:
    types, allowed = spec
    value = body[field]
    assert isinstance(value, types) and not (isinstance(value, bool) and bool not in types), (topic, field, body)
    if allowed is not None and value is not None:
        assert value in allowed, (topic, field, value)


def check_message(topic: str, body: dict[str, Any]) -> None:
    """Every field of the seed's table with its type and values, the documented extras, nothing else."""
    fields = {**SEED_FIELDS.get(topic, {}), **KIND_EXTRAS.get(topic, {})}
    if topic in TOPIC_TYPES:
        fields |= TELEMETRY_EXTRAS
        signals = signal_fields(TOPIC_TYPES[topic])
        assert set(body) == set(fields) | signals, (topic, set(body) ^ (set(fields) | signals))
        assert all(isinstance(body[s], NUMBER + TEXT) and not isinstance(body[s], bool) for s in signals), body
    else:
        fields |= BUSINESS_EXTRAS[topic]
        assert set(body) == set(fields), (topic, set(body) ^ set(fields))
    for field, spec in fields.items():
        check_field(topic, body, field, spec)
        low_high = RANGES.get(field)
        if low_high is not None and body[field] is not None:
            assert low_high[0] <= body[field] <= low_high[1], (topic, field, body[field])
    for item in body.get("items", ()):
        assert {k: type(v) for k, v in item.items()} == ITEM_FIELDS, (topic, item)
        assert RANGES["quantity"][0] <= item["quantity"] <= RANGES["quantity"][1]
    utc_instant(body["timestamp"])


def number_of(name: str) -> int:
    return int(name.rpartition("-")[2])


class Progress:
    """Whether the collector has seen enough: every topic, a few dispatches, and prints with their
    samples from start to end.  It reads each new message once (the service shares the test's loop)."""

    def __init__(self) -> None:
        self.seen = 0
        self.samples: dict[tuple[str, str], int] = defaultdict(int)
        self.whole_prints = 0

    def __call__(self, w: Watch) -> bool:
        bodies = w.bodies["factory/3dprinter"]
        for body in bodies[self.seen:]:
            job = (body["machine_id"], body["part_id"])
            if body["part_id"] is None:
                continue
            if body["progress"] < 1.0:
                self.samples[job] += 1
            elif self.samples.pop(job, 0) >= 10:
                self.whole_prints += 1
        self.seen = len(bodies)
        return w.topics >= WANTED and len(w.bodies["factory/dispatch"]) >= 4 and self.whole_prints >= 3


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory(extra_config=["max_queued_messages 0"])  # a busy collector must not lose messages


async def test_the_spaceship_profile_is_a_drop_in_for_the_earlier_simulator(
        kafka_bootstrap: str, unique: str, broker: Mosquitto) -> None:
    # an hour a second, samples every two minutes (the profile's 5 s would be 20k messages a second
    # here); a short MQTT queue holds simulated time while the broker is behind; an air compressor (a
    # utility) shows the topic of the other kinds
    config: Config = profile_config("spaceship", kafka_bootstrap, unique, broker, **{
        "simulation.speed": 3600, "telemetry.sample_interval_s": 120, "mqtt.targets.0.queue.capacity": 2000,
        "locations.Shipyard.machines.compressor": 1,
        "machine_types.compressor": {"duty": "continuous", "id_code": "AIR"}})
    events = config.kafka.topics.events
    async with MqttCollector(broker.host, broker.port, "factory/#") as collector:
        watch = Watch(collector)
        async with running_service(config) as service, \
                aiohttp.ClientSession(headers=control_headers(service)) as http:
            await watch.until(Progress(), 120, "every topic, dispatches and whole prints")
            await target_health(http, service, "local", "spaceship", broker)
            # stop simulated time and let the target deliver what it holds: the broker then has every record
            async with http.post(f"http://127.0.0.1:{service.http_port}/simulation/pause") as response:
                assert response.status == 200, await response.text()
            publisher = service.mqtt[0]
            await wait_for(lambda: len(publisher) == 0 and publisher.session.in_flight == 0, 60, "the target idle")
        published = service.mqtt[0].messages_published
        events_sent = service.metrics.registry.get_sample_value("factorysim_kafka_records_sent_total",
                                                                {"topic": events})
        assert events_sent
        await watch.until(lambda w: sum(len(m) for m in w.messages.values()) >= published, 20,
                          f"all {published} messages at the collector")
    assert watch.topics == WANTED
    async with Reader(kafka_bootstrap, [events]) as reader:
        collected = await reader.read_until(lambda c: len(c.of(events)) >= events_sent, 30,
                                            f"the {events_sent} lot events on Kafka")
    lot_events = collected.json(events)

    # every message: the seed's fields with their types and values, the documented extras, no other
    for topic, body in watch.all_bodies():
        check_message(topic, body)

    # ids as the earlier simulator named them; each machine's part ids count its cycles
    cycle_numbers: dict[str, list[int]] = defaultdict(list)
    for topic, (machine, station, item) in ID_PATTERNS.items():
        for body in watch.bodies[topic]:
            assert re.fullmatch(machine, body["machine_id"]), body
            assert re.fullmatch(station, body["station_id"]), body
            name = body[ID_FIELD[topic]]
            if name is None:
                assert body["order_id"] is None  # no lot, no part (a welder keeps its last assembly)
                continue
            assert re.fullmatch(item, name), body
            if body["order_id"] is not None and (body.get("quality") is not None or body.get("test_result")):
                cycle_numbers[body["machine_id"]].append(number_of(name))
    assert {m for m in cycle_numbers} >= {"CNC-01", "3DP-01", "WELD-01", "PAINT-01", "TEST-01"}
    for machine, numbers in cycle_numbers.items():
        assert numbers == list(range(1, len(numbers) + 1)), machine  # 1, 2, 3 … in the order of the cycles
    for body in watch.bodies["factory/testing"]:
        if body["target_id"] is not None:
            assert body["target_id"].startswith(config.formats.spaceship.products[body["target_type"]] + "-")
    (compressor,) = {b["machine_id"] for b in watch.bodies[OTHER_TOPIC]}
    assert compressor == "AIR-01"

    # a print's progress rises from 0 to 1 on its samples and its cycle record says 1
    prints: dict[tuple[str, str], list[float]] = defaultdict(list)
    for body in watch.bodies["factory/3dprinter"]:
        if body["part_id"] is None:
            assert body["progress"] == 0.0 and body["status"] != "running"
        else:
            prints[(body["machine_id"], body["part_id"])].append(body["progress"])
    whole = 0
    for job, progress in prints.items():
        assert progress == sorted(progress) and all(0.0 <= p <= 1.0 for p in progress), job
        if progress[-1] == 1.0 and len(progress) >= 10:
            whole += 1
            assert progress[0] < 0.1 and progress[-2] > 0.9, job  # sampled every 2 minutes of a 30-90 minute print
    assert whole >= 3

    # orders and dispatches are the lots Kafka saw arrive and complete
    received = {e["lot_code"]: e for e in lot_events if e["event_type"] == "lot.received"}
    completed = {e["lot_code"]: e for e in lot_events if e["event_type"] == "lot.completed"}
    orders = {b["order_id"]: b for b in watch.bodies["factory/orders"]}
    dispatches = {b["order_id"]: b for b in watch.bodies["factory/dispatch"]}
    assert len(orders) == len(watch.bodies["factory/orders"]) and set(orders) == set(received)
    assert len(dispatches) == len(watch.bodies["factory/dispatch"]) and set(dispatches) == set(completed)
    options = config.formats.spaceship
    destinations: dict[str, set[str]] = defaultdict(set)
    for code, order in orders.items():
        lot = received[code]
        (item,) = order["items"]
        assert item == {"product_type": item["product_type"], "quantity": lot["quantity"]}
        assert item["product_type"] in options.products
        assert (order["customer"], order["quantity"], order["timestamp"]) == (
            lot["customer"], lot["quantity"], lot["timestamp_utc"])
        assert order["priority"] == {"alta": "high", "normale": "normal", "bassa": "low"}[lot["priority"]]
    for code, dispatch in dispatches.items():
        lot = completed[code]
        assert dispatch["items"] == orders[code]["items"]
        assert (dispatch["timestamp"], dispatch["lead_time_s"], dispatch["customer"]) == (
            lot["timestamp_utc"], lot["lead_time_s"], lot["customer"])
        assert dispatch["destination"] in options.destinations and dispatch["carrier"] in options.carriers
        destinations[dispatch["customer"]].add(dispatch["destination"])
    assert all(len(d) == 1 for d in destinations.values())
    assert len({d["dispatch_id"] for d in dispatches.values()}) == len(dispatches)
    # the tested unit is the order's product, and machines work the lots Kafka knows
    for body in watch.bodies["factory/testing"]:
        if body["order_id"] is not None:
            (item,) = orders[body["order_id"]]["items"]
            assert body["target_type"] == item["product_type"]
    on_machines = {b["order_id"] for t in ID_PATTERNS for b in watch.bodies[t] if b["order_id"]}
    assert on_machines <= set(received)
    # every stage judges its parts: machining and printing too (their cycles carry the outcome)
    judged = {e["stage"] for e in lot_events if e["event_type"] == "stage.completed" and e["outcome"]}
    assert judged >= {"machining", "printing", "welding", "painting"}
