"""Several ``factorysim run`` instances sharing the plants (``kafka.scale_out``), in real processes
on the real broker: every plant is owned by exactly one instance at a time (as their /health
says), orders with any key reach their plant's owner, ownership moves when an instance joins,
stops or is killed, and in the end every order has exactly one final event and every lot a legal
story; a command sent to an instance that does not own the machine's plant takes effect on the one
that does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from test_recovery import FINAL, check_histories

from simulator.adapters.plant_inbox import plant_partitions
from simulator.net import free_port

from harness.service import Reader, finished, orders, produce, service_config

PLANTS = ["Brasile", "Italia", "Vietnam"]
SETTLE_S = 30.0  # the documented bound on ownership settling after a join, a stop or a kill (session 2 s)


def write_config(tmp_path: Path, default_yaml: dict[str, Any], bootstrap: str, unique: str) -> Path:
    data = service_config(default_yaml, bootstrap, unique).model_dump(mode="json", exclude_none=True)
    data["simulation"]["speed"] = 3600
    data["kafka"]["topics"]["plant_inbox"] = f"{unique}.inbox"
    data["kafka"]["scale_out"] = {"enabled": True, "rebalance_timeout_ms": 20_000, "heartbeat_interval_ms": 500}
    data["kafka"]["snapshots"] = {"every_s": 1, "every_inputs": 25}
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class Instance:
    def __init__(self, path: Path, log: Path, name: str, *args: str) -> None:
        self.port = free_port()
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "simulator", "run", "--config", str(path), *args],
                env={**os.environ, "HEALTH_CHECK_PORT": str(self.port), "FACTORYSIM_INSTANCE_ID": name},
                stdout=out, stderr=subprocess.STDOUT)

    async def health(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            return None
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with http.get(f"http://127.0.0.1:{self.port}/health",
                                timeout=aiohttp.ClientTimeout(total=2)) as response:
                body: dict[str, Any] = await response.json()
                return body
        return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def instances() -> Iterator[list[Instance]]:
    started: list[Instance] = []
    try:
        yield started
    finally:
        for instance in started:
            if instance.process.poll() is None:
                instance.process.kill()
                instance.process.wait(10)


async def owners(http: aiohttp.ClientSession, running: list[Instance]) -> dict[str, list[str]]:
    """Plant -> the instances whose /health says they own it (live or being taken over)."""
    owned: dict[str, list[str]] = {plant: [] for plant in PLANTS}
    for instance in running:
        health = await instance.health(http)
        if health is None:
            continue
        for plant in health["instance"]["owned_plants"]:
            owned[plant].append(instance.name)
    return owned


async def settled(http: aiohttp.ClientSession, running: list[Instance], timeout_s: float,
                  doubles: list[str]) -> dict[str, str]:
    """Wait until every plant is owned by exactly one of ``running`` and live there; plant -> owner.
    Any moment at which a plant has two owners is recorded in ``doubles``."""
    deadline = time.monotonic() + timeout_s
    while True:
        ended = [i for i in running if i.process.poll() is not None]
        if ended:
            raise AssertionError(f"{ended[0].name} ended ({ended[0].process.poll()})\n{ended[0].output()}")
        owned = await owners(http, running)
        doubles += [f"{plant}: {names}" for plant, names in owned.items() if len(names) > 1]
        if all(len(names) == 1 for names in owned.values()):
            live = set()
            for instance in running:
                health = await instance.health(http)
                if health is not None:
                    live |= set(health["instance"].get("live_plants", []))
            if live >= set(PLANTS):
                return {plant: names[0] for plant, names in owned.items()}
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {i.name}\n{i.output()}" for i in running)
            raise AssertionError(f"ownership did not settle in {timeout_s:.0f} s: {owned}\n{logs}")
        await asyncio.sleep(0.2)


async def stop_all(running: list[Instance]) -> None:
    """SIGTERM every instance; each ends with exit code 0."""
    for instance in running:
        instance.stop()
    for instance in running:
        assert await asyncio.to_thread(instance.process.wait, 60) == 0, instance.output()


def mixed_keys(values: list[bytes]) -> list[bytes | None]:
    """Keys as senders use them: the lot code, the location, none."""
    keys: list[bytes | None] = []
    for i, value in enumerate(values):
        order = orjson.loads(value)
        code = order.get("codice_lotto") or order.get("lot_code")
        keys.append([str(code).encode(), str(order.get("location")).encode(), None][i % 3])
    return keys


async def test_three_instances_share_the_plants_and_every_lot_finishes(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique)
    topics = yaml.safe_load(path.read_text())["kafka"]["topics"]
    lots = 60
    values = orders(lots, unique, seed=3)
    doubles: list[str] = []
    with instances() as running:
        running += [Instance(path, tmp_path / f"i{n}.log", f"i{n}") for n in range(3)]
        async with aiohttp.ClientSession() as http:
            owned = await settled(http, running, 90, doubles)
            assert sorted(set(owned.values())) == ["i0", "i1", "i2"], owned  # one plant each
            for instance in running:  # /metrics says the same
                async with http.get(f"http://127.0.0.1:{instance.port}/metrics") as response:
                    text = await response.text()
                mine = sorted(p for p, name in owned.items() if name == instance.name)
                shown = sorted(line.split('plant="')[1].split('"')[0] for line in text.splitlines()
                               if line.startswith("factorysim_plant_owned{"))
                assert shown == mine, text
                assert "factorysim_rebalances " in text
            await produce(kafka_bootstrap, topics["orders"], values, mixed_keys(values))
            async with Reader(kafka_bootstrap, [topics["events"], topics["dead_letter"]]) as reader:
                collected = await reader.read_until(
                    lambda c: len({e["lot_code"] for e in c.json(topics["events"]) if e["event_type"] in FINAL})
                    >= lots, 120, f"all {lots} lots finished")
            # every order was admitted once, by the owner of its plant
            healths = [await instance.health(http) for instance in running]
            assert sum(h["lots"]["received"] for h in healths if h) == lots, healths
            canonical = service_config(default_yaml, kafka_bootstrap, unique).location_of
            by_plant = Counter(canonical(orjson.loads(v)["location"]) for v in values)
            for health in healths:
                assert health is not None
                assert {p: v["lots"]["received"] for p, v in health["plants"].items()} == \
                    {p: by_plant[p] for p in health["instance"]["owned_plants"]}
            await stop_all(running)
    assert doubles == []
    check_histories(collected.json(topics["events"]), {f"{unique}-{i}" for i in range(lots)})
    assert collected.of(topics["dead_letter"]) == []


async def test_ownership_moves_on_join_stop_and_kill_and_no_lot_is_lost(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique)
    topics = yaml.safe_load(path.read_text())["kafka"]["topics"]
    lots = 150
    batches = [orders(lots, unique, seed=7)[i::4] for i in range(4)]
    doubles: list[str] = []
    moves: dict[str, float] = {}
    with instances() as running:
        running += [Instance(path, tmp_path / f"i{n}.log", f"i{n}") for n in range(2)]
        async with aiohttp.ClientSession() as http:
            await settled(http, running, 90, doubles)
            await produce(kafka_bootstrap, topics["orders"], batches[0], mixed_keys(batches[0]))
            # an instance joins
            running.append(Instance(path, tmp_path / "i2.log", "i2"))
            started = time.monotonic()
            await settled(http, running, 90, doubles)
            await _wait_owning(http, running[-1], 60)
            moves["join"] = time.monotonic() - started
            await produce(kafka_bootstrap, topics["orders"], batches[1], mixed_keys(batches[1]))
            # an instance stops (SIGTERM): its plants are handed over
            name = await _an_owner(http, running)
            stopped = next(i for i in running if i.name == name)
            stopped.stop(signal.SIGTERM)
            started = time.monotonic()
            assert await asyncio.to_thread(stopped.process.wait, 60) == 0, stopped.output()
            running.remove(stopped)
            await settled(http, running, SETTLE_S, doubles)
            moves["sigterm"] = time.monotonic() - started
            assert "handed over" in stopped.output()
            await produce(kafka_bootstrap, topics["orders"], batches[2], mixed_keys(batches[2]))
            # an instance is killed (SIGKILL): its plants are recovered by the others
            name = await _an_owner(http, running)
            killed = next(i for i in running if i.name == name)
            killed.stop(signal.SIGKILL)
            await asyncio.to_thread(killed.process.wait, 10)
            started = time.monotonic()
            running.remove(killed)
            await settled(http, running, SETTLE_S, doubles)
            moves["sigkill"] = time.monotonic() - started
            await produce(kafka_bootstrap, topics["orders"], batches[3], mixed_keys(batches[3]))
            async with Reader(kafka_bootstrap, [topics["events"], topics["dead_letter"]]) as reader:
                collected = await reader.read_until(
                    lambda c: len({e["lot_code"] for e in c.json(topics["events"]) if e["event_type"] in FINAL})
                    >= lots, 180, f"all {lots} lots finished")
            await stop_all(running)
    assert doubles == []
    check_histories(collected.json(topics["events"]), {f"{unique}-{i}" for i in range(lots)})
    assert collected.of(topics["dead_letter"]) == []
    print(f"ownership moves: {moves}")


async def _until(http: aiohttp.ClientSession, running: list[Instance], condition: Any, what: str,
                 timeout_s: float = 30) -> None:
    """Wait until ``condition(plants)`` holds for the plants (name -> /health view) of ``running``."""
    deadline = time.monotonic() + timeout_s
    while True:
        plants: dict[str, Any] = {}
        for instance in running:
            health = await instance.health(http)
            plants.update((health or {}).get("plants") or {})
        if condition(plants):
            return
        assert time.monotonic() < deadline, f"not {what}: {plants}"
        await asyncio.sleep(0.2)


async def _an_owner(http: aiohttp.ClientSession, running: list[Instance]) -> str:
    owned = await owners(http, running)
    return sorted(names[0] for names in owned.values() if names)[0]


async def _wait_owning(http: aiohttp.ClientSession, instance: Instance, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = await instance.health(http)
        if health is not None and health["instance"].get("live_plants"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{instance.name} owns no plant after joining\n{instance.output()}")


async def test_a_command_sent_to_an_instance_that_does_not_own_the_plant_takes_effect_on_the_owner(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique)
    data = yaml.safe_load(path.read_text())
    data["http"]["open_controls"] = True
    data["simulation"]["speed"] = 1
    path.write_text(yaml.safe_dump(data))
    machine = "Vietnam-tornio-02"
    with instances() as running:
        running += [Instance(path, tmp_path / f"i{n}.log", f"i{n}") for n in range(2)]
        async with aiohttp.ClientSession() as http:
            owned = await settled(http, running, 90, [])
            owner = next(i for i in running if i.name == owned["Vietnam"])
            other = next(i for i in running if i is not owner)
            base = f"http://127.0.0.1:{other.port}"
            async with http.post(f"{base}/machines/{machine}/block", json={"reason": "jam", "duration_s": 600}) as r:
                answer = await r.json()
                assert r.status == 200, answer
                assert answer["routed_to"] == "Vietnam" and answer["owner"] == owner.name, answer
            # the non-owner says where the machine lives
            async with http.get(f"{base}/machines/{machine}", allow_redirects=False) as r:
                assert r.status == 307, await r.text()
                where = await r.json()
                assert where["owner"] == owner.name and where["plant"] == "Vietnam"
            deadline = time.monotonic() + 30
            while True:
                async with http.get(f"http://127.0.0.1:{owner.port}/machines/{machine}") as r:
                    view = await r.json()
                if view["blocked"] and view["block"]["reason"] == "jam":
                    break
                assert time.monotonic() < deadline, view
                await asyncio.sleep(0.2)
            # a pause sent to one instance pauses every plant, and a plant that moves stays paused
            async with http.post(f"{base}/simulation/pause") as r:
                assert r.status == 200, await r.text()
            await _until(http, running, lambda plants: len(plants) == 3 and all(p["paused"] for p in plants.values()),
                         "every plant paused")
            other.stop()
            assert await asyncio.to_thread(other.process.wait, 60) == 0, other.output()
            running.remove(other)
            await settled(http, running, SETTLE_S, [])
            await _until(http, running, lambda plants: len(plants) == 3 and all(p["paused"] for p in plants.values()),
                         "the plants taken over still paused")
            async with http.post(f"http://127.0.0.1:{owner.port}/simulation/resume") as r:
                assert r.status == 200, await r.text()
            await _until(http, running, lambda plants: not any(p["paused"] for p in plants.values()), "resumed")
            await stop_all(running)


@pytest.fixture(autouse=True)
def _slow_under_load() -> None:
    """(These tests run three service processes; they are slow, not timing-sensitive.)"""


async def test_a_run_of_every_plant_together_is_not_continued_plant_by_plant(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """Turning kafka.scale_out on over a journal written without it is a clear configuration
    error (exit code 2); --fresh starts the plants' own runs."""
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique)
    data = yaml.safe_load(path.read_text())
    data["kafka"]["scale_out"]["enabled"] = False
    alone = tmp_path / "alone.yaml"
    alone.write_text(yaml.safe_dump(data))
    with instances() as running:
        running.append(Instance(alone, tmp_path / "alone.log", "alone"))
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while (health := await running[0].health(http)) is None or health["state"] != "running":
                assert time.monotonic() < deadline and running[0].process.poll() is None, running[0].output()
                await asyncio.sleep(0.2)
            running[0].stop()
            assert await asyncio.to_thread(running[0].process.wait, 60) == 0
            shared = Instance(path, tmp_path / "shared.log", "shared")
            running.append(shared)
            assert await asyncio.to_thread(shared.process.wait, 90) == 2, shared.output()
            assert "kafka.scale_out.enabled" in shared.output() and "--fresh" in shared.output()
            fresh = Instance(path, tmp_path / "fresh.log", "fresh", "--fresh")
            running.append(fresh)
            owned = await settled(http, [fresh], 90, [])
            assert set(owned.values()) == {"fresh"}
            fresh.stop()
            assert await asyncio.to_thread(fresh.process.wait, 60) == 0, fresh.output()


