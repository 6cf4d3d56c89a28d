"""Sparkplug B through the bridge: the standalone bridge moving the reference plant's telemetry from
the embedded Kafka broker to a local Mosquitto at QoS 1 with a ``sparkplug`` target (decode the
coffeemek record, make the device's metrics, report by exception, number and publish the DDATA)
vs the same bridge with a ``coffeemek`` target (the Kafka message passed through unchanged), in
the same run, interleaved, on freshly filled topics of the same content.

Figures: records per second done (their DDATA acknowledged by Mosquitto, or found unchanged),
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

from bench_common import Broker, local_mosquitto
from mqtt_bridge import MOSQUITTO, WINDOW, bridge_rate, fill_kafka

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.config.loader import parse
from simulator.programs.bridge import Bridge


async def sparkplug_rate(cfg: Any, servers: str, mqtt: Broker, count: int) -> tuple[float, float]:
    """The bridge with one sparkplug target over the filled topics of ``cfg``: (records/s, DDATA/s)."""
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
        while publisher.messages_acknowledged < count:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        return count / elapsed, (node.data_published - first) / elapsed
    finally:
        bridge.request_stop()
        await asyncio.wait_for(task, 30)


async def _measure(count: int, repeats: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"coffeemek": [], "sparkplug": [], "ddata": []}
    with local_mosquitto(MOSQUITTO) as mqtt:
        async with EmbeddedBroker() as kafka:
            servers = kafka.bootstrap_servers
            for _ in range(repeats):  # interleaved: the machine is noisy
                for case in ("coffeemek", "sparkplug"):
                    _, cfg = await fill_kafka(servers, f"bench-{uuid.uuid4().hex[:8]}", count)
                    gc.collect()
                    gc.freeze()
                    try:
                        if case == "coffeemek":
                            rates[case].append(await bridge_rate(cfg, servers, mqtt, count))
                        else:
                            records, ddata = await sparkplug_rate(cfg, servers, mqtt, count)
                            rates[case].append(records)
                            rates["ddata"].append(ddata)
                    finally:
                        gc.unfreeze()
    result: dict[str, Any] = {name: statistics.median(values) for name, values in rates.items()}
    result["runs"] = rates
    result["ratio"] = result["sparkplug"] / result["coffeemek"]
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
    print(f"{'sparkplug (records)':<40}{r['sparkplug']:>12,.0f}")
    print(f"{'sparkplug (DDATA messages)':<40}{r['ddata']:>12,.0f}")
    print(f"{'ratio sparkplug / coffeemek':<40}{r['ratio']:>12.2f}")


if __name__ == "__main__":
    main()
