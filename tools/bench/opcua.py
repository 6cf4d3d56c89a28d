"""The OPC UA server under load: 1,000 machines sampling at 1 Hz, and what the server costs the model.

The plant is ``paced_lag.py``'s: config.yaml with every pool scaled to 1,000 machines, every machine
sampling at 1 Hz, orders arriving faster than the first stage takes them, 4 simulated hours of
warm-up with samples off.  Records go through the real ``Outbox`` (drained and dropped: no Kafka, so
that only the OPC UA server's cost is measured) and the real ``OpcUaServer`` (its outbox tap, its
address space of every machine, its batched writer) on a loopback port.

1. Paced (speed 1, ``DURATION_S`` wall seconds): values written to the address space per second
   (the server's own counter), and data change notifications per second that an asyncua client in
   another process receives from one subscription (publishing interval 250 ms) on every machine's
   ``State``, ``SimulatedTime`` and ``power_kw`` (3,000 monitored items); the driver's largest lag
   behind schedule.
2. Speed max, the same plant, server off and on in the same run (alternating, ``REPEATS`` each,
   medians): records emitted per wall second and simulated seconds per wall second; the ratio on/off
   is what the server costs the model when the model runs as fast as it can.

``python tools/bench/opcua.py [--machines N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine
from paced_lag import benchmark_configs, build_plant

from simulator.config.opcua import OpcUa
from simulator.config.schema import Config
from simulator.net import free_port
from simulator.runtime.driver import Driver
from simulator.runtime.gc_tuning import fewer_young_collections
from simulator.runtime.outbox import Outbox

DURATION_S = 20.0
MAX_SPEED_S = 8.0  # wall seconds per speed-max run
REPEATS = 3
SUBSCRIBED = ("State", "SimulatedTime", "Signals.power_kw")
NAMESPACE = "urn:factorysim:bench"


async def _drain(outbox: Outbox) -> int:
    taken = 0
    while batch := await outbox.get_batch(5000):
        taken += len(batch)
    return taken


async def _server(cfg: Config) -> Any:
    from simulator.adapters.opcua.server import OpcUaServer

    server = OpcUaServer(OpcUa(enabled=True, host="127.0.0.1", port=free_port(), namespace_uri=NAMESPACE),
                         cfg.machine_slots, cfg.model_of, lambda: None, environ={})
    await server.start()
    return server


def _client(url: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--client", url, "--seconds", str(seconds)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def _loop_lag(lags: list[float]) -> None:
    """How late the event loop wakes a 10 ms timer: what the server's batches make others wait."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        lags.append(loop.time() - due)


async def paced(cfg: Config, warm: Config, seconds: float, server: Any) -> dict[str, float]:
    outbox = Outbox(20_000)
    sim = build_plant(cfg, warm, outbox)
    outbox.add_tap(server.latest)
    writer = asyncio.create_task(server.run())
    client = _client(server.endpoint, seconds)
    assert client.stdin is not None
    assert client.stdout is not None
    client.stdin.write("\n".join(sim.plant.machines) + "\n")
    client.stdin.close()
    ready = await asyncio.to_thread(client.stdout.readline)  # subscribed
    assert ready.strip() == "subscribed", ready
    driver = Driver(sim, speed=1.0, outbox=outbox)
    drain = asyncio.create_task(_drain(outbox))
    lags: list[float] = []
    gc.collect()
    try:
        with fewer_young_collections():
            monitor = asyncio.create_task(_loop_lag(lags))
            written, emitted = server.values_written, outbox.total
            wall, cpu = time.monotonic(), time.process_time()
            await driver.run(wall_timeout_s=seconds)
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            written, emitted = server.values_written - written, outbox.total - emitted
            monitor.cancel()
        result = json.loads(await asyncio.to_thread(client.stdout.read))
    finally:
        outbox.close()
        await drain
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        client.wait(30)
    return {"machines": len(sim.plant.machines), "build_s": server.build_s,
            "loop_lag_p99_ms": 1000 * statistics.quantiles(lags, n=100)[98], "loop_lag_max_ms": 1000 * max(lags),
            "values_written_s": written / wall, "records_s": emitted / wall,
            "notifications_s": result["notifications_s"], "responses_s": result["responses_s"],
            "notifications_min_s": min(result["per_second"][1:]),  # (the first second: before the first samples)
            "connection_lost": result["lost"],
            "monitored_items": result["items"], "driver_max_lag_s": driver.max_lag_s, "cpu_share": cpu / wall}


async def max_speed(cfg: Config, warm: Config, seconds: float, server: Any | None) -> dict[str, float]:
    """``server``: the server (built once; its tap reads this run's records), or None: off."""
    outbox = Outbox(20_000)
    sim = build_plant(cfg, warm, outbox)
    writer = None
    written = server.values_written if server is not None else 0
    if server is not None:
        server._written.clear()  # as a fresh server: every run replays the same plant, the same values
        outbox.add_tap(server.latest)
        writer = asyncio.create_task(server.run())
    driver = Driver(sim, speed=None, outbox=outbox)
    drain = asyncio.create_task(_drain(outbox))
    gc.collect()
    try:
        with fewer_young_collections():
            sim_start, emitted = sim.now, outbox.total
            wall = time.monotonic()
            await driver.run(wall_timeout_s=seconds)
            wall = time.monotonic() - wall
            sim_s, emitted = sim.now - sim_start, outbox.total - emitted
    finally:
        outbox.close()
        await drain
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
    return {"records_s": emitted / wall, "sim_s_per_s": sim_s / wall,
            "values_written_s": ((server.values_written - written) / wall) if server is not None else 0.0}


