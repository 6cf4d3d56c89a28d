"""Scale-out: aggregate telemetry of one vs two ``factorysim run`` instances sharing the plants, and
how long ownership takes to move after a SIGTERM and after a SIGKILL.

The plant: the reference plant grown to ``--plants`` locations (each with config.yaml's Italia
pools scaled to ``--machines`` machines), every machine sampling every simulated second, generated
orders in service (``arrivals.in_service``), speed max, ``kafka.scale_out`` on.  The broker: the
embedded one in its own process (memory storage), shared by the instances.

1. One instance owns every plant; its Kafka records/s (``factorysim_kafka_records_sent`` from
   /metrics) are measured over ``--window`` seconds once every plant is live.  This is the baseline.
2. A second instance joins; once each owns half the plants and every plant is live again, the two
   instances' records/s together are measured over the same window.  Ratio: 2 / 1.
3. Every plant is set to speed 1 (``PUT /simulation/speed`` on the first instance: it applies it
   to its plants and routes it to the others'), as plants run in service; then the second instance
   gets SIGTERM: the time from the signal until the first has every plant
   live (hand-over with the last snapshots, take-over from them).
4. A second instance joins again, then gets SIGKILL: the time from the kill until the first has
   every plant live (the group notices after the session timeout; the plants are recovered from
   their newest snapshots and the journal after them).

    python tools/bench/scale_out.py [--plants 12] [--machines 40] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import yaml

from simulator.adapters.embedded_broker import broker_command
from simulator.net import free_port

ROOT = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT_MS = 6_000  # the default of kafka.consumer.session_timeout_ms
PACED = 1.0  # the speed the ownership moves are measured at (plants in service, 1 Hz samples: real time)
TIMEZONES = ["Europe/Rome", "America/Sao_Paulo", "Asia/Ho_Chi_Minh", "America/Mexico_City", "America/New_York",
             "America/Los_Angeles", "Europe/Berlin", "Europe/Warsaw", "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo",
             "Africa/Johannesburg"]


def plant_config(bootstrap: str, plants: int, machines: int, tag: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    template = data["locations"]["Italia"]["machines"]
    total = sum(template.values())
    pools = {mtype: max(1, round(count * machines / total)) for mtype, count in template.items()}
    data["locations"] = {f"P{i:02d}": {"timezone": TIMEZONES[i % len(TIMEZONES)], "machines": dict(pools)}
                         for i in range(plants)}
    data["arrivals"] = {**data["arrivals"], "in_service": True, "rate_per_hour": 2.0 * plants * machines / 7,
                        "location_mix": None}
    data["telemetry"] = {**data["telemetry"], "sample_interval_s": 1}
    data["simulation"] = {**data["simulation"], "speed": "max", "warm_up": 0}
    data["kafka"] = {
        "bootstrap_servers": bootstrap,
        "topics": {"orders": f"{tag}.orders", "telemetry_prefix": f"{tag}.telemetry", "events": f"{tag}.events",
                   "dead_letter": f"{tag}.dead_letter", "journal": f"{tag}.journal", "snapshots": f"{tag}.snapshots",
                   "plant_inbox": f"{tag}.inbox"},
        "consumer": {"group_id": f"{tag}-group", "session_timeout_ms": SESSION_TIMEOUT_MS},
        "scale_out": {"enabled": True},
        "snapshots": {"every_s": 5},
    }
    data["http"] = {"host": "127.0.0.1", "port": 0, "open_controls": True}
    data["logging"] = {"stats_interval_s": 0}
    return data


class Instance:
    def __init__(self, config: Path, name: str, log: Path) -> None:
        self.name = name
        self.port = free_port()
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "simulator", "run", "--config", str(config)],
                env={**os.environ, "HEALTH_CHECK_PORT": str(self.port), "FACTORYSIM_INSTANCE_ID": name,
                     "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    async def get(self, http: aiohttp.ClientSession, path: str) -> Any:
        try:
            async with http.get(f"http://127.0.0.1:{self.port}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r:
                return await (r.json() if path == "/health" else r.text())
        except (TimeoutError, aiohttp.ClientError):
            return None

    async def sent(self, http: aiohttp.ClientSession) -> float:
        """Records Kafka acknowledged (every topic)."""
        text = await self.get(http, "/metrics") or ""
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("factorysim_kafka_records_sent_total{"))

    def end(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)


async def live_plants(http: aiohttp.ClientSession, instances: list[Instance]) -> dict[str, list[str]]:
    """Instance name -> the plants live there."""
    live: dict[str, list[str]] = {}
    for instance in instances:
        health = await instance.get(http, "/health")
        live[instance.name] = sorted(health["instance"].get("live_plants", [])) if health else []
    return live


async def settle(http: aiohttp.ClientSession, instances: list[Instance], plants: int, timeout_s: float = 300,
                 each: bool = False) -> float:
    """Seconds until every plant is live on exactly one of ``instances`` (``each``: and every instance runs some)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        live = await live_plants(http, instances)
        owned = [p for ps in live.values() for p in ps]
        if len(owned) == plants == len(set(owned)) and (not each or all(live.values())):
            return time.monotonic() - started
        for instance in instances:
            if instance.process.poll() is not None:
                raise RuntimeError(f"{instance.name} ended with {instance.process.poll()}")
        await asyncio.sleep(0.1)
    raise TimeoutError(f"ownership did not settle in {timeout_s:.0f} s: {await live_plants(http, instances)}")


