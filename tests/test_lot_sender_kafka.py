"""lot-sender against a real broker (the session's Kafka backend) and a real factorysim service:
rate accuracy, batch throughput, replay, malformed messages dead-lettered, --follow lead times,
unreachable brokers, Ctrl-C and the self-contained --embedded trial."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from simulator.adapters.kafka_admin import ensure_topics
from simulator.config.kafka import TopicCreation
from simulator.lotsender import cli
from simulator.lotsender.plan import BAD_HEADER, RUN_HEADER
from simulator.lotsender.session import run_session
from simulator.net import free_port

from harness.service import Reader, running_service, service_config

ROOT = Path(__file__).resolve().parents[1]


async def send_lots(*argv: str) -> dict[str, Any]:
    """lot-sender with these flags, in the test's event loop; the summary dict."""
    settings = cli.resolve(cli.build_parser().parse_args([*argv, "--no-progress"]), {})
    return await run_session(settings)


async def new_topic(bootstrap: str, name: str, partitions: int = 3) -> str:
    await ensure_topics({"bootstrap_servers": bootstrap}, [name], TopicCreation(partitions=partitions))
    return name


def of_run(messages: list[Any], run_id: str) -> list[Any]:
    return [m for m in messages if dict(m.headers).get(RUN_HEADER) == run_id.encode()]


async def test_continuous_mode_holds_the_requested_rate(kafka_bootstrap: str, unique: str) -> None:
    topic = await new_topic(kafka_bootstrap, f"{unique}.orders")
    # 1,200 lots per minute for 3 s: due every 50 ms, 60 lots
    summary = await send_lots("--mode", "continuous", "--rate", "1200", "--duration", "0.05", "--run-id", "rate1",
                              "--broker", kafka_bootstrap, "--topic", topic, "--seed", "1")
    assert summary["ok"], summary
    assert summary["sent"] == summary["acknowledged"] == 60
    assert summary["achieved_rate_per_min"] == pytest.approx(1200, rel=0.03)
    async with Reader(kafka_bootstrap, [topic]) as reader:
        got = await reader.read_until(lambda c: len(c.of(topic)) >= 60, 30, "60 lots")
    stamps = sorted(m.timestamp for m in of_run(got.of(topic), "rate1"))
    assert len(stamps) == 60
    # the broker-side spread of the 60 sends is 59 gaps of 50 ms: no drift, no burst
    assert (stamps[-1] - stamps[0]) / 1000 == pytest.approx(2.95, abs=0.15)


async def test_batch_mode_sends_every_lot_once_with_unique_codes(kafka_bootstrap: str, unique: str) -> None:
    topic = await new_topic(kafka_bootstrap, f"{unique}.orders")
    summary = await send_lots("--count", "3000", "--broker", kafka_bootstrap, "--topic", topic, "--run-id", "batch1",
                              "--dialect", "en", "--locations", "Italia=1,Vietnam=1")
    assert summary["ok"] and summary["sent"] == summary["acknowledged"] == 3000
    assert summary["ack_latency_ms"]["p99"] is not None
    async with Reader(kafka_bootstrap, [topic]) as reader:
        got = await reader.read_until(lambda c: len(c.of(topic)) >= 3000, 60, "3000 lots")
    bodies = [orjson.loads(m.value) for m in of_run(got.of(topic), "batch1")]
    codes = [b["lot_code"] for b in bodies]
    assert len(codes) == len(set(codes)) == 3000
    assert all(code.startswith("L-") and "-batch1-" in code for code in codes)
    # keyed by location: every location's lots are in one partition, in sending order
    by_location: dict[str, set[int]] = {}
    for message in of_run(got.of(topic), "batch1"):
        by_location.setdefault(message.key.decode(), set()).add(message.partition)
    assert set(by_location) == {"Italia", "Vietnam"}
    assert all(len(partitions) == 1 for partitions in by_location.values())


async def test_replay_from_jsonl_and_csv_sends_the_files_orders(kafka_bootstrap: str, unique: str,
                                                                tmp_path: Path) -> None:
    topic = await new_topic(kafka_bootstrap, f"{unique}.orders")
    jsonl = tmp_path / "orders.jsonl"
    lines = [orjson.dumps({"codice_lotto": f"R-{i}", "cliente": "Bar", "quantita": 10 + i, "location": "Italia"})
             for i in range(5)]
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text("lot_code,customer,quantity,location,priority\nC-1,Uno,5,Brasile,high\n"
                        "C-2,Due,6,Vietnam,low\n", encoding="utf-8")
    first = await send_lots("--from-file", str(jsonl), "--broker", kafka_bootstrap, "--topic", topic,
                            "--run-id", "replay1")
    second = await send_lots("--from-file", str(csv_file), "--broker", kafka_bootstrap, "--topic", topic,
                             "--run-id", "replay2", "--mode", "continuous", "--rate", "600")
    assert (first["sent"], second["sent"]) == (5, 2) and first["ok"] and second["ok"]
    async with Reader(kafka_bootstrap, [topic]) as reader:
        got = await reader.read_until(lambda c: len(c.of(topic)) >= 7, 30, "7 orders")
    assert sorted(m.value for m in of_run(got.of(topic), "replay1")) == sorted(lines)
    replayed = sorted((orjson.loads(m.value) for m in of_run(got.of(topic), "replay2")), key=lambda b: b["lot_code"])
    assert replayed == [
        {"lot_code": "C-1", "customer": "Uno", "quantity": 5, "location": "Brasile", "priority": "high"},
        {"lot_code": "C-2", "customer": "Due", "quantity": 6, "location": "Vietnam", "priority": "low"},
    ]


