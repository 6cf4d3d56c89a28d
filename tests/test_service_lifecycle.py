"""Service lifecycle against a real broker: broker outage, third-party reader, demo mode (restarts and
kills: tests/test_recovery.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from confluent_kafka import Consumer

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.formats.coffeemek import TEST_OUTCOMES
from simulator.net import free_port

from harness.service import Reader, finished, orders, produce, running_service, service_config, wait_for

ROOT = Path(__file__).resolve().parents[1]


async def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json()


async def test_broker_outage_reports_unhealthy_loses_nothing_and_recovers(
        default_yaml: dict[str, Any], unique: str) -> None:
    async with EmbeddedBroker() as broker:
        config = service_config(default_yaml, broker.bootstrap_servers, unique,
                                **{"simulation.speed": 20_000, "kafka.producer.request_timeout_ms": 1500})
        topics = config.kafka.topics
        lots = 40
        async with running_service(config, probe_interval_s=0.3) as service:
            await produce(broker.bootstrap_servers, topics.orders, orders(lots, unique, seed=9))
            await wait_for(lambda: service.sim.stats.completed >= 2, 60, "first lots completed")
            broker.freeze()
            try:
                url = f"http://127.0.0.1:{service.http_port}/health"
                await wait_for(lambda: not service.healthy, 30, "the service to notice the outage")
                status, health = await _get_json(url)
                assert status == 503
                assert health["kafka"]["connected"] is False
                progress = service.sim.stats.completed
                await asyncio.sleep(4.0)  # an outage longer than two request timeouts: the publisher waits it
                # out (a batch the producer has no room for times out: it is retried, not a failure), and the
                # simulation must not run away meanwhile
                assert service.sim.stats.completed - progress <= 5
            finally:
                broker.thaw()
            await wait_for(lambda: service.healthy, 60, "the service to recover")
            async with Reader(broker.bootstrap_servers, [topics.events]) as reader:
                collected = await reader.read_until(lambda c: len(finished(c.json(topics.events))) == lots, 90,
                                                    "every lot finished after the outage")
            status, _ = await _get_json(url)
            assert status == 200
    events = collected.json(topics.events)
    received = {e["lot_code"] for e in events if e["event_type"] == "lot.received"}
    assert received == {f"{unique}-{i}" for i in range(lots)}
    sequence = [e["event_id"] for e in events]
    assert len(set(sequence)) >= lots * 6  # nothing lost: every lot's events arrived (resends may repeat some)


async def test_a_librdkafka_client_reads_telemetry_and_events(default_yaml: dict[str, Any], kafka_bootstrap: str,
                                                              unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    topics = config.kafka.topics
    async with running_service(config) as service:
        await produce(kafka_bootstrap, topics.orders, orders(10, unique, seed=3))
        await wait_for(lambda: service.sim.stats.completed + service.sim.stats.scrapped == 10, 60, "10 lots")
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{unique}-librdkafka",
                             "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        try:
            consumer.subscribe([topics.events, f"{topics.telemetry_prefix}.test"])
            seen: dict[str, list[Any]] = {}
            deadline = time.monotonic() + 60
            while len(seen.get(f"{topics.telemetry_prefix}.test", [])) < 10 or \
                    sum(1 for m in seen.get(topics.events, []) if dict(m.headers() or [])["event_type"] ==
                        b"lot.received") < 10:
                assert time.monotonic() < deadline, {t: len(v) for t, v in seen.items()}
                message = await asyncio.to_thread(consumer.poll, 0.5)
                if message is None or message.error():
                    continue
                seen.setdefault(message.topic(), []).append(message)
        finally:
            await asyncio.to_thread(consumer.close)
    test_messages = seen[f"{topics.telemetry_prefix}.test"]
    body = orjson.loads(test_messages[0].value())
    assert body["esito"] in TEST_OUTCOMES.values()
    assert {"pressione", "temperatura", "portata", "rumore", "vibrazione"} <= set(body["risultati_test"])
    assert test_messages[0].key().decode() == body["id_macchina"]
    headers = dict(test_messages[0].headers() or [])
    assert headers["content_type"] == b"application/json"
    assert headers["schema_version"]


async def test_demo_mode_shows_lots_flowing_on_the_embedded_broker(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CONFIG_PATH": str(ROOT / "config.yaml"), "HEALTH_CHECK_PORT": str(port),
           "FACTORYSIM_SPEED": "3600", "XDG_RUNTIME_DIR": str(tmp_path),
           "FACTORYSIM_EMBEDDED_DATA_DIR": str(tmp_path / "kafka")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("RUNTIME_DIRECTORY", None)
    token_file = tmp_path / "factorysim" / f"http-token-{port}"
    demo = await asyncio.to_thread(subprocess.Popen, [sys.executable, "-m", "simulator", "run", "--demo"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert demo.poll() is None, demo.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no lot flowed within 60 s"
            try:
                _, health = await _get_json(f"http://127.0.0.1:{port}/health")
            except aiohttp.ClientError:
                health = None
            if health and health["lots"]["received"] >= 2 and health["kafka"]["embedded"]:
                break
            await asyncio.sleep(0.2)
        token = token_file.read_text(encoding="utf-8").strip()  # the command token of this run, for its user only
        demo.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(demo.communicate, timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, err.decode()[-2000:]
    summary = out.decode()
    assert "lots:" in summary
    assert "fresa_cnc" in summary
    assert "utilisation since the start:" in summary
    assert f"commands: curl -X POST -H 'Authorization: Bearer {token}' http://127.0.0.1:{port}/simulation/pause" \
        in summary  # `make run` shows how to use the controls
    assert not token_file.exists()
