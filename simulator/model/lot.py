"""Lots and their state machine; an illegal transition is a bug and raises."""

from __future__ import annotations

import random
from enum import StrEnum
from typing import TYPE_CHECKING

from simulator.config.plant import PRIORITY_RANK
from simulator.errors import IllegalTransition
from simulator.model.randomness import stream

if TYPE_CHECKING:
    from simulator.model.events import Entry
    from simulator.model.machine import Machine


class LotState(StrEnum):
    RECEIVED = "RECEIVED"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    BLOCKED = "BLOCKED"
    REWORK = "REWORK"
    COMPLETED = "COMPLETED"
    SCRAPPED = "SCRAPPED"


ALLOWED: dict[LotState, frozenset[LotState]] = {
    LotState.RECEIVED: frozenset({LotState.QUEUED}),
    LotState.QUEUED: frozenset({LotState.PROCESSING}),
    LotState.PROCESSING: frozenset(
        {LotState.BLOCKED, LotState.QUEUED, LotState.REWORK, LotState.COMPLETED, LotState.SCRAPPED}
    ),
    LotState.BLOCKED: frozenset({LotState.PROCESSING}),
    LotState.REWORK: frozenset({LotState.QUEUED}),
    LotState.COMPLETED: frozenset(),
    LotState.SCRAPPED: frozenset(),
}
FINAL = frozenset({LotState.COMPLETED, LotState.SCRAPPED})


class Lot:
    """A production order moving through the route."""

    __slots__ = (
        "_rng", "_run_seed", "arrived_at", "block_at", "block_reason", "blocked_s", "code", "customer",
        "entry", "halted_at", "location", "machine", "priority", "quantity", "queued_at", "rank", "reworks",
        "segment_start", "stage", "stage_index", "started", "state", "work", "work_done",
    )

    def __init__(self, code: str, customer: str, quantity: int, location: str, priority: str,
                 arrived_at: float, rng: random.Random | None = None, priority_processing: bool = True, *,
                 run_seed: int = 0) -> None:
        self.code = code
        self.customer = customer
        self.quantity = quantity
        self.location = location
        self.priority = priority
        self.rank = PRIORITY_RANK[priority] if priority_processing else 1
        self.arrived_at = arrived_at
        # the lot's own stream (processing times, test outcomes); without one given it is
        # ``stream(run_seed, "lot", code)``, made on first use: a queued lot holds no generator
        # state (2.5 KB) and admitting it derives no seed
        self._rng = rng
        self._run_seed = run_seed
        self.state = LotState.RECEIVED
        self.stage: str | None = None
        self.reworks = 0
        # progress in the current stage (see simulator.model.production)
        self.stage_index = 0
        self.queued_at = arrived_at
        self.started = arrived_at
        self.machine: Machine | None = None
        self.work = 0.0  # seconds of work the stage needs
        self.work_done = 0.0  # seconds of it done before the current segment
        self.block_at: float | None = None  # the work done at which the per-cycle block stops the machine
        self.blocked_s = 0.0
        self.block_reason: str | None = None  # the last block's reason in this stage
        self.segment_start = arrived_at
        self.entry: Entry | None = None  # the end of the segment being worked
        self.halted_at = arrived_at  # when its machine stopped (interrupted work)

    @property
    def rng(self) -> random.Random:
        rng = self._rng
        if rng is None:
            rng = self._rng = stream(self._run_seed, "lot", self.code)
        return rng

    def to(self, new: LotState, stage: str | None = None) -> None:
        if new not in ALLOWED[self.state]:
            raise IllegalTransition(f"lot {self.code}: {self.state} -> {new} is not allowed")
        self.state = new
        if stage is not None:
            self.stage = stage

    @property
    def done(self) -> bool:
        return self.state in FINAL

    def __repr__(self) -> str:
        return f"Lot({self.code!r}, {self.location}, {self.priority}, {self.state}, {self.stage})"
