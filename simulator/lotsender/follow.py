"""``--follow``: read the lot events and the dead-letter topic while lots are sent and tell, for
every message sent, what became of it: its lot finished (completed or scrapped), it was
dead-lettered (with the service's reason), or neither yet.

The reader takes every partition of both topics from their end before the first lot is sent,
without a consumer group (nothing is committed, no other reader is disturbed).  Whatever the
topics hold at that moment is read and dropped: the embedded broker reports a partition's end as
the first offset of its last record batch plus one, so the rest of that batch, written before
anything was sent, would otherwise be read as new.

Accounting is per sent message, not per lot code, because a lot code can be sent again while (or
after) an earlier order of the same code is in the plant:

- a dead letter names the message exactly (the service keeps the ``lot-sender-run`` and
  ``lot-sender-seq`` headers), so a dead-lettered message counts as dead-lettered with its reason,
  whatever events its lot code has;
- lot events carry only the lot code, so a ``lot.completed`` / ``lot.scrapped`` event belongs to
  this run only when this reader saw the lot admitted (``lot.received``) after the start: each
  admission seen accounts for one final event, given to the earliest message of that code that
  has no outcome yet.  The final event of an earlier order of the same code (one admitted before
  the start, still in the plant) is not counted; should a message's dead letter come after a
  final event was given to it, the dead letter wins and the final event goes to another open
  message of that code, if any.

Events are told apart by their ``event_id`` (the service may publish an event twice).  Lead time
is measured end to end: from the instant the message was handed to the producer to the broker
timestamp of its lot's final event; the simulated lead time comes from the event itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from simulator.asyncio_waits import wait_for
from simulator.errors import BrokerUnavailable
from simulator.lotsender.plan import RUN_HEADER, SEQ_HEADER
from simulator.lotsender.sender import SendStats

RECEIVED = b"lot.received"
FINISHED = {b"lot.completed": "completed", b"lot.scrapped": "scrapped"}
DRAIN_WAIT_MS = 300  # at start: how long a fetch may bring nothing before a partition counts as read to its end


@dataclass(frozen=True, slots=True)
class Finish:
    """A lot's final event."""

    kind: str  # completed | scrapped
    broker_time_s: float  # epoch seconds
    sim_lead_time_s: float | None


@dataclass
class FollowResult:
    finished: dict[int, Finish] = field(default_factory=dict)  # seq -> its lot's final event
    lots_dead_lettered: dict[int, str] = field(default_factory=dict)  # seq of a lot -> reason
    malformed_dead_lettered: int = 0
    unexpected_reasons: Counter[str] = field(default_factory=Counter)  # "kind: expected → got"
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)  # every dead letter of this run
    dead_lettered_seqs: set[int] = field(default_factory=set)
    ignored_final_events: int = 0  # final events of a sent lot code that belong to an earlier order
    timed_out: bool = False

    def count(self, kind: str) -> int:
        return sum(1 for finish in self.finished.values() if finish.kind == kind)

    @property
    def rejected(self) -> Counter[str]:
        """Lots dead-lettered, by reason."""
        return Counter(self.lots_dead_lettered.values())

    def lead_times_s(self, sent_wall: dict[int, float]) -> list[float]:
        """Wall seconds from each message's send to its lot's final event."""
        return [max(finish.broker_time_s - sent_wall[seq], 0.0) for seq, finish in self.finished.items()
                if seq in sent_wall]

    def sim_lead_times_s(self) -> list[float]:
        return [f.sim_lead_time_s for f in self.finished.values() if f.sim_lead_time_s is not None]


