"""Topics at start: create the missing ones, or fail clearly when creation is switched off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from simulator.config_schema import TopicCreation
from simulator.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(options: dict[str, Any], topics: Iterable[str], creation: TopicCreation, *,
                        timeout_s: float = 60.0) -> list[str]:
    """Return the topics that were created.  Waits for the cluster up to ``timeout_s``."""
    wanted = sorted(set(topics))
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10_000)
    try:
        await _start(admin, options["bootstrap_servers"], timeout_s)
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        if not creation.enabled:
            raise ConfigError([f"kafka.topic_creation.enabled: false, and these topics do not exist: "
                               f"{', '.join(missing)}"])
        response = await admin.create_topics(
            [NewTopic(t, creation.partitions, creation.replication_factor) for t in missing])
        failed = [(t, code, msg) for t, code, msg in response.topic_errors if code not in (0, TOPIC_ALREADY_EXISTS)]
        if failed:
            raise BrokerUnavailable("cannot create topics: " + "; ".join(f"{t}: error {c} {m or ''}".strip()
                                                                        for t, c, m in failed))
        log.info("created topics %s (%d partitions, replication %d)", ", ".join(missing), creation.partitions,
                 creation.replication_factor)
        return missing
    finally:
        await admin.close()


async def _start(admin: AIOKafkaAdminClient, servers: str, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.2
    while True:
        try:
            await admin.start()
            return
        except KafkaError as exc:
            if loop.time() + delay > deadline:
                raise BrokerUnavailable(f"Kafka at {servers} did not answer within {timeout_s:.0f} s ({exc!r})") \
                    from exc
            log.warning("Kafka at %s not reachable yet (%r); retrying", servers, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
