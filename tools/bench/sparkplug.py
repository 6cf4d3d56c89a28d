"""Sparkplug B through the bridge: the standalone bridge moving the reference plant's telemetry from
the embedded Kafka broker to a local Mosquitto at QoS 1 with a ``sparkplug`` target (decode the
coffeemek record, make the device's metrics, report by exception, number and publish the DDATA)
vs the same bridge with a ``coffeemek`` target (the Kafka message passed through unchanged) and
with an ``enms`` target (decoded and re-encoded as JSON, as any format but coffeemek is), in the
same run, interleaved, on freshly filled topics of the same content.

Figures: records per second done (their DDATA acknowledged by Mosquitto, or found unchanged; a lot
event about no machine makes no Sparkplug message),
from the first publish to the last acknowledgement (as ``mqtt_bridge.py``), and the DDATA
messages per second among them.  Prints a table and returns the figures; ``run_all.py`` writes
them into BENCHMARKS.md.
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

import orjson
from bench_common import Broker, local_mosquitto
from mqtt_bridge import MOSQUITTO, WINDOW, bridge_rate, fill_kafka

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.config.loader import parse
from simulator.formats import WireMessage
from simulator.formats.coffeemek_decode import decode_record
from simulator.formats.registry import build_format
from simulator.programs.bridge import Bridge


def with_device(messages: list[WireMessage], events_topic: str) -> int:
    """How many of the filled messages are about a machine (a lot event about no machine, such as
    ``lot.received``, makes no Sparkplug message: it is done at once, never acknowledged)."""
    return sum(1 for m in messages if m.topic != events_topic or orjson.loads(m.value).get("machine_id"))


async def sparkplug_rate(cfg: Any, servers: str, mqtt: Broker, count: int, messages: list[WireMessage],
                         ) -> tuple[float, float]:
    """The bridge with one sparkplug target over the filled topics of ``cfg``: (records/s, DDATA/s)."""
    expected = with_device(messages, cfg.kafka.topics.events)
    tag = cfg.kafka.topics.orders.split(".")[0]
    data = copy.deepcopy(cfg.model_dump(mode="json", exclude_none=True))
    data["kafka"]["bootstrap_servers"] = servers
    data["kafka"]["consumer"] = {"group_id": f"{tag}-group", "session_timeout_ms": 6000}
    data["mqtt"] = {"targets": [{"name": "bench", "host": mqtt.host, "port": mqtt.port, "qos": 1,
                                 "format": "sparkplug", "max_in_flight": WINDOW,
                                 "queue": {"capacity": 20_000, "overflow": "block"}}],
                    "bridge": {"group_id": f"{tag}-bridge", "http_port": 0}}
    data.setdefault("formats", {})["sparkplug"] = {"group_id": tag}
    bridge = Bridge(parse(data, environ={}))
    task = asyncio.create_task(bridge.run())
    try:
        publisher = bridge.mqtt[0]
        node = publisher.sparkplug
        assert node is not None
        while node.data_published == 0:  # the group join and the births are not part of the figure
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        started, first = time.perf_counter(), node.data_published
        while publisher.messages_acknowledged < expected:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        return count / elapsed, (node.data_published - first) / elapsed
    finally:
        bridge.request_stop()
        await asyncio.wait_for(task, 30)


async def enms_rate(cfg: Any, servers: str, mqtt: Broker, count: int, messages: list[WireMessage]) -> float:
    """The bridge with one enms target: records per second done (each record's messages acknowledged)."""
    fmt = build_format("enms", cfg, cfg.simulation.seed)
    published = sum(len(fmt.encode(decode_record(m.topic, m.value))) for m in messages)
    tag = cfg.kafka.topics.orders.split(".")[0]
    data = copy.deepcopy(cfg.model_dump(mode="json", exclude_none=True))
    data["kafka"]["bootstrap_servers"] = servers
    data["kafka"]["consumer"] = {"group_id": f"{tag}-group", "session_timeout_ms": 6000}
    data["mqtt"] = {"targets": [{"name": "bench", "host": mqtt.host, "port": mqtt.port, "qos": 1, "format": "enms",
                                 "max_in_flight": WINDOW, "availability_topic": None,
                                 "queue": {"capacity": 20_000, "overflow": "block"}}],
                    "bridge": {"group_id": f"{tag}-bridge", "http_port": 0}}
    bridge = Bridge(parse(data, environ={}))
    task = asyncio.create_task(bridge.run())
    try:
        publisher = bridge.mqtt[0]
        while publisher.messages_published == 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        while publisher.messages_acknowledged < published:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        return count / (time.perf_counter() - started)
    finally:
        bridge.request_stop()
        await asyncio.wait_for(task, 30)


async def _measure(count: int, repeats: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"coffeemek": [], "enms": [], "sparkplug": [], "ddata": []}
    with local_mosquitto(MOSQUITTO) as mqtt:
        async with EmbeddedBroker() as kafka:
            servers = kafka.bootstrap_servers
            for _ in range(repeats):  # interleaved: the machine is noisy
                for case in ("coffeemek", "enms", "sparkplug"):
                    messages, cfg = await fill_kafka(servers, f"bench-{uuid.uuid4().hex[:8]}", count)
                    gc.collect()
                    gc.freeze()
                    try:
                        if case == "coffeemek":
                            rates[case].append(await bridge_rate(cfg, servers, mqtt, count))
                        elif case == "enms":  # a sample gives four messages, a cycle one or two
                            rates[case].append(await enms_rate(cfg, servers, mqtt, count, messages))
                        else:
                            records, ddata = await sparkplug_rate(cfg, servers, mqtt, count, messages)
                            rates[case].append(records)
                            rates["ddata"].append(ddata)
                    finally:
                        gc.unfreeze()
    result: dict[str, Any] = {name: statistics.median(values) for name, values in rates.items()}
    result["runs"] = rates
    result["ratio"] = result["sparkplug"] / result["coffeemek"]
    result["ratio_enms"] = result["sparkplug"] / result["enms"]
    result["mosquitto"] = mqtt.version
    return result


def measure(count: int = 30_000, repeats: int = 3) -> dict[str, Any]:
    return asyncio.run(_measure(count, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = measure(args.messages, args.repeats)
    print(f"{'bridge -> Mosquitto, QoS 1':<40}{'per s':>12}")
    print(f"{'coffeemek pass-through (records)':<40}{r['coffeemek']:>12,.0f}")
    print(f"{'enms re-encoded (records)':<40}{r['enms']:>12,.0f}")
    print(f"{'sparkplug (records)':<40}{r['sparkplug']:>12,.0f}")
    print(f"{'sparkplug (DDATA messages)':<40}{r['ddata']:>12,.0f}")
    print(f"{'ratio sparkplug / coffeemek':<40}{r['ratio']:>12.2f}")
    print(f"{'ratio sparkplug / enms':<40}{r['ratio_enms']:>12.2f}")


if __name__ == "__main__":
    main()
