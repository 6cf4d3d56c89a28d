"""``--follow``: read the lot events and the dead-letter topic while lots are sent and tell when
each lot finished (completed or scrapped) or was rejected.

The reader takes every partition of both topics from their current end before the first lot is
sent, without a consumer group (nothing is committed, no other reader is disturbed).  Lead time
is measured end to end: from the instant the lot was handed to the producer to the broker
timestamp of its ``lot.completed`` / ``lot.scrapped`` event; the simulated lead time comes from the
event itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from simulator.errors import BrokerUnavailable
from simulator.lotsender.plan import RUN_HEADER, SEQ_HEADER
from simulator.lotsender.sender import SendStats
from simulator.runtime.waits import wait_for

FINISHED = {b"lot.completed": "completed", b"lot.scrapped": "scrapped"}


@dataclass
class FollowResult:
    completed: int = 0
    scrapped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # tracked lots dead-lettered, by reason
    malformed_dead_lettered: int = 0
    unexpected_reasons: Counter[str] = field(default_factory=Counter)  # "kind: expected → got"
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    lead_times_s: list[float] = field(default_factory=list)  # wall, send → finished event
    sim_lead_times_s: list[float] = field(default_factory=list)
    finished_codes: set[str] = field(default_factory=set)
    dead_lettered_seqs: set[int] = field(default_factory=set)
    timed_out: bool = False


class LotFollower:
    def __init__(self, options: dict[str, Any], events_topic: str, dead_letter_topic: str, run_id: str,
                 stats: SendStats) -> None:
        self.consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                         auto_offset_reset="latest")
        self.topics = (events_topic, dead_letter_topic)
        self.dead_letter_topic = dead_letter_topic
        self.run_header = run_id.encode()
        self.stats = stats
        self.result = FollowResult()
        self.changed = asyncio.Event()

    async def start(self, metadata_timeout_s: float = 15.0) -> None:
        """Connect and pin every partition's current end (before anything is sent)."""
        await self.consumer.start()
        partitions: list[TopicPartition] = []
        deadline = time.monotonic() + metadata_timeout_s
        for topic in self.topics:
            while not (topic in await self.consumer.topics()
                       and (found := self.consumer.partitions_for_topic(topic))):
                if time.monotonic() > deadline:
                    await self.consumer.stop()
                    raise BrokerUnavailable(f"--follow: topic {topic!r} does not exist on the broker "
                                            "(is factorysim running against it?)")
                await asyncio.sleep(0.5)  # the service creates its topics when it starts
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)

    async def stop(self) -> None:
        await self.consumer.stop()

    # -- progress ---------------------------------------------------------------------------------
    def outstanding(self) -> tuple[int, int]:
        """(tracked lots not finished or rejected, malformed messages not dead-lettered)."""
        stats, result = self.stats, self.result
        lots = len(stats.sent_wall) - len(result.finished_codes) - sum(result.rejected.values())
        return max(lots, 0), max(stats.malformed - result.malformed_dead_lettered, 0)

    async def run(self) -> None:
        """Read until cancelled."""
        while True:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    if tp.topic == self.dead_letter_topic:
                        self._dead_letter(message)
                    else:
                        self._event(message)
            if batches:
                self.changed.set()

    async def wait_all(self, timeout_s: float) -> None:
        """Until every sent lot finished or was rejected and every malformed message was dead-lettered,
        or ``timeout_s`` passed (``result.timed_out``)."""
        deadline = time.monotonic() + timeout_s
        while self.outstanding() != (0, 0):
            left = deadline - time.monotonic()
            if left <= 0:
                self.result.timed_out = True
                return
            self.changed.clear()
            try:
                await wait_for(self.changed.wait(), min(left, 1.0))
            except TimeoutError:
                continue

    # -- messages ---------------------------------------------------------------------------------
    def _event(self, message: ConsumerRecord[bytes, bytes]) -> None:
        kind = next((FINISHED[v] for k, v in message.headers if k == "event_type" and v in FINISHED), None)
        if kind is None or message.key is None:
            return
        code = message.key.decode(errors="replace")
        sent_at = self.stats.sent_wall.get(code)
        result = self.result
        if sent_at is None or code in result.finished_codes:
            return
        result.finished_codes.add(code)
        if kind == "completed":
            result.completed += 1
        else:
            result.scrapped += 1
        result.lead_times_s.append(max(message.timestamp / 1000.0 - sent_at, 0.0))
        try:
            body = orjson.loads(message.value) if message.value else {}
        except orjson.JSONDecodeError:
            return
        sim_lead = body.get("lead_time_s") if isinstance(body, dict) else None
        if isinstance(sim_lead, int | float):
            result.sim_lead_times_s.append(float(sim_lead))

    def _dead_letter(self, message: ConsumerRecord[bytes, bytes]) -> None:
        headers = dict(message.headers)
        if headers.get(RUN_HEADER) != self.run_header:
            return
        try:
            seq = int(headers.get(SEQ_HEADER, b""))
        except ValueError:
            return
        planned = self.stats.planned.get(seq)
        result = self.result
        if planned is None or seq in result.dead_lettered_seqs:
            return
        result.dead_lettered_seqs.add(seq)
        reason = headers.get("dlq.reason", b"unknown").decode(errors="replace")
        result.dead_letter_reasons[reason] += 1
        if planned.bad_kind is not None:
            result.malformed_dead_lettered += 1
            if reason != planned.expected_reason:
                result.unexpected_reasons[f"{planned.bad_kind}: expected {planned.expected_reason}, got {reason}"] += 1
        elif planned.lot_code is not None and planned.lot_code not in result.finished_codes:
            result.rejected[reason] += 1
