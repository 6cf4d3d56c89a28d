"""Adapter option paths: Kafka security and producer options, systemd notify, the unit file."""

from __future__ import annotations

import asyncio
import configparser
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.kafka_options import client_options, producer_options, security_options
from simulator.adapters.systemd import SystemdNotifier
from simulator.config.kafka import Kafka, Producer, Security
from simulator.errors import ConfigError

from harness.service import running_service, service_config

ROOT = Path(__file__).resolve().parents[1]


def test_plaintext_is_the_default() -> None:
    assert security_options(Security(), {}) == {"security_protocol": "PLAINTEXT"}


def test_sasl_password_from_environment_is_used_and_never_in_the_config() -> None:
    security = Security(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="sim",
                        sasl_password_env="KAFKA_PASSWORD")
    options = security_options(security, {"KAFKA_PASSWORD": "s3cret"})
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "sim"
    assert options["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(security.model_dump())


def test_sasl_password_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n", encoding="utf-8")
    security = Security(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                        sasl_password_file=str(secret))
    assert security_options(security, {})["sasl_plain_password"] == "from-file"


def test_missing_secrets_name_the_key(tmp_path: Path) -> None:
    by_env = Security(protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password_env="NOPE")
    with pytest.raises(ConfigError, match=r"kafka\.security\.sasl_password_env: environment variable NOPE is not set"):
        security_options(by_env, {})
    by_file = Security(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                       sasl_password_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"kafka\.security\.sasl_password_file: cannot read"):
        security_options(by_file, {})


def test_ssl_builds_a_verifying_context() -> None:
    options = security_options(Security(protocol="SSL"), {})
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    security = Security(protocol="SSL", ssl_cafile=str(tmp_path / "ca.pem"))
    with pytest.raises(ConfigError, match=r"kafka\.security: cannot load TLS files"):
        security_options(security, {})


@pytest.mark.parametrize(("changes", "message"), [
    ({"protocol": "SASL_SSL"}, "needs sasl_mechanism"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "needs sasl_username"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"}, "exactly one of"),
    ({"sasl_mechanism": "PLAIN"}, "sasl_mechanism needs protocol SASL_PLAINTEXT or SASL_SSL"),
    ({"protocol": "SSL", "ssl_certfile": "c.pem"}, "ssl_certfile and ssl_keyfile go together"),
])
def test_inconsistent_security_settings_are_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Security(**changes)


def test_producer_options() -> None:
    options = producer_options(Producer(acks="1", linger_ms=7, compression_type="gzip"))
    assert options["acks"] == 1
    assert options["linger_ms"] == 7
    assert options["compression_type"] == "gzip"
    assert options["enable_idempotence"] is False
    assert producer_options(Producer())["compression_type"] is None
    options = client_options(Kafka(), "h:1", {})
    assert options["bootstrap_servers"] == "h:1"
    assert options["client_id"] == "factorysim"


def _listen(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(10)
    return sock


def test_systemd_notifier_speaks_the_protocol(tmp_path: Path) -> None:
    with _listen(tmp_path) as sock:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "4000000"})
        assert notifier.watchdog_interval_s == 2.0
        assert notifier.ready("up")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
        assert notifier.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    silent = SystemdNotifier({})
    assert not silent.enabled
    assert silent.ready() is False


async def test_service_notifies_ready_watchdog_and_stopping(default_yaml: dict[str, Any], unique: str,
                                                           tmp_path: Path) -> None:
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    with _listen(tmp_path) as sock:
        sock.setblocking(False)
        async with EmbeddedBroker() as broker, running_service(
                service_config(default_yaml, broker.bootstrap_servers, unique), environ=environ):
            seen: list[bytes] = []
            for _ in range(100):
                try:
                    seen.append(sock.recv(100))
                except BlockingIOError:
                    await asyncio.sleep(0.05)
                if any(m.startswith(b"READY=1") for m in seen) and b"WATCHDOG=1" in seen:
                    break
        sock.setblocking(True)
        sock.settimeout(5)
        rest = []
        try:
            while True:
                rest.append(sock.recv(100))
        except TimeoutError:
            pass
    assert any(m.startswith(b"READY=1") for m in seen)
    assert b"WATCHDOG=1" in seen
    assert b"STOPPING=1" in seen + rest


def test_unit_file_is_a_hardened_notify_service() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "tools" / "systemd" / "factorysim.service")
    service = parser["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    assert service["User"] != "root"
    for option in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[option] == "yes", option
    assert service["ProtectSystem"] == "strict"
    assert service["ExecStart"].endswith("factorysim run")
    assert "EnvironmentFile" in service
