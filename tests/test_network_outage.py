"""The ``network_outage`` command against a real Mosquitto and a real Kafka: the seed's command on the
MQTT command topic cuts the target's link for 30 seconds (simulated time runs at wall speed, so
they are both); nothing arrives meanwhile, /health shows it, the records wait, and when it ends
they are backfilled — none lost, each machine's order kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from simulator.formats.coffeemek import CoffeeMekFormat

from harness.collector import MqttCollector, publish
from harness.delivered import Delivered, published_ids
from harness.mosquitto import Mosquitto
from harness.service import Reader, control_headers, running_service, service_config, wait_for

OUTAGE_S = 30.0


async def test_a_30_second_network_outage_loses_nothing_and_backfills_in_order(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str,
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(extra_config=["max_queued_messages 0"])
    command_topic = f"v1/{unique}/cmd"
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "simulation.speed": 1, "telemetry.sample_interval_s": 1,
        "mqtt.targets": [{"name": "cloud", "host": broker.host, "port": broker.port, "qos": 1,
                          "availability_topic": None, "command_topic": command_topic,
                          "reconnect": {"initial_s": 0.05, "max_s": 0.2}}]})
    fmt = CoffeeMekFormat(config, config.simulation.seed)
    topics = [config.kafka.topics.events, *fmt.cycle_topics.values(), *fmt.sample_topics.values()]
    data_topics = {t.replace(".", "/") for t in topics}  # the MQTT topics of the coffeemek format

    def arrived() -> int:
        return sum(m.topic in data_topics for m in collector.messages)

    async with MqttCollector(broker.host, broker.port, "#") as collector, running_service(config) as service:
        target = service.targets[0]
        await wait_for(lambda: arrived() >= 100, 30, "samples arriving")
        await asyncio.to_thread(broker.wait_for_log, f"{target.session.client_id} 1 {command_topic}")
        await asyncio.to_thread(publish, broker, command_topic,
                                orjson.dumps({"cmd": "network_outage", "value": True, "duration_s": OUTAGE_S}))
        await wait_for(lambda: target.outage.active, 10, "the outage to begin")
        began = time.monotonic()
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
            health = await response.json()
        (view,) = health["mqtt"]["targets"]
        assert view["outage"]["active"] is True and view["outage"]["reason"] == "command"
        assert health["delivery"]["network_outage"] == {"cloud": "command"}
        assert view["connected"] is True  # the link is cut on purpose: the connection itself stays up
        at_start = arrived()
        await wait_for(lambda: len(target) >= 500, OUTAGE_S, "records waiting during the outage")
        during = arrived() - at_start
        assert during <= target.batch_limit, during  # at most what was handed to the session as it began
        peak = [0]  # the most records waiting at once

        def ended() -> bool:
            peak[0] = max(peak[0], len(target))
            return not target.outage.active
        await wait_for(ended, OUTAGE_S + 10, "the outage to end by itself")
        ended_at = time.monotonic()
        assert ended_at - began >= OUTAGE_S - 1
        await wait_for(lambda: arrived() - at_start - during >= peak[0], 30, "the backfill")
        backfill_s = time.monotonic() - ended_at
        async with aiohttp.ClientSession(headers=control_headers(service)) as http, \
                http.post(f"http://127.0.0.1:{service.http_port}/simulation/pause") as response:
            assert response.status == 200, await response.text()
        await wait_for(lambda: len(service.outbox) == 0 and service.publisher is not None
                       and service.publisher.in_flight == 0 and len(target) == 0 and target.in_flight == 0, 30,
                       "everything delivered to Kafka and MQTT")
        async with Reader(kafka_bootstrap, topics) as reader:
            collected = await reader.read_all()
        on_kafka = published_ids(body for topic in topics for body in collected.json(topic))
        await wait_for(lambda: len({m.payload for m in collector.messages if m.topic in data_topics})
                       >= len(on_kafka), 30, "every record on MQTT")
    delivered = Delivered([m.payload for m in collector.messages if m.topic in data_topics])
    assert delivered.ids == on_kafka
    assert delivered.out_of_order() == []
    assert delivered.duplicates == 0
    assert peak[0] >= 500 and backfill_s < 20, (peak[0], backfill_s)
