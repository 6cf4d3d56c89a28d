"""Edge delivery throughput: the durable spool and the HTTP sink.

- **Spool on vs off** (goal: on ≥ 0.7× off): the standalone bridge moving the reference plant's
  telemetry from the embedded Kafka broker to a local Mosquitto at QoS 1 (as `mqtt_bridge.py`), its
  target with the memory queue, with the spool (`fsync: false`), and with the spool and `fsync: true`,
  interleaved; messages per second acknowledged, from the first publish to the last PUBACK.
- **HTTP sink**: the same bridge with one HTTP sink instead (JSON arrays of 500 records) POSTing to
  a minimal aiohttp server in another process that answers 200 at once; records per second
  answered, next to the MQTT target's figure (the same bridge) and to the same request bodies
  POSTed one after another by a bare aiohttp client (the HTTP layer alone).

Prints a table and returns the figures; `run_all.py` writes them into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from bench_common import local_mosquitto
from mqtt_bridge import MOSQUITTO, bridge_rate, fill_kafka

from simulator.adapters.delivery.http_wire import request_bodies
from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.config.http_sinks import HttpSink
from simulator.config.loader import parse
from simulator.net import free_port
from simulator.programs.bridge import Bridge

BATCH = 500
RECEIVER = textwrap.dedent("""
    import sys
    from aiohttp import web

    async def ok(request):
        await request.read()
        return web.Response(status=200)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/ingest", ok)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
""")


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """A minimal HTTP API in its own process: its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the HTTP receiver did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def sink_rate(cfg: Any, servers: str, url: str, count: int) -> float:
    """The bridge with one HTTP sink over the filled topics of ``cfg``: records per second answered."""
    tag = cfg.kafka.topics.orders.split(".")[0]
    data = copy.deepcopy(cfg.model_dump(mode="json", exclude_none=True))
    data["kafka"]["bootstrap_servers"] = servers
    data["kafka"]["consumer"] = {"group_id": f"{tag}-group", "session_timeout_ms": 6000}
    data["mqtt"] = {"targets": [], "bridge": {"group_id": f"{tag}-http", "http_port": 0}}
    data["environment"] = {}  # the reference plant's ENABLE_API names its own sink
    data["http_sinks"] = [{"name": "bench", "url": url, "path": "/ingest", "format": "coffeemek",
                           "body": "json-array", "batch": {"max_records": BATCH, "linger_ms": 5},
                           "queue": {"capacity": 20_000, "overflow": "block"}}]
    bridge = Bridge(parse(data, environ={}))
    task = asyncio.create_task(bridge.run())
    try:
        sink = bridge.http_sinks[0]
        while sink.http.requests == 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        while sink.http.records_sent < count:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        return count / (time.perf_counter() - started)
    finally:
        bridge.request_stop()
        await asyncio.wait_for(task, 30)


async def raw_rate(messages: list[Any], url: str) -> float:
    """The same bodies POSTed one after another by a bare aiohttp client: records per second."""
    sink = HttpSink(name="raw", url=url, path="/ingest", batch={"max_records": BATCH})  # type: ignore[arg-type]
    bodies = request_bodies(messages, sink)
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        for _, body in bodies:
            async with http.post(sink.endpoint, data=body, headers={"Content-Type": "application/json"}) as answer:
                await answer.read()
        return len(messages) / (time.perf_counter() - started)


async def _measure(count: int, repeats: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"off": [], "spool": [], "spool_fsync": [], "http": [], "raw_http": []}
    with local_mosquitto(MOSQUITTO) as mqtt, receiver() as url, tempfile.TemporaryDirectory() as directory:
        async with EmbeddedBroker() as kafka:
            servers = kafka.bootstrap_servers
            for run in range(repeats):  # interleaved: the machine is noisy
                for case in ("off", "spool", "spool_fsync"):
                    messages, cfg = await fill_kafka(servers, f"bench-{uuid.uuid4().hex[:8]}", count)
                    spool = {} if case == "off" else {"spool": {
                        "path": str(Path(directory) / f"{case}-{run}.sqlite3"), "fsync": case == "spool_fsync"}}
                    gc.collect()
                    gc.freeze()
                    try:
                        rates[case].append(await bridge_rate(cfg, servers, mqtt, count, **spool))
                    finally:
                        gc.unfreeze()
                messages, cfg = await fill_kafka(servers, f"bench-{uuid.uuid4().hex[:8]}", count)
                rates["http"].append(await sink_rate(cfg, servers, url, count))
                rates["raw_http"].append(await raw_rate(messages, url))
    result: dict[str, Any] = {name: statistics.median(values) for name, values in rates.items()}
    result["runs"] = rates
    result["ratio_spool"] = result["spool"] / result["off"]
    result["ratio_fsync"] = result["spool_fsync"] / result["off"]
    result["ratio_http"] = result["http"] / result["off"]  # the same bridge, another kind of target
    return result


def measure(count: int = 30_000, repeats: int = 3) -> dict[str, Any]:
    return asyncio.run(_measure(count, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = measure(args.messages, args.repeats)
    print(f"{'edge delivery':<44}{'per s':>12}")
    print(f"{'bridge -> MQTT QoS 1, memory queue':<44}{r['off']:>12,.0f}")
    print(f"{'bridge -> MQTT QoS 1, spool':<44}{r['spool']:>12,.0f}  ({r['ratio_spool']:.2f}x; goal >= 0.7)")
    print(f"{'bridge -> MQTT QoS 1, spool with fsync':<44}{r['spool_fsync']:>12,.0f}  ({r['ratio_fsync']:.2f}x)")
    print(f"{'bridge -> HTTP sink, records':<44}{r['http']:>12,.0f}  ({r['ratio_http']:.2f}x the MQTT target)")
    print(f"{'raw aiohttp POSTs of the same bodies':<44}{r['raw_http']:>12,.0f}")


if __name__ == "__main__":
    main()
