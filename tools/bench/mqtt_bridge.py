"""MQTT bridge throughput: the standalone bridge (`factorysim bridge`: Kafka consumer, coffeemek
decode, MQTT encode, QoS 1 publish, offsets committed after the acknowledgements) moving telemetry
from the embedded Kafka broker to a local Mosquitto, vs the raw MQTT client library (gmqtt)
publishing payloads of the same mean size with the same in-flight window.

The Kafka topics are filled with the reference plant's telemetry before timing; the bridge's
figure runs from its first MQTT publish (the consumer group join is left out) to the last
acknowledgement.  Prints a table and returns the figures; `run_all.py` writes them into
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import statistics
import time
import uuid
from typing import Any

from bench_common import Broker, local_mosquitto
from mqtt_clients import Case, run_gmqtt
from telemetry_pipeline import bench_config, generate, started_producer, topics_of

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.config.loader import parse
from simulator.formats import WireMessage
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.programs.bridge import Bridge

WINDOW = 1000  # the MQTT target's default max_in_flight
MOSQUITTO = ["max_inflight_messages 0", "max_queued_messages 0"]


async def fill_kafka(servers: str, tag: str, count: int) -> tuple[list[WireMessage], Any]:
    """``count`` telemetry messages of the reference plant on fresh topics ``<tag>.*``."""
    cfg = bench_config(60.0, tag)
    fmt = CoffeeMekFormat(cfg, cfg.simulation.seed)
    messages = [m for record in generate(cfg, count) for m in fmt.encode(record)][:count]
    producer = await started_producer(cfg, servers, topics_of(fmt))
    try:
        futures = [await producer.send(m.topic, m.value, key=m.key, headers=list(m.headers)) for m in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return messages, cfg


async def run_bridge(servers: str, mqtt: Broker, count: int) -> float:
    """Messages per second acknowledged by Mosquitto through the bridge."""
    _, cfg = await fill_kafka(servers, f"bench-{uuid.uuid4().hex[:8]}", count)
    gc.collect()
    gc.freeze()  # what the benchmark built beforehand stays out of the bridge's garbage collections
    try:
        return await bridge_rate(cfg, servers, mqtt, count)
    finally:
        gc.unfreeze()


async def bridge_rate(cfg: Any, servers: str, mqtt: Broker, count: int, **target: Any) -> float:
    """The bridge over the filled topics of ``cfg``: messages per second acknowledged by Mosquitto
    (``target``: more options of its MQTT target, e.g. a spool)."""
    tag = cfg.kafka.topics.orders.split(".")[0]
    data = copy.deepcopy(cfg.model_dump(mode="json", exclude_none=True))
    data["kafka"]["bootstrap_servers"] = servers
    data["kafka"]["consumer"] = {"group_id": f"{tag}-group", "session_timeout_ms": 6000}
    data["mqtt"] = {"targets": [{"name": "bench", "host": mqtt.host, "port": mqtt.port, "qos": 1,
                                 "format": "coffeemek", "max_in_flight": WINDOW, "availability_topic": None,
                                 "queue": {"capacity": 20_000, "overflow": "block"}, **target}],
                    "bridge": {"group_id": f"{tag}-bridge", "http_port": 0}}
    bridge = Bridge(parse(data, environ={}))
    task = asyncio.create_task(bridge.run())
    try:
        publisher = bridge.publishers[0]
        while publisher.messages_published == 0:  # the group join is not part of the figure
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        while publisher.messages_acknowledged < count:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        return count / (time.perf_counter() - started)
    finally:
        bridge.request_stop()
        await asyncio.wait_for(task, 30)


async def _measure(count: int, repeats: int) -> dict[str, Any]:
    bridge_rates, raw_rates = [], []
    with local_mosquitto(MOSQUITTO) as mqtt:
        async with EmbeddedBroker() as kafka:
            sample, _ = await fill_kafka(kafka.bootstrap_servers, f"bench-size-{uuid.uuid4().hex[:6]}", 2000)
            size = round(statistics.mean(len(m.value) for m in sample))
            payload = (b'{"machine":"cnc-01","value":' + b"7" * size)[:size]
            for run in range(repeats):  # interleaved: the machine is noisy
                case = Case(mqtt, count, payload, WINDOW, "5", f"bench/raw/{run}")
                raw_rates.append(count / await run_gmqtt(case))
                bridge_rates.append(await run_bridge(kafka.bootstrap_servers, mqtt, count))
    result: dict[str, Any] = {"bridge_msgs_s": statistics.median(bridge_rates),
                              "raw_gmqtt_msgs_s": statistics.median(raw_rates), "payload_bytes": size,
                              "runs_bridge": bridge_rates, "runs_raw": raw_rates, "mosquitto": mqtt.version}
    result["ratio"] = result["bridge_msgs_s"] / result["raw_gmqtt_msgs_s"]
    return result


def measure(count: int = 30_000, repeats: int = 3) -> dict[str, Any]:
    return asyncio.run(_measure(count, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.messages, args.repeats)
    print(f"{'MQTT bridge, QoS 1':<36}{'msg/s':>12}")
    print(f"{'raw gmqtt (baseline)':<36}{result['raw_gmqtt_msgs_s']:>12,.0f}")
    print(f"{'factorysim bridge (Kafka -> MQTT)':<36}{result['bridge_msgs_s']:>12,.0f}")
    print(f"{'ratio':<36}{result['ratio']:>12.2f}")
    print(f"{'goal: >= 20,000 msg/s':<36}{'met' if result['bridge_msgs_s'] >= 20_000 else 'NOT MET':>12}")


if __name__ == "__main__":
    main()
