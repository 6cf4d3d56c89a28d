"""MQTT connection options from a target's config: client id, TLS context, credentials, K8S-SAT.

Secrets (password, service-account token) are read at connect time from the environment variable
or file the config names; they are never logged.  The K8S-SAT token is read again for every
connection attempt because Kubernetes rotates it.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import Any

from simulator.adapters.kafka_options import read_secret
from simulator.config.mqtt import MqttTarget
from simulator.errors import ConfigError

K8S_SAT = "K8S-SAT"
CLIENT_ID_FIELDS = ("name", "hostname", "pid", "instance")
TOPIC_FIELDS = ("client_id", "name")


def render(template: str, key: str, allowed: tuple[str, ...], **values: object) -> str:
    """Fill ``{placeholders}``; an unknown one is a ConfigError naming ``key`` and the allowed ones."""
    try:
        parts = [(field, spec, conversion) for _, field, spec, conversion in Formatter().parse(template)
                 if field is not None]
    except ValueError as exc:
        raise ConfigError([f"{key}: {exc}"]) from None
    # a placeholder as it is: a format spec ({client_id:999999999}) could build a huge string
    unknown = [field + (f"!{c}" if c else "") + (f":{spec}" if spec else "") for field, spec, c in parts
               if field not in allowed or spec or c]
    if unknown:
        raise ConfigError([f"{key}: unknown placeholder {{{unknown[0]}}}; allowed: "
                           + ", ".join(f"{{{a}}}" for a in allowed)])
    return template.format(**values)


def client_id(target: MqttTarget, instance: str) -> str:
    return render(target.client_id, f"mqtt.targets.{target.name}.client_id", CLIENT_ID_FIELDS,
                  name=target.name, hostname=socket.gethostname(), pid=os.getpid(), instance=instance)


def availability_topic(target: MqttTarget, cid: str) -> str | None:
    if target.availability_topic is None:
        return None
    return render(target.availability_topic, f"mqtt.targets.{target.name}.availability_topic", TOPIC_FIELDS,
                  client_id=cid, name=target.name)


def tls_context(target: MqttTarget) -> ssl.SSLContext | None:
    tls = target.tls
    if not tls.enabled:
        return None
    key = f"mqtt.targets.{target.name}.tls"
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.cert_file and tls.key_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{key}: cannot load TLS files ({exc})"]) from exc
    return context


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None
    password: str | None
    properties: dict[str, Any]  # MQTT 5 CONNECT properties (enhanced authentication)


def credentials(target: MqttTarget, environ: Mapping[str, str] | None = None) -> Credentials:
    """What the next CONNECT carries; call it for every connection attempt."""
    auth = target.auth
    env = os.environ if environ is None else environ
    key = f"mqtt.targets.{target.name}.auth"
    if auth.method == "password":
        password = read_secret(f"{key}.password", auth.password_env, auth.password_file, env)
        return Credentials(auth.username, password, {})
    if auth.method == "k8s-sat":
        try:
            token = Path(auth.token_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError([f"{key}.token_file: cannot read the service account token {auth.token_file} "
                               f"({exc.strerror or exc})"]) from exc
        if not token:
            raise ConfigError([f"{key}.token_file: {auth.token_file} is empty"])
        return Credentials(auth.username, None, {"auth_method": K8S_SAT, "auth_data": token})
    return Credentials(auth.username, None, {})
