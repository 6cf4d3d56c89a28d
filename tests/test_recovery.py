"""Crash-safe plants, in real processes on the real broker: a service stopped with SIGTERM or killed
with SIGKILL at random moments and started again continues its run from the journal. In the end
every order has exactly one final event (after de-duplication by event id), every lot's events
follow the lot state machine with no stage run twice (but for reworks), no event id was ever
published with two different contents, and no order was dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from simulator.formats import journal
from simulator.formats.journal import Checkpoint
from simulator.model.lot import ALLOWED, LotState
from simulator.net import free_port

from harness.service import Reader, orders, produce, service_config
from harness.service import service_process as service

START_TIMEOUT_S = 60.0
FINAL = {"lot.completed", "lot.scrapped"}


async def live(port: int, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """Wait until the service at ``port`` is live (recovered, ready); its health."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                output = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"the service did not become live ({process.poll()})\n{output[-4000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/health/ready") as response:
                    if response.status == 200:
                        async with http.get(f"http://127.0.0.1:{port}/health") as health:
                            body: dict[str, Any] = await health.json()
                            return body
            await asyncio.sleep(0.05)


def snapshot_settings(path: Path, **settings: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["kafka"]["snapshots"] = settings
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return data


async def health_of(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
        body: dict[str, Any] = await response.json()
        return body


async def poll_health(port: int, condition: Any, timeout_s: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        health = await health_of(port)
        if condition(health):
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; health: {health['run']} {health['lots']}")
        await asyncio.sleep(0.1)


def check_histories(events: list[dict[str, Any]], lot_codes: set[str]) -> None:
    """The published lot events of every lot, de-duplicated by event id, tell one legal story."""
    by_id: dict[str, bytes] = {}
    for event in events:
        content = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        first = by_id.setdefault(event["event_id"], content)
        assert first == content, f"event id {event['event_id']} with two contents"
    unique = [orjson.loads(c) for c in by_id.values()]
    per_lot: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in unique:
        if event["lot_code"] is not None:
            per_lot[event["lot_code"]].append(event)
    finals = Counter(e["lot_code"] for e in unique if e["event_type"] in FINAL)
    assert set(finals) == lot_codes, f"lots without a final event: {sorted(lot_codes - set(finals))[:5]}"
    assert max(finals.values()) == 1
    for code, history in per_lot.items():
        history.sort(key=lambda e: (e["sim_time_s"], int(e["event_id"].rpartition("-")[2], 16)))
        assert [e["event_type"] for e in history].count("lot.received") == 1, code
        state = LotState.RECEIVED
        started: Counter[str] = Counter()
        reworks = 0
        for event in history[1:]:
            new = LotState(event["lot_state"])
            assert new == state or new in ALLOWED[state], f"lot {code}: {state} -> {new} at {event['event_type']}"
            state = new
            if event["event_type"] == "lot.reworked":
                reworks += 1
            if event["event_type"] == "stage.started":
                started[event["stage"]] += 1
                assert started[event["stage"]] <= 1 + reworks, f"lot {code} ran stage {event['stage']} twice"
        assert state in (LotState.COMPLETED, LotState.SCRAPPED), f"lot {code} ended {state}"


async def check_lease(bootstrap: str, topics: dict[str, str]) -> None:
    """Whatever a killed service published lies within the time lease its journal has: a restart
    applies new inputs after it, so nothing published is ever made again differently."""
    async with Reader(bootstrap, [topics["events"], topics["journal"]]) as reader:
        collected = await reader.read_all()
    leases = [e.at for e in map(journal.decode_entry, (m.value for m in collected.of(topics["journal"])))
              if isinstance(e, Checkpoint)]
    published = [e["sim_time_s"] for e in collected.json(topics["events"])]
    if published:
        assert leases and max(published) <= max(leases), (max(published), max(leases, default=None))


def write_config(tmp_path: Path, default_yaml: dict[str, Any], bootstrap: str, unique: str, port: int,
                 speed: str | float) -> Path:
    data = service_config(default_yaml, bootstrap, unique).model_dump(mode="json", exclude_none=True)
    data["http"]["port"] = port
    data["simulation"]["speed"] = speed
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def test_sigterm_then_restart_continues_every_lot_where_it_was(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique, port, 20_000)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    topics = config["kafka"]["topics"]
    lots = 40
    log = tmp_path / "service.log"
    await produce(kafka_bootstrap, topics["orders"], orders(lots, unique, seed=5))
    with service(path, log, "--start", "config") as first:
        await live(port, first, log)
        deadline = time.monotonic() + 60
        async with Reader(kafka_bootstrap, [topics["events"]]) as reader:
            await reader.read_until(lambda c: sum(e["event_type"] in FINAL for e in c.json(topics["events"])) >= 3,
                                    60, "a few lots finished")
        assert time.monotonic() < deadline
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 60) == 0, log.read_text()[-4000:]
    assert time.monotonic() - stopped_at < 25
    with service(path, log) as second:
        health = await live(port, second, log)
        assert health["run"]["recovery"]["done"] is True
        assert health["run"]["recovery"]["inputs"] >= lots
        # the continued run takes commands (its command processor is the recovered run's)
        token = (await asyncio.to_thread(Path(config["http"]["generated_token_file"]).read_text)).strip()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
                http.post(f"http://127.0.0.1:{port}/machines/Vietnam-tornio-01/anomaly",
                          json={"type": "bearing_fault", "duration_s": 600}) as response:
            assert response.status == 200, await response.text()
        async with Reader(kafka_bootstrap, [topics["events"], topics["dead_letter"]]) as reader:
            collected = await reader.read_until(
                lambda c: len({e["lot_code"] for e in c.json(topics["events"]) if e["event_type"] in FINAL}) == lots,
                90, "every lot finished across both runs")
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 60)
    check_histories(collected.json(topics["events"]), {f"{unique}-{i}" for i in range(lots)})
    assert collected.of(topics["dead_letter"]) == []
    assert "continuing run" in log.read_text()


@pytest.mark.parametrize("snapshots", [False, True], ids=["journal-only", "frequent-snapshots"])
@pytest.mark.parametrize("speed", ["max", 20_000])
async def test_killed_at_random_moments_every_acknowledged_order_completes_once(
        speed: str | float, snapshots: bool, default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str,
        tmp_path: Path) -> None:
    """Without snapshots every restart applies the whole journal again; with frequent ones every
    restart starts from the newest snapshot and applies only the journal after it."""
    port = free_port()
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique, port, speed)
    settings = {"every_inputs": 25, "every_s": 1} if snapshots else {"enabled": False}
    topics = snapshot_settings(path, **settings)["kafka"]["topics"]
    lots, kills = 240, 3
    rng = random.Random(f"{unique}-{speed}-{snapshots}")
    log = tmp_path / "service.log"
    batches = [orders(lots, unique, seed=11)[i::6] for i in range(6)]  # both dialects, fed over time
    restored = 0  # restarts that started from a snapshot
    for kill in range(kills):
        with service(path, log) as process:
            health = await live(port, process, log)
            restored += kill > 0 and health["run"]["recovery"]["snapshot"] is not None
            await produce(kafka_bootstrap, topics["orders"], batches[2 * kill] + batches[2 * kill + 1])
            if snapshots:
                await poll_health(port, lambda h: h["run"]["snapshots"]["written"] >= 1, 30, "a snapshot")
            await asyncio.sleep(rng.uniform(0.2, 2.5))  # a random moment of the run to kill it at
            process.kill()
            await asyncio.to_thread(process.wait, 10)
            await check_lease(kafka_bootstrap, topics)
    with service(path, log) as last:
        health = await live(port, last, log)
        restored += health["run"]["recovery"]["snapshot"] is not None
        async with Reader(kafka_bootstrap, [topics["events"], topics["dead_letter"]]) as reader:
            collected = await reader.read_until(
                lambda c: len({e["lot_code"] for e in c.json(topics["events"]) if e["event_type"] in FINAL}) >= lots,
                120, f"all {lots} lots finished after {kills} kills")
        last.send_signal(signal.SIGTERM)
        await asyncio.to_thread(last.wait, 60)
    check_histories(collected.json(topics["events"]), {f"{unique}-{i}" for i in range(lots)})
    assert collected.of(topics["dead_letter"]) == []
    assert log.read_text().count("continuing run") == kills
    assert restored == (kills if snapshots else 0), log.read_text()[-4000:]


async def test_a_journal_of_another_config_is_a_clear_error_and_fresh_starts_a_new_run(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique, port, "max")
    log = tmp_path / "service.log"
    with service(path, log) as first:
        first_health = await live(port, first, log)
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 60) == 0
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["disruptions"]["block_probability"] = 0.2  # another plant
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with service(path, log) as mismatched:
        assert await asyncio.to_thread(mismatched.wait, 60) == 2
    output = log.read_text()
    assert "written with another plant config" in output
    assert "factorysim run --fresh" in output
    data["disruptions"]["block_probability"] = 0.05
    data["simulation"]["seed"] = 7
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with service(path, log) as other_seed:
        assert await asyncio.to_thread(other_seed.wait, 60) == 2
    assert f"has seed {default_yaml['simulation']['seed']}; this config has 7" in log.read_text()
    with service(path, log, "--fresh") as fresh:
        health = await live(port, fresh, log)
        assert health["run"]["id"] != first_health["run"]["id"]
        assert health["run"]["recovery"] is None
        fresh.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(fresh.wait, 60) == 0
    with service(path, log) as again:  # the newest run is the fresh one: it continues
        health = await live(port, again, log)
        assert health["run"]["recovery"]["run_id"] != first_health["run"]["id"]
        again.send_signal(signal.SIGTERM)
        await asyncio.to_thread(again.wait, 60)


async def test_an_unreadable_entry_in_the_run_is_a_clear_error(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique, port, "max")
    topics = yaml.safe_load(path.read_text(encoding="utf-8"))["kafka"]["topics"]
    log = tmp_path / "service.log"
    with service(path, log) as first:
        await live(port, first, log)
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 60) == 0
    await produce(kafka_bootstrap, topics["journal"], [b'{"v": 1, "kind": "input", "garbled'] * 3,
                  [b"Italia", b"Brasile", b"Vietnam"])
    with service(path, log) as second:
        assert await asyncio.to_thread(second.wait, 60) == 2
    output = log.read_text()
    assert "cannot be read" in output
    assert "factorysim run --fresh" in output
