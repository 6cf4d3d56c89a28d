"""The durable spool of an MQTT target, in real processes with a real Mosquitto and a real Kafka: the
broker is down while the service produces thousands of records, the service is killed with SIGKILL
and started again, then the broker comes back — and every record the service published on Kafka
arrives on MQTT, in each machine's order, with the duplicates counted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.net import free_port

from harness.collector import MqttCollector
from harness.delivered import Delivered, published_ids
from harness.mosquitto import Mosquitto
from harness.service import Reader, orders, produce, service_config
from harness.service import service_process as service

START_TIMEOUT_S = 60.0
FINAL = {"lot.completed", "lot.scrapped"}


async def health_of(port: int) -> dict[str, Any] | None:
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
            body: dict[str, Any] = await response.json()
            return body
    return None


async def until_health(port: int, process: subprocess.Popen[bytes], log: Path,
                       condition: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = START_TIMEOUT_S,
                       ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        health = await health_of(port)
        if health is not None and condition(health):
            return health
        if process.poll() is not None or time.monotonic() > deadline:
            output = await asyncio.to_thread(log.read_text)
            target = health["mqtt"]["targets"] if health else None
            raise AssertionError(f"timed out waiting for {what} ({process.poll()}); target {target}\n"
                                 f"{output[-4000:]}")
        await asyncio.sleep(0.1)


def live(health: dict[str, Any]) -> bool:
    """Running, and done with recovering its run (a new run recovers nothing)."""
    recovery = health["run"]["recovery"]
    return health["state"] == "running" and (recovery is None or recovery["done"] is True)


def spool_of(health: dict[str, Any]) -> dict[str, Any]:
    spool: dict[str, Any] = health["mqtt"]["targets"][0]["spool"]
    return spool


async def test_a_broker_outage_and_a_sigkill_lose_no_spooled_record(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path,
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(persistent=True, extra_config=["max_queued_messages 0"])
    port = free_port()
    config = service_config(default_yaml, kafka_bootstrap, unique)
    data = config.model_dump(mode="json", exclude_none=True)
    data["http"]["port"] = port
    data["mqtt"] = {"targets": [{
        "name": "edge", "host": broker.host, "port": broker.port, "qos": 1, "format": "coffeemek",
        "reconnect": {"initial_s": 0.1, "max_s": 0.5}, "availability_topic": None,
        "spool": {"path": str(tmp_path / "spool" / "{name}.sqlite3")}}]}
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    fmt = CoffeeMekFormat(config, config.simulation.seed)
    topics = [config.kafka.topics.events, *fmt.cycle_topics.values()]
    log = tmp_path / "service.log"
    first_lots, later_lots = 330, 30  # about 20 records a lot
    batch = orders(first_lots + later_lots, unique, seed=3)

    async with MqttCollector(broker.host, broker.port, "#", persistent=True) as collector:
        await broker.astop()  # the collector's session stays on the broker's disk
        await produce(kafka_bootstrap, config.kafka.topics.orders, batch[:first_lots])
        with service(path, log) as first:
            health = await until_health(port, first, log, lambda h: live(h) and spool_of(h)["messages"] >= 5_000,
                                        "5,000 records in the spool while the broker is down")
            assert health["mqtt"]["targets"][0]["connected"] is False
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 10)
        with service(path, log) as second:
            health = await until_health(port, second, log, live, "the restarted service live")
            assert spool_of(health)["recovered"] >= 5_000, spool_of(health)
            await produce(kafka_bootstrap, config.kafka.topics.orders, batch[first_lots:])
            await broker.astart()
            async with Reader(kafka_bootstrap, topics) as reader:
                collected = await reader.read_until(
                    lambda c: len({e["lot_code"] for e in c.json(config.kafka.topics.events)
                                   if e["event_type"] in FINAL}) == first_lots + later_lots,
                    120, "every lot finished (a restart publishes again what came after its checkpoint)")
            health = await until_health(
                port, second, log,
                lambda h: h["simulation"]["outbox_depth"] == 0 and h["kafka"]["records_in_flight"] == 0
                and spool_of(h)["messages"] == 0 and h["mqtt"]["targets"][0]["in_flight"] == 0,
                "Kafka and the spool delivered", 120)
            async with Reader(kafka_bootstrap, topics) as reader:
                collected = await reader.read_all()
            on_kafka = published_ids(body for topic in topics for body in collected.json(topic))
            data_topics = {t.replace(".", "/") for t in topics}  # the MQTT topics of the coffeemek format
            await collector.wait_for(
                lambda messages: len({m.payload for m in messages if m.topic in data_topics}) >= len(on_kafka),
                60, "every record on MQTT")
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 30)
    delivered = Delivered([m.payload for m in collector.messages if m.topic in data_topics])
    assert delivered.ids == on_kafka, (len(delivered.ids - on_kafka), len(on_kafka - delivered.ids))
    assert delivered.out_of_order() == []
    # QoS 1 is at least once: copies come only from messages in flight when a connection drops; the broker
    # was down before the service first connected and never dropped afterwards, so there are none
    assert delivered.duplicates == 0, delivered.duplicates