@pytest.mark.timeout(180)
async def test_follow_reports_lead_times_and_every_malformed_message_is_dead_lettered(
        kafka_bootstrap: str, unique: str, default_yaml: dict[str, Any], tmp_path: Path) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    async with running_service(config):
        summary = await send_lots("--config", str(config_file), "--count", "80", "--bad-ratio", "0.3", "--seed", "4",
                                  "--run-id", "follow1", "--follow", "--follow-timeout", "120")
        async with Reader(kafka_bootstrap, [config.kafka.topics.dead_letter]) as reader:
            dlq = config.kafka.topics.dead_letter
            got = await reader.read_until(lambda c: len(of_run(c.of(dlq), "follow1")) >= summary["malformed_sent"],
                                          30, "the dead letters")
    follow = summary["follow"]
    assert summary["ok"], summary
    good = summary["sent"] - summary["malformed_sent"]
    assert 0 < summary["malformed_sent"] < 80 and follow["lots"] == good
    # every lot finished and has a lead time; every malformed message was dead-lettered, for the intended reason
    assert follow["completed"] + follow["scrapped"] == good and follow["not_finished"] == 0
    assert follow["lead_time_s"]["p50"] is not None and follow["lead_time_s"]["max"] >= follow["lead_time_s"]["p95"]
    assert follow["sim_lead_time_s"]["p50"] > 0
    assert follow["malformed_dead_lettered"] == summary["malformed_sent"]
    assert follow["unexpected_reasons"] == {} and follow["rejected"] == {}
    letters = of_run(got.of(dlq), "follow1")
    assert len(letters) == summary["malformed_sent"]
    assert all(dict(m.headers).get(BAD_HEADER) for m in letters)
    assert sum(follow["dead_letter_reasons"].values()) == summary["malformed_sent"]


def test_an_unreachable_broker_is_a_clear_error_with_exit_code_1_after_the_whole_connect_timeout(
        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = cli.main(["--broker", f"127.0.0.1:{free_port()}", "--connect-timeout", "3", "--no-progress"])
    waited = time.monotonic() - started
    assert code == 1
    assert "cannot reach Kafka at 127.0.0.1:" in capsys.readouterr().err
    assert 3.0 <= waited < 3.0 + 1.5  # the wait the option and the message name, not a sum of back-offs


@pytest.mark.parametrize("verbose", [False, True])
def test_kafka_client_log_lines_show_only_with_verbose(verbose: bool) -> None:
    done = subprocess.run([sys.executable, "-m", "simulator.lotsender.cli", "--broker", f"127.0.0.1:{free_port()}",
                           "--connect-timeout", "1.5", "--no-progress", *(["-v"] if verbose else [])],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    if verbose:
        assert any("aiokafka" in line and "Unable connect" in line for line in lines), done.stderr
    else:  # lot-sender's own two lines, nothing from the client however many times it tried
        assert len(lines) == 2, done.stderr
        assert lines[0].startswith("lot-sender: waiting for Kafka at 127.0.0.1:") and "up to 1.5 s" in lines[0]
        assert lines[1].startswith("lot-sender: cannot reach Kafka at 127.0.0.1:") and "within 1.5 s" in lines[1]


def _lot_sender() -> list[str]:
    script = Path(sys.executable).with_name("lot-sender")
    return [str(script)] if script.exists() else [sys.executable, "-m", "simulator.lotsender.cli"]


async def test_ctrl_c_stops_sending_and_still_prints_the_summary(kafka_bootstrap: str, unique: str) -> None:
    topic = await new_topic(kafka_bootstrap, f"{unique}.orders")
    process = await asyncio.create_subprocess_exec(
        *_lot_sender(), "--mode", "continuous", "--rate", "600", "--broker", kafka_bootstrap, "--topic", topic,
        "--report", "json", "--progress", stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "CONFIG_PATH": str(ROOT / "config.yaml")})
    assert process.stderr is not None
    while b"sent" not in await asyncio.wait_for(process.stderr.readline(), 30):  # progress shows lots going out
        pass
    process.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    summary = orjson.loads(out)
    assert process.returncode == 0
    assert summary["interrupted"] and summary["sent"] == summary["acknowledged"] > 0


@pytest.mark.timeout(120)
def test_embedded_trial_runs_broker_and_service_in_one_command(tmp_path: Path) -> None:
    done = subprocess.run([*_lot_sender(), "--embedded", "--embedded-speed", "3000", "--count", "6", "--follow",
                           "--follow-timeout", "90", "--report", "json", "--config", str(ROOT / "config.yaml")],
                          capture_output=True, timeout=110, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = orjson.loads(done.stdout)
    assert summary["follow"]["completed"] + summary["follow"]["scrapped"] == 6
    assert b"embedded broker 127.0.0.1:" in done.stderr