async def rate(http: aiohttp.ClientSession, instances: list[Instance], window_s: float) -> float:
    """Records/s the instances' publishers had acknowledged, together, over ``window_s``."""
    before = sum([await i.sent(http) for i in instances])
    started = time.monotonic()
    await asyncio.sleep(window_s)
    after = sum([await i.sent(http) for i in instances])
    return (after - before) / (time.monotonic() - started)


async def measure_async(port: int, plants: int, machines: int, window_s: float,
                        log_path: Path | None = None) -> dict[str, Any]:
    tag = f"bench-scale-{uuid.uuid4().hex[:6]}"
    started: list[Instance] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
            path = Path(folder) / "config.yaml"
            path.write_text(yaml.safe_dump(plant_config(f"127.0.0.1:{port}", plants, machines, tag)))
            log = log_path or Path(folder) / "instances.log"
            async with aiohttp.ClientSession() as http:
                first = Instance(path, "one", log)
                started.append(first)
                await settle(http, [first], plants)
                await asyncio.sleep(window_s / 2)  # past the start-up
                one = await rate(http, [first], window_s)
                second = Instance(path, "two", log)
                started.append(second)
                await settle(http, [first, second], plants, each=True)
                await asyncio.sleep(window_s / 2)
                two = await rate(http, [first, second], window_s)
                split = {k: len(v) for k, v in (await live_plants(http, [first, second])).items()}
                # ownership moves are measured in paced mode (speed 1), as plants run in service: at
                # speed max a hand-over first waits for the outbox's backlog to be in Kafka
                async with http.put(f"http://127.0.0.1:{first.port}/simulation/speed", json={"speed": PACED}) as r:
                    assert r.status == 200, await r.text()
                await asyncio.sleep(5)
                signalled = time.monotonic()
                second.end(signal.SIGTERM)
                await settle(http, [first], plants)
                after_sigterm = time.monotonic() - signalled
                await asyncio.to_thread(second.process.wait, 60)
                third = Instance(path, "three", log)
                started.append(third)
                await settle(http, [first, third], plants, each=True)
                await asyncio.sleep(2)
                signalled = time.monotonic()
                third.end(signal.SIGKILL)
                await settle(http, [first], plants)
                after_sigkill = time.monotonic() - signalled
                return {"plants": plants, "machines": plants * sum(copy.deepcopy(
                    plant_config("x", 1, machines, "x")["locations"]["P00"]["machines"]).values()),
                    "one_records_s": one, "two_records_s": two, "ratio": two / one, "split": split,
                    "move_after_sigterm_s": after_sigterm, "move_after_sigkill_s": after_sigkill,
                    "session_timeout_s": SESSION_TIMEOUT_MS / 1000}
    finally:
        for instance in started:
            instance.end(signal.SIGKILL)
            await asyncio.to_thread(instance.process.wait, 10)


def measure(plants: int = 12, machines: int = 40, window_s: float = 20.0, log_path: Path | None = None,
            ) -> dict[str, Any]:
    port = free_port()
    broker = subprocess.Popen([*broker_command("127.0.0.1", port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return asyncio.run(measure_async(port, plants, machines, window_s, log_path))
    finally:
        broker.terminate()
        broker.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plants", type=int, default=12)
    parser.add_argument("--machines", type=int, default=40, help="machines per plant")
    parser.add_argument("--window", type=float, default=20.0, help="seconds each throughput is measured over")
    parser.add_argument("--log", type=Path, help="keep the instances' log in this file")
    args = parser.parse_args()
    r = measure(args.plants, args.machines, args.window, args.log)
    print(f"{r['plants']} plants, {r['machines']} machines sampling at 1 Hz, speed max")
    print(f"one instance:  {r['one_records_s']:,.0f} records/s")
    print(f"two instances: {r['two_records_s']:,.0f} records/s ({r['split']}): ratio {r['ratio']:.2f} (goal ≥ 1.5)")
    print(f"ownership moved after SIGTERM in {r['move_after_sigterm_s']:.1f} s (goal ≤ 10 s)")
    print(f"ownership moved after SIGKILL in {r['move_after_sigkill_s']:.1f} s (goal ≤ session timeout "
          f"{r['session_timeout_s']:.0f} s + 10 s)")


if __name__ == "__main__":
    main()