class Accounting:
    """What became of each sent message, from the lot events and dead letters read (no I/O)."""

    def __init__(self, stats: SendStats, run_id: str) -> None:
        self.stats = stats
        self.run_header = run_id.encode()
        self.result = FollowResult()
        self._admissions: Counter[str] = Counter()  # lot code -> lot.received events seen
        self._given: Counter[str] = Counter()  # lot code -> final events given to a message
        self._seen_events: set[bytes] = set()  # event ids of the sent lot codes' events

    def outstanding(self) -> tuple[int, int]:
        """(sent lots without an outcome yet, malformed messages not dead-lettered)."""
        stats, result = self.stats, self.result
        lots = len(stats.sent_wall) - len(result.finished) - len(result.lots_dead_lettered)
        return max(lots, 0), max(stats.malformed - result.malformed_dead_lettered, 0)

    # -- messages ---------------------------------------------------------------------------------
    def event(self, message: ConsumerRecord[bytes, bytes]) -> None:
        event_type = next((v for k, v in message.headers if k == "event_type"), None)
        if (event_type != RECEIVED and event_type not in FINISHED) or message.key is None:
            return
        code = message.key.decode(errors="replace")
        if code not in self.stats.seqs_by_code:
            return
        event_id = next((v for k, v in message.headers if k == "event_id"), None)
        if event_id is not None:
            if event_id in self._seen_events:
                return  # published again (the service's output is at least once)
            self._seen_events.add(event_id)
        if event_type == RECEIVED:
            self._admissions[code] += 1
            return
        assert event_type is not None
        finish = Finish(FINISHED[event_type], message.timestamp / 1000.0, _sim_lead_time(message.value))
        if self._admissions[code] <= self._given[code] or not self._give(code, finish):
            self.result.ignored_final_events += 1  # the lot of an order admitted before this run

    def _give(self, code: str, finish: Finish) -> bool:
        """Give a final event to the earliest message of ``code`` that has no outcome yet."""
        result = self.result
        for seq in self.stats.seqs_by_code[code]:
            if seq not in result.finished and seq not in result.lots_dead_lettered:
                result.finished[seq] = finish
                self._given[code] += 1
                return True
        return False

    def dead_letter(self, message: ConsumerRecord[bytes, bytes]) -> None:
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
        elif planned.lot_code is not None:
            result.lots_dead_lettered[seq] = reason
            finish = result.finished.pop(seq, None)
            if finish is not None:  # the final event was another order's: the dead letter names this one
                self._given[planned.lot_code] -= 1
                if not self._give(planned.lot_code, finish):
                    result.ignored_final_events += 1

class LotFollower:
    def __init__(self, options: dict[str, Any], events_topic: str, dead_letter_topic: str, run_id: str,
                 stats: SendStats) -> None:
        self.consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                         auto_offset_reset="latest")
        self.topics = (events_topic, dead_letter_topic)
        self.dead_letter_topic = dead_letter_topic
        self.accounting = Accounting(stats, run_id)
        self.result = self.accounting.result
        self.changed = asyncio.Event()

    async def start(self, metadata_timeout_s: float = 15.0) -> None:
        """Connect, take every partition from its end and read what is there (before anything is sent)."""
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
        await self._drain(partitions, deadline)

    async def _drain(self, partitions: list[TopicPartition], deadline: float) -> None:
        """Read and drop what the partitions hold now: nothing has been sent yet, so none of it is
        about this run (see the module's docstring)."""
        unread = set(partitions)
        while unread and time.monotonic() < deadline:
            got = await self.consumer.getmany(*unread, timeout_ms=DRAIN_WAIT_MS, max_records=10_000)
            if not got:
                return  # no partition left has anything to read
            unread -= set(got)

    async def stop(self) -> None:
        await self.consumer.stop()

    # -- progress ---------------------------------------------------------------------------------
    def outstanding(self) -> tuple[int, int]:
        return self.accounting.outstanding()

    async def run(self) -> None:
        """Read until cancelled."""
        while True:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
            accounting = self.accounting
            for tp, messages in batches.items():
                take = accounting.dead_letter if tp.topic == self.dead_letter_topic else accounting.event
                for message in messages:
                    take(message)
            if batches:
                self.changed.set()

    async def wait_all(self, timeout_s: float) -> None:
        """Until every sent message has an outcome (its lot finished or it was dead-lettered) and
        every malformed message was dead-lettered, or ``timeout_s`` passed (``result.timed_out``)."""
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


def _sim_lead_time(value: bytes | None) -> float | None:
    try:
        body = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    sim_lead = body.get("lead_time_s") if isinstance(body, dict) else None
    return float(sim_lead) if isinstance(sim_lead, int | float) else None
