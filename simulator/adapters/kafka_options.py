"""aiokafka client options from the config: bootstrap servers, security, producer tuning.

Secrets are read here, at start, from the environment variable or file the config names; they
are never part of the config object, never logged and never shown by ``validate-config``.
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulator.config.kafka import Consumer, Kafka, Producer, Security
from simulator.errors import ConfigError

_COMPRESSION_MODULES = {"snappy": "cramjam", "lz4": "cramjam", "zstd": "cramjam"}


def security_options(security: Security, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(security, env)
    if security.protocol.startswith("SASL"):
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username
        options["sasl_plain_password"] = read_secret(
            "kafka.security.sasl_password", security.sasl_password_env, security.sasl_password_file, env)
    return options


def _ssl_context(security: Security, env: Mapping[str, str]) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=security.ssl_cafile)
        context.check_hostname = security.ssl_check_hostname
        if security.ssl_certfile and security.ssl_keyfile:
            password = None
            if security.ssl_keyfile_password_env:
                password = read_secret("kafka.security.ssl_keyfile_password", security.ssl_keyfile_password_env,
                                   None, env)
            context.load_cert_chain(security.ssl_certfile, security.ssl_keyfile, password=password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"kafka.security: cannot load TLS files ({exc})"]) from exc
    return context


def read_secret(key: str, env_name: str | None, file_name: str | None, env: Mapping[str, str]) -> str:
    if env_name is not None:
        value = env.get(env_name)
        if not value:
            raise ConfigError([f"{key}_env: environment variable {env_name} is not set or empty"])
        return value
    assert file_name is not None
    try:
        value = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"{key}_file: cannot read {file_name} ({exc.strerror or exc})"]) from exc
    if not value:
        raise ConfigError([f"{key}_file: {file_name} is empty"])
    return value


def producer_options(producer: Producer) -> dict[str, Any]:
    compression = None if producer.compression_type == "none" else producer.compression_type
    module = _COMPRESSION_MODULES.get(producer.compression_type)
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError([f"kafka.producer.compression_type: {producer.compression_type} needs the Python "
                           f"package {module} (pip install {module}); gzip and none need nothing"])
    return {
        "acks": "all" if producer.acks == "all" else int(producer.acks),
        "linger_ms": producer.linger_ms,
        "max_batch_size": producer.max_batch_size,
        "compression_type": compression,
        "request_timeout_ms": producer.request_timeout_ms,
        "max_request_size": producer.max_request_bytes,  # dead letters are cut to fit (adapters.dead_letters)
        "enable_idempotence": False,  # the embedded broker has no InitProducerId
    }


def client_options(kafka: Kafka, bootstrap_servers: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Options every client (producer, consumer, admin) shares."""
    return {"bootstrap_servers": bootstrap_servers, "client_id": kafka.client_id,
            **security_options(kafka.security, environ)}


def consumer_options(consumer: Consumer, group_id: str) -> dict[str, Any]:
    """A consumer in ``group_id`` that commits by itself (never automatically), from the start."""
    return {"group_id": group_id, "enable_auto_commit": False, "auto_offset_reset": "earliest",
            "session_timeout_ms": consumer.session_timeout_ms,
            "heartbeat_interval_ms": max(300, consumer.session_timeout_ms // 3)}


def orders_fetch_options(consumer: Consumer) -> dict[str, Any]:
    """Fetch limits of the orders consumer: a partition's fetch holds ``max_partition_fetch_bytes``
    (at least two of the largest orders accepted), so that a record batch the broker accepted comes
    back whole; a record that still does not (a broker may cut one that is not the first of its
    fetch) is dead-lettered by the intake as ``unreadable``."""
    return {"max_partition_fetch_bytes": max(consumer.max_partition_fetch_bytes, 2 * consumer.max_order_bytes)}
