"""Start-up failures of ``factorysim run`` and ``factorysim bridge`` are one line on stderr naming the
problem and the fix, with the documented exit code: a busy HTTP port, an address it may not listen
on, an unreachable Kafka cluster (waited for, then one line).  No broker is needed here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from simulator.adapters.listening import PortSetting, listen
from simulator.config.loader import load
from simulator.errors import PortInUse, UsageError
from simulator.net import free_port
from simulator.programs.bridge import Bridge

from harness.cli_process import ROOT, busy_port, factorysim

CONFIG = str(ROOT / "config.yaml")
BRIDGE_CONFIG = str(ROOT / "profiles" / "smart-factory.yaml")


def _nothing_listening() -> dict[str, str]:
    """Kafka on a port where nothing listens, waited for briefly (should a start get that far)."""
    return {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "FACTORYSIM__KAFKA__STARTUP_TIMEOUT_S": "1.5"}


def test_run_on_a_busy_port_says_which_port_and_how_to_change_it(tmp_path: Path) -> None:
    with busy_port() as port:
        ended = factorysim("run", "--config", CONFIG, env={**_nothing_listening(), "HEALTH_CHECK_PORT": str(port),
                                                           "RUNTIME_DIRECTORY": str(tmp_path)})
    assert ended.code == 1
    message = ended.message
    assert ended.lines == [message]
    assert message.startswith(f"factorysim: port {port} (http.port) is already in use")
    assert "HEALTH_CHECK_PORT" in message
    assert "http.port: 0 takes any free port" in message


@pytest.mark.parametrize("how", ["flag", "env"])
def test_bridge_on_a_busy_port_says_which_port_and_how_to_change_it(how: str) -> None:
    with busy_port() as port:
        argv, env = ["bridge", "--config", BRIDGE_CONFIG], _nothing_listening()
        if how == "flag":
            argv += ["--http-port", str(port)]
        else:
            env["FACTORYSIM__MQTT__BRIDGE__HTTP_PORT"] = str(port)
        ended = factorysim(*argv, env=env)
    assert ended.code == 1
    message = ended.message
    assert ended.lines == [message]
    assert message.startswith(f"factorysim: port {port} (mqtt.bridge.http_port) is already in use")
    for way in ("--http-port PORT", "FACTORYSIM__MQTT__BRIDGE__HTTP_PORT", "mqtt.bridge.http_port: 0"):
        assert way in message


@pytest.mark.parametrize("command", ["bridge", "run"])
def test_unreachable_kafka_is_retried_then_one_line_with_exit_code_1(command: str, tmp_path: Path) -> None:
    env = {**_nothing_listening(), "HEALTH_CHECK_PORT": "0", "FACTORYSIM_HTTP_HOST": "127.0.0.1",
           "RUNTIME_DIRECTORY": str(tmp_path)}
    argv = ["bridge", "--config", BRIDGE_CONFIG, "--http-port", "0"] if command == "bridge" else \
        ["run", "--config", CONFIG]
    ended = factorysim(*argv, env=env)
    assert ended.code == 1
    servers = env["KAFKA_BOOTSTRAP_SERVERS"]
    assert ended.message.startswith(f"factorysim: Kafka at {servers} did not answer within 1.5 s")
    assert "KAFKA_BOOTSTRAP_SERVERS" in ended.message
    assert f"Kafka at {servers} not reachable yet" in ended.stderr  # it was retried, as the service does


async def test_the_bridge_reports_the_start_up_problem_in_health_and_stops_at_once() -> None:
    config = load(BRIDGE_CONFIG, environ=_nothing_listening(), overrides={"kafka.startup_timeout_s": 60})
    bridge = Bridge(config, http_port=0)
    run = asyncio.create_task(bridge.run())
    for _ in range(200):
        if bridge.startup_problem is not None:
            break
        await asyncio.sleep(0.05)
    health = bridge.health()
    assert health["status"] == "unhealthy"
    assert health["state"] == "starting"
    assert "ConnectionRefusedError" in health["kafka"]["last_error"]
    assert health["kafka"]["last_error_at"].endswith("Z")
    async with aiohttp.ClientSession() as http:  # its health endpoint answers as the service's does
        async with http.get(f"http://127.0.0.1:{bridge.http_port}/health/ready") as response:
            assert response.status == 503
            reasons = (await response.json())["reasons"]
        async with http.get(f"http://127.0.0.1:{bridge.http_port}/health") as response:
            assert response.status == 503
    assert reasons[0] == "the bridge is starting"
    assert reasons[1].startswith("Kafka is not reachable (") and "ConnectionRefusedError" in reasons[1]
    bridge.request_stop()
    await asyncio.wait_for(run, 10)  # a stop during start-up ends the start at once, without an error


async def test_an_address_of_another_machine_names_http_host() -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        with pytest.raises(UsageError, match=r"^http\.host: cannot listen on '192\.0\.2\.1'"):
            await listen(runner, "192.0.2.1", 0, PortSetting("http.port"))  # TEST-NET-1: nobody's address
        with busy_port() as port, pytest.raises(PortInUse, match=rf"^port {port} \(http\.port\)"):
            await listen(runner, "0.0.0.0", port, PortSetting("http.port"))  # noqa: S104
    finally:
        await runner.cleanup()