async def test_what_cannot_be_admitted_on_a_plants_inbox_is_dead_lettered_and_the_plant_goes_on(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """The inbox is a topic like any other: a message written to it by hand that is not JSON, is
    too large, or carries an order of another plant is dead-lettered with its reason (it could
    never be admitted there, and must not hold the partition's commits), a command for a machine
    of another plant is refused, and the orders after them are admitted."""
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique)
    topics = yaml.safe_load(path.read_text())["kafka"]["topics"]
    italia = plant_partitions(PLANTS)["Italia"]
    order = {"lot_code": f"{unique}-ok", "quantity": 5, "location": "Italia", "priority": "alta"}
    wrong = {**order, "lot_code": f"{unique}-wrong", "location": "Vietnam"}
    with instances() as running:
        running.append(Instance(path, tmp_path / "i0.log", "i0"))
        async with aiohttp.ClientSession() as http:
            await settled(http, running, 90, [])
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
            await producer.start()
            try:
                for value in (b"\xff not json \x00", b"{\"command\": {}}" + b" " * 300_000,
                              orjson.dumps({"order": wrong}),
                              orjson.dumps({"command": {"command": "repair", "machine_id": "Vietnam-tornio-01"}}),
                              orjson.dumps({"order": order})):
                    await (await producer.send(topics["plant_inbox"], value, key=b"Italia", partition=italia))
            finally:
                await producer.stop()
            async with Reader(kafka_bootstrap, [topics["events"], topics["dead_letter"]]) as reader:
                collected = await reader.read_until(
                    lambda c: f"{unique}-ok" in finished(c.json(topics["events"])) and len(c.of(topics["dead_letter"]))
                    >= 3, 60, "the good order finished and three dead letters")
            await stop_all(running)
    reasons = sorted(dict(m.headers)["dlq.reason"].decode() for m in collected.of(topics["dead_letter"]))
    assert reasons == ["not_json", "oversized", "wrong_plant"]
    assert f"{unique}-wrong" not in {e["lot_code"] for e in collected.json(topics["events"])}
    assert "routed command repair rejected: unknown_machine" in running[0].output()
