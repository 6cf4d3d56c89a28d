"""Supervision, in real processes on the real broker: a loop that fails makes /health 503 at once and
ends the process with exit code 1 within the documented bound (never a zombie that reports
healthy); SIGTERM works during start-up; an authentication error is reported as such; the systemd
watchdog is fed only while the service makes progress."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from simulator.net import free_port
from simulator.runtime.supervision import FAILURE_EXIT_S

from harness.mosquitto import Mosquitto
from harness.service import service_config

START_TIMEOUT_S = 60.0
FAULT_AFTER_S = 1.5


def get_health(port: int) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of /health; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return None


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen[bytes],
               log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{log.read_text()[-3000:]}")
        if process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) before {what}\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


@contextlib.contextmanager
def service_process(tmp_path: Path, data: dict[str, Any], env: dict[str, str] | None = None,
                    command: str = "run") -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "simulator", command, "--config", str(path)],
            env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def config_data(default_yaml: dict[str, Any], bootstrap: str, unique: str, port: int, **overrides: Any,
                ) -> dict[str, Any]:
    data = service_config(default_yaml, bootstrap, unique, **{"simulation.speed": 600, **overrides}) \
        .model_dump(mode="json", exclude_none=True)
    data["http"]["port"] = port
    return data


def mqtt_target(broker: Mosquitto) -> dict[str, Any]:
    return {"targets": [{"name": "local", "host": broker.host, "port": broker.port, "format": "uns",
                         "reconnect": {"initial_s": 0.1, "max_s": 0.5}}]}


@pytest.mark.parametrize("loop", ["intake", "publisher", "driver", "mqtt", "http", "bridge-mqtt"])
def test_a_failing_loop_turns_health_503_at_once_and_ends_the_process_with_1(
        loop: str, default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path,
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    port = free_port()
    command, drill = ("bridge", "mqtt") if loop == "bridge-mqtt" else ("run", loop)
    extra = {"mqtt": mqtt_target(mosquitto_factory())} if drill == "mqtt" else {}
    data = config_data(default_yaml, kafka_bootstrap, unique, port, **extra)
    if command == "bridge":  # the bridge's own health port
        data["http"]["port"] = free_port()
        data["mqtt"]["bridge"] = {"group_id": f"{unique}-bridge", "http_port": port}
    env = {"FACTORYSIM_FAULT": f"{drill}@{FAULT_AFTER_S}"}
    with service_process(tmp_path, data, env, command) as (process, log):
        wait_until(lambda: (get_health(port) or (0, {}))[0] == 200, START_TIMEOUT_S, "a healthy service",
                   process, log)
        healthy_seen = time.monotonic()
        answers: list[tuple[float, int | None]] = []
        while process.poll() is None and time.monotonic() - healthy_seen < FAULT_AFTER_S + FAILURE_EXIT_S + 10:
            health = get_health(port)
            answers.append((time.monotonic(), health[0] if health else None))
            if health and health[0] == 503:
                assert health[1]["status"] == "unhealthy"
                failure = health[1]["failure"]
                assert failure is not None, health[1]
                assert "fault drill" in failure["error"]
            time.sleep(0.02)
        code = process.wait(FAILURE_EXIT_S + 10)
        ended = time.monotonic()
    output = log.read_text()
    assert code == 1, output[-3000:]
    failed_at = healthy_seen + FAULT_AFTER_S  # the drill fires FAULT_AFTER_S after the loops start, before this
    assert ended - failed_at <= FAILURE_EXIT_S, output[-3000:]
    assert all(status in (200, 503, None) for _, status in answers)
    if loop != "http":  # a server that no longer listens cannot answer 503; the exit is what tells
        first_503 = next((at for at, status in answers if status == 503), None)
        assert first_503 is not None, (answers[-5:], output[-3000:].splitlines())
        assert first_503 - failed_at <= 1.0
        # never healthy again once it said unhealthy: no zombie
        assert all(status != 200 for at, status in answers if at > first_503)
    assert output.count("failed; stopping the service (exit code 1)") == 1, output[-3000:]
    assert ("HttpServerClosed: the HTTP server on port" if loop == "http" else "InjectedFault: fault drill") in output


def test_sigterm_during_start_up_with_kafka_unreachable_exits_at_once(
        default_yaml: dict[str, Any], unique: str, tmp_path: Path) -> None:
    port = free_port()
    data = config_data(default_yaml, f"127.0.0.1:{free_port()}", unique, port)  # nothing listens there
    with service_process(tmp_path, data) as (process, log):
        def starting_with_an_error() -> bool:
            health = get_health(port)
            return health is not None and health[1]["state"] == "starting" and bool(health[1]["kafka"]["last_error"])

        wait_until(starting_with_an_error, START_TIMEOUT_S, "/health in start-up naming the error", process, log)
        status, body = get_health(port) or (0, {})
        assert status == 503
        assert "Connect call failed" in body["kafka"]["last_error"]
        assert body["kafka"]["last_error_at"].endswith("Z")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
        took = time.monotonic() - signalled
    assert code == 0, log.read_text()[-3000:]
    assert took < 5.0
    assert "stopped during start-up" in log.read_text()


def test_an_authentication_error_at_start_is_a_config_error_not_a_retry(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    port = free_port()
    data = config_data(default_yaml, kafka_bootstrap, unique, port)  # the test broker has no SASL
    data["kafka"]["security"] = {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                                 "sasl_password_env": "FACTORYSIM_TEST_SASL"}
    with service_process(tmp_path, data, {"FACTORYSIM_TEST_SASL": "secret-pass"}) as (process, log):
        code = process.wait(30)
    output = log.read_text()
    assert code == 2, output[-3000:]
    assert "kafka.security: the cluster at" in output
    assert "UnsupportedSaslMechanismError" in output
    assert "not reachable yet" not in output
    assert "secret-pass" not in output


def test_the_systemd_watchdog_is_fed_only_while_the_service_makes_progress(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(0.2)
        port = free_port()
        data = config_data(default_yaml, kafka_bootstrap, unique, port)
        env = {"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000", "FACTORYSIM_FAULT": "driver@2"}
        with service_process(tmp_path, data, env) as (process, log):
            received: list[tuple[float, str]] = []
            while process.poll() is None:
                with contextlib.suppress(TimeoutError):
                    received.append((time.monotonic(), sock.recv(4096).decode()))
            process.wait(30)
    messages = [m for _, m in received]
    assert any(m.startswith("READY=1") for m in messages), messages
    failed = next(at for at, m in received if m.startswith("STATUS=failed: driver"))
    pings = [at for at, m in received if m == "WATCHDOG=1"]
    assert sum(1 for at in pings if at < failed) >= 3  # fed while running (every 0.2 s)
    assert not [at for at in pings if at > failed], "the watchdog was fed after the driver failed"
    assert "not feeding the systemd watchdog: driver failed" in log.read_text()
