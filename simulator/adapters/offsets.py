"""Per-partition offset bookkeeping for at-least-once consumers: commit up to the first message
that is not done yet."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class PartitionOffsets:
    pending: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset seen
    committed: int | None = None

    def take(self, offset: int) -> None:
        self.pending.add(offset)
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