async def _measure(machines: int, seconds: float) -> dict[str, Any]:
    cfg, warm = benchmark_configs(machines, 1.0)
    server = await _server(cfg)
    try:
        result: dict[str, Any] = await paced(cfg, warm, seconds, server)
        off: list[dict[str, float]] = []
        on: list[dict[str, float]] = []
        for _ in range(REPEATS):
            off.append(await max_speed(cfg, warm, MAX_SPEED_S, None))
            on.append(await max_speed(cfg, warm, MAX_SPEED_S, server))
    finally:
        await server.stop()
    median = statistics.median
    result.update({
        "max_records_s_off": median(r["records_s"] for r in off),
        "max_records_s_on": median(r["records_s"] for r in on),
        "max_sim_s_per_s_off": median(r["sim_s_per_s"] for r in off),
        "max_sim_s_per_s_on": median(r["sim_s_per_s"] for r in on),
        "max_values_written_s": median(r["values_written_s"] for r in on)})
    result["ratio"] = result["max_records_s_on"] / result["max_records_s_off"]
    result["ratios"] = [a["records_s"] / b["records_s"] for a, b in zip(on, off, strict=True)]
    return result


def measure(machines: int = 1000, seconds: float = DURATION_S) -> dict[str, Any]:
    return asyncio.run(_measure(machines, seconds))


# -- the client (another process) ------------------------------------------------------------------
class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.responses = 0  # publish responses with data changes (bursts of notifications)
        self.lost = False
        self._last = 0.0

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last > 0.02:
            self.responses += 1
        self._last = now

    def status_change_notification(self, status: Any) -> None:
        self.lost = True  # the connection was lost (the client's watchdog got no answer within a second)


async def _run_client(url: str, seconds: float) -> None:
    import logging

    from asyncua import Client, ua

    logging.getLogger("asyncua").setLevel(logging.CRITICAL)  # its publish loop complains when the server stops

    machine_ids = [line.strip() for line in sys.stdin if line.strip()]
    async with Client(url, timeout=60) as client:
        ns = await client.get_namespace_index(NAMESPACE)
        counter = _Counter()
        subscription = await client.create_subscription(250, counter)
        nodes = [client.get_node(ua.NodeId(f"{mid}.{name}", ns)) for mid in machine_ids for name in SUBSCRIBED]
        for i in range(0, len(nodes), 500):
            await subscription.subscribe_data_change(nodes[i:i + 500], queuesize=1)
        await asyncio.sleep(1.0)  # the initial values
        print("subscribed", flush=True)
        start, responses = counter.count, counter.responses
        timeline = []
        for _ in range(int(seconds)):
            before = counter.count
            await asyncio.sleep(1.0)
            timeline.append(counter.count - before)
        lost = counter.lost  # (a status change at the disconnect below does not count)
        rate = (counter.count - start) / seconds
        per_s = (counter.responses - responses) / seconds
    print(json.dumps({"notifications_s": rate, "responses_s": per_s, "items": len(nodes), "per_second": timeline,
                      "lost": lost}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=DURATION_S)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(_run_client(args.client, args.seconds))
        return
    print(machine())
    r = measure(args.machines, args.seconds)
    print(f"{r['machines']:,} machines sampling at 1 Hz, address space built in {r['build_s']:.1f} s")
    print(f"paced: {r['values_written_s']:,.0f} values written/s, {r['notifications_s']:,.0f} notifications/s "
          f"(slowest second {r['notifications_min_s']:,}) on {r['monitored_items']:,} monitored items in "
          f"{r['responses_s']:.1f} publish responses/s{', CONNECTION LOST' if r['connection_lost'] else ''}, "
          f"{r['records_s']:,.0f} records/s, driver max lag {r['driver_max_lag_s'] * 1000:.0f} ms, event-loop lag "
          f"p99 {r['loop_lag_p99_ms']:.0f} ms (max {r['loop_lag_max_ms']:.0f}), CPU {r['cpu_share']:.0%}")
    repeats = ", ".join(f"{x:.2f}" for x in r["ratios"])
    print(f"speed max: {r['max_records_s_off']:,.0f} records/s off, {r['max_records_s_on']:,.0f} on (ratio "
          f"{r['ratio']:.2f}; per repeat {repeats}); simulated s per wall s {r['max_sim_s_per_s_off']:,.0f} off, "
          f"{r['max_sim_s_per_s_on']:,.0f} on; {r['max_values_written_s']:,.0f} values written/s")


if __name__ == "__main__":
    main()
