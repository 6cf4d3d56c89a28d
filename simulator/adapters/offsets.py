"""Offset bookkeeping for at-least-once consumers (the order intake and the MQTT bridge): a
message counts as done when its consumer says so, and a partition's offset is committed up to the
first message that is not done yet.

:class:`ConsumerOffsets` is what both consumers share: the partitions' bookkeeping, the commit of
what moved (a failed commit is retried with the next one), and the rebalance steps — commit and
forget on revocation, learn the group's committed offset on assignment."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PartitionOffsets:
    pending: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset seen
    committed: int | None = None
    first_taken: int | None = None  # the first offset taken (where counting committed messages starts)

    def take(self, offset: int) -> None:
        self.pending.add(offset)
        if self.first_taken is None:
            self.first_taken = offset
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def done(self, offset: int) -> None:
        self.pending.discard(offset)

    def position(self) -> int | None:
        """The offset to commit: the first message not done yet, or one past the last seen."""
        if self.pending:
            return min(self.pending)
        return self.next_offset

    def to_commit(self) -> int | None:
        """The position when it moved since the last commit, else None."""
        position = self.position()
        return position if position is not None and position != self.committed else None


class ConsumerOffsets:
    """The partitions a consumer reads, each with its :class:`PartitionOffsets`.  ``what`` names the
    messages in log lines ("order offsets")."""

    def __init__(self, consumer: AIOKafkaConsumer, what: str) -> None:
        self.consumer = consumer
        self.what = what
        self._parts: dict[TopicPartition, PartitionOffsets] = {}
        self.messages_committed = 0  # messages this consumer took whose offsets a commit has covered

    def __iter__(self) -> Iterator[tuple[TopicPartition, PartitionOffsets]]:
        return iter(self._parts.items())

    def get(self, tp: TopicPartition) -> PartitionOffsets | None:
        return self._parts.get(tp)

    def of(self, tp: TopicPartition) -> PartitionOffsets:
        """The partition's bookkeeping, new when the partition is."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = PartitionOffsets()
        return part

    def done(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is not None:
            part.done(offset)

    @property
    def pending(self) -> int:
        """Messages taken and not done yet."""
        return sum(len(p.pending) for p in self._parts.values())

    async def commit(self) -> bool | None:
        """Commit every assigned partition whose position moved: True when committed, False when
        the commit failed (logged; retried with the next one), None when nothing moved."""
        assigned = self.consumer.assignment()
        offsets = {tp: OffsetAndMetadata(position, "") for tp, part in self._parts.items()
                   if tp in assigned and (position := part.to_commit()) is not None}
        if not offsets:
            return None
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - a failed commit is retried with the next one
            log.warning("committing %s failed (%r); will retry", self.what, exc)
            return False
        for tp, meta in offsets.items():
            part = self._parts[tp]
            start = part.committed if part.committed is not None else part.first_taken
            if start is not None:
                self.messages_committed += max(0, meta.offset - max(start, part.first_taken or 0))
            part.committed = meta.offset
        return True

    def committed_positions(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the offset last committed or learnt at assignment (where a new
        consumer of the group starts), for the partitions where it is known."""
        return {(tp.topic, tp.partition): part.committed for tp, part in self._parts.items()
                if part.committed is not None}

    async def revoked(self, partitions: Iterable[TopicPartition]) -> bool | None:
        """A rebalance takes ``partitions`` away: commit what is done (the result of
        :meth:`commit`), then forget them (their messages not done yet are read again by the next
        owner)."""
        committed = await self.commit()
        for tp in partitions:
            self._parts.pop(tp, None)
        return committed

    async def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """A rebalance gives ``partitions``: learn where the group stands on each (the messages
        before it are done)."""
        for tp in partitions:
            part = self.of(tp)
            if part.committed is None:
                with contextlib.suppress(Exception):  # unknown for now: known after the first commit
                    part.committed = await self.consumer.committed(tp)
