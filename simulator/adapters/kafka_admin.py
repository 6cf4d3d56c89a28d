"""Topics at start: create the missing ones, or fail clearly when creation is switched off.

Start-up tells two kinds of problems apart: a cluster that does not answer yet (retried, each
attempt's error reported through ``on_retry`` for ``/health``) and one that answers but refuses
us — an unsupported SASL mechanism, wrong credentials, a certificate that does not verify, no
authorisation — which no retry can fix: that is a configuration error (exit code 2), reported
at once.  aiokafka's bootstrap hides the cause behind "Unable to bootstrap", so a failed attempt
is followed by one direct connection to each server to learn it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

from simulator.config.kafka import TopicCreation
from simulator.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36
# errors of a cluster that answers but refuses us: retrying cannot help
_REFUSALS = (errors.UnsupportedSaslMechanismError, errors.SaslAuthenticationFailed, errors.IllegalSaslStateError,
             errors.AuthenticationFailedError, errors.AuthenticationMethodNotSupported,
             errors.ClusterAuthorizationFailedError, errors.TopicAuthorizationFailedError,
             errors.GroupAuthorizationFailedError, ssl.SSLCertVerificationError)


@dataclass(frozen=True, slots=True)
class StartupProblem:
    """Why the latest attempt to reach the cluster failed, and when."""

    error: str
    at: dt.datetime


async def ensure_topics(options: dict[str, Any], topics: Iterable[str], creation: TopicCreation, *,
                        timeout_s: float = 60.0, on_retry: Callable[[StartupProblem], None] | None = None,
                        partitions: Mapping[str, int] | None = None) -> list[str]:
    """Return the topics that were created (``partitions``: a topic's own partition count, else
    ``creation.partitions``).  Waits for the cluster up to ``timeout_s``; a cluster that refuses
    our security settings is a ConfigError at once."""
    wanted = sorted(set(topics))
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10_000)
    try:
        await _start(admin, options, timeout_s, on_retry)
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        if not creation.enabled:
            raise ConfigError([f"kafka.topic_creation.enabled: false, and these topics do not exist: "
                               f"{', '.join(missing)}"])
        response = await admin.create_topics(
            [NewTopic(t, (partitions or {}).get(t, creation.partitions), creation.replication_factor)
             for t in missing])
        failed = [(t, code, msg) for t, code, msg in response.topic_errors if code not in (0, TOPIC_ALREADY_EXISTS)]
        if failed:
            raise BrokerUnavailable("cannot create topics: " + "; ".join(f"{t}: error {c} {m or ''}".strip()
                                                                        for t, c, m in failed))
        log.info("created topics %s (%d partitions, replication %d)", ", ".join(missing), creation.partitions,
                 creation.replication_factor)
        return missing
    finally:
        await admin.close()


async def wait_for_cluster(options: dict[str, Any], *, timeout_s: float = 60.0,
                           on_retry: Callable[[StartupProblem], None] | None = None) -> None:
    """Return once the cluster answers, retrying as :func:`ensure_topics` does: BrokerUnavailable
    after ``timeout_s``, a ConfigError at once when it refuses our security settings."""
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10_000)
    try:
        await _start(admin, options, timeout_s, on_retry)
    finally:
        await admin.close()


async def _start(admin: AIOKafkaAdminClient, options: dict[str, Any], timeout_s: float,
                 on_retry: Callable[[StartupProblem], None] | None) -> None:
    servers = options["bootstrap_servers"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.2
    while True:
        try:
            await admin.start()
            return
        except KafkaError as exc:
            cause = await connection_error(options) or exc
            if isinstance(cause, _REFUSALS):
                raise ConfigError([f"kafka.security: the cluster at {servers} refuses the connection: "
                                   f"{describe(cause)} (protocol {options.get('security_protocol')}, "
                                   f"SASL mechanism {options.get('sasl_mechanism') or 'none'})"]) from cause
            if on_retry is not None:
                on_retry(StartupProblem(describe(cause), dt.datetime.now(dt.UTC)))
            if loop.time() + delay > deadline:
                raise BrokerUnavailable(f"Kafka at {servers} did not answer within {timeout_s:g} s "
                                        f"({describe(cause)}): start it, or point kafka.bootstrap_servers "
                                        f"(KAFKA_BOOTSTRAP_SERVERS) at a reachable cluster") from exc
            log.warning("Kafka at %s not reachable yet (%s); retrying", servers, describe(cause))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def connection_error(options: dict[str, Any], timeout_ms: int = 5_000) -> BaseException | None:
    """The error of one direct connection (with handshake and authentication) to each bootstrap
    server; None when one of them connects."""
    first: BaseException | None = None
    for server in str(options["bootstrap_servers"]).split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await create_conn(
                host.strip("[]"), int(port), client_id=options.get("client_id", "factorysim"),
                request_timeout_ms=timeout_ms, ssl_context=options.get("ssl_context"),
                security_protocol=options.get("security_protocol", "PLAINTEXT"),
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"))
        except (OSError, KafkaError, TimeoutError) as exc:
            first = first or _root(exc)
            continue
        conn.close()
        return None
    return first


async def start_client(client: Any, options: dict[str, Any]) -> None:
    """``await client.start()`` (a consumer or producer), with its failure told apart as in
    :func:`ensure_topics`: a refusal of our security settings is a ConfigError, anything else
    BrokerUnavailable."""
    try:
        await client.start()
    except KafkaError as exc:
        cause = await connection_error(options) or exc
        if isinstance(cause, _REFUSALS):
            raise ConfigError([f"kafka.security: the cluster at {options['bootstrap_servers']} refuses the "
                               f"connection: {describe(cause)}"]) from cause
        raise BrokerUnavailable(f"Kafka at {options['bootstrap_servers']} is not reachable ({describe(cause)})") \
            from exc


def describe(exc: BaseException) -> str:
    """``Type: text`` of an error, without saying the type twice."""
    text = str(exc)
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def _root(exc: BaseException) -> BaseException:
    """The certificate error behind a connection error, when there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc
