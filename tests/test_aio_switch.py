"""The SpaceShip profile's Azure IoT Operations target (README "Azure IoT Operations"): one variable,
AIO_ENABLED=true, makes the service publish to the target ``aio`` — MQTT 5 with K8S-SAT, the token
read from SAT_TOKEN_PATH, the client id of MQTT_CLIENT_ID, the topics under MQTT_TOPIC_PREFIX —
while the target ``local``, switched off, never connects; without it, the reverse."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from simulator.config.loader import load
from simulator.config.schema import Config

from harness.fake_broker import ConnectCapture
from harness.service import running_service, wait_for

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "spaceship.yaml"
FAST_RECONNECT = {"initial_s": 0.05, "max_s": 0.2, "jitter": 0.5}


def spaceship(bootstrap: str, unique: str, environ: dict[str, str], aio: ConnectCapture,
              local: ConnectCapture) -> Config:
    """The profile with Kafka on ``bootstrap`` (topics unique to the test) and its two targets on
    the two capturing listeners (without TLS, which the listeners do not speak)."""
    targets = {"AIO": aio, "LOCAL": local}
    return load(PROFILE, environ={
        **environ,
        **{f"FACTORYSIM__MQTT__TARGETS__{name}__HOST": capture.host for name, capture in targets.items()},
        **{f"FACTORYSIM__MQTT__TARGETS__{name}__PORT": str(capture.port) for name, capture in targets.items()},
        "FACTORYSIM__MQTT__TARGETS__AIO__TLS__ENABLED": "false",
    }, overrides={
        "simulation.speed": 600,
        "kafka.bootstrap_servers": bootstrap,
        "kafka.topics": {"orders": f"{unique}.orders", "telemetry_prefix": f"{unique}.telemetry",
                         "events": f"{unique}.events", "dead_letter": f"{unique}.dead_letter",
                         "journal": f"{unique}.journal", "snapshots": f"{unique}.snapshots"},
        "kafka.consumer.group_id": f"{unique}-group",
        "kafka.producer.linger_ms": 5,
        "http": {"host": "127.0.0.1", "port": 0,
                 "generated_token_file": str(Path(tempfile.gettempdir()) / "factorysim-tests" / f"{unique}.token")},
        "mqtt.targets.*.reconnect": FAST_RECONNECT,
    })


async def test_aio_enabled_publishes_to_azure_iot_operations_with_k8s_sat(
        kafka_bootstrap: str, unique: str, connect_capture: ConnectCapture, tmp_path: Path) -> None:
    token = tmp_path / "broker-sat"
    token.write_bytes(b"eyJhbGciOiJSUzI1NiJ9.service-account.signature\n")
    prefix = f"yard-{unique}"
    async with ConnectCapture() as local:
        config = spaceship(kafka_bootstrap, unique, {
            "AIO_ENABLED": "true", "SAT_TOKEN_PATH": str(token), "MQTT_AUTH_METHOD": "K8S-SAT",
            "MQTT_CLIENT_ID": "factory-sim-{pid}", "MQTT_TOPIC_PREFIX": prefix}, connect_capture, local)
        async with running_service(config) as service:
            assert [p.name for p in service.mqtt] == ["aio"]
            connect = (await connect_capture.wait_connects(1))[0]
            await connect_capture.wait_for(
                lambda: {f"{prefix}/cnc", f"{prefix}/3dprinter"} <= {p.topic for p in connect_capture.publishes},
                30, "CNC and 3D printer telemetry under the prefix")
            (target,) = service.health()["mqtt"]["targets"]
        assert local.connects == []
    assert (connect.protocol_level, connect.auth_method, connect.auth_data) == (
        5, "K8S-SAT", b"eyJhbGciOiJSUzI1NiJ9.service-account.signature")
    assert connect.client_id == f"factory-sim-{os.getpid()}"
    assert (target["name"], target["auth"], target["format"]) == ("aio", "k8s-sat", "spaceship")
    assert all(p.topic.startswith((f"{prefix}/", "factorysim/")) for p in connect_capture.publishes)


async def test_without_the_variable_only_the_local_target_connects(
        kafka_bootstrap: str, unique: str, connect_capture: ConnectCapture) -> None:
    async with ConnectCapture() as aio:
        config = spaceship(kafka_bootstrap, unique, {"SAT_TOKEN_PATH": "/nonexistent/broker-sat"}, aio,
                           connect_capture)
        async with running_service(config) as service:
            assert [p.name for p in service.mqtt] == ["local"]
            await connect_capture.wait_for(lambda: any(p.topic == "factory/cnc" for p in connect_capture.publishes),
                                           30, "CNC telemetry on the local target")
            await wait_for(lambda: service.mqtt[0].messages_acknowledged > 0, 10, "acknowledged messages")
        assert aio.connects == []  # nor was the missing token ever read
