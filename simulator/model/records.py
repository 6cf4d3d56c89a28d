"""The immutable log the model emits: frozen, slotted records carrying sim time and ids.

Formats (``simulator.formats``) turn records into wire messages; field names live there.
``seq`` numbers the records of each plant (location) in emission order, from 1 (stable per seed
and inputs): (location, seq) identifies a record within a run.  A record is built with ``seq`` and
``sim_time`` first and every other field by name (``LotEvent(seq, now, event_type=…, location=…)``):
the fields after them are keyword-only, so a call cannot put a value in the wrong one of twenty.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from machines.base import Signals

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Give a frozen slots dataclass an ``__init__`` that sets each slot through its descriptor.

    A frozen dataclass's own ``__init__`` sets every field with ``object.__setattr__`` (to get past
    the ``__setattr__`` that refuses changes), about 0.25 µs a field: a record of 18 fields took
    4.6 µs to build, more than encoding it.  Through the slot descriptors it takes 1.6 µs; the class
    stays frozen (assigning a field still raises ``FrozenInstanceError``) and its fields, defaults,
    ``repr`` and equality are the dataclass's.  Keyword-only fields (after ``_: KW_ONLY``, or all with
    ``kw_only=True``) are keyword-only parameters here too, as in the dataclass's ``__init__``."""
    namespace: dict[str, Any] = {}
    params: list[str] = []
    keyword_only: list[str] = []
    body: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: quick_init does not do default factories")
        namespace[f"_set_{field.name}"] = getattr(cls, field.name).__set__
        if field.default is dataclasses.MISSING:
            param = field.name
        else:
            namespace[f"_default_{field.name}"] = field.default
            param = f"{field.name}=_default_{field.name}"
        (keyword_only if field.kw_only else params).append(param)
        body.append(f"    _set_{field.name}(self, {field.name})")
    if keyword_only:
        params += ["*", *keyword_only]
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # noqa: S102 - generated from the dataclass's own field names, as dataclasses does
    cls.__init__ = namespace["__init__"]  # type: ignore[method-assign]
    return cls


@quick_init
@dataclass(frozen=True, slots=True)
class LotEvent:
    """A lot lifecycle or machine event (``event_type`` from :data:`EVENT_TYPES`)."""

    kind: ClassVar[str] = "lot_event"
    seq: int
    sim_time: float
    _: KW_ONLY
    event_type: str
    location: str
    lot_code: str | None = None
    stage: str | None = None
    machine_id: str | None = None
    priority: str | None = None
    quantity: int | None = None
    customer: str | None = None
    lot_state: str | None = None
    reason: str | None = None  # block reason / scrap reason
    cause: str | None = None  # "cycle_block" | "failure" for machine.blocked/repaired
    waited_s: float | None = None
    processed_s: float | None = None
    lead_time_s: float | None = None
    rework_count: int | None = None
    outcome: str | None = None  # test result on stage.completed: "pass" | "rework" | "scrap"


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class MachineCounters:
    """A machine's running totals at the instant of a record (the inputs of OEE and part counts).

    Times are simulated seconds since the start of the run.  ``planned_s`` is the time the machine
    was scheduled to work (not off shift, not in planned maintenance); ``ideal_s`` the sum of the
    ideal cycle times of the cycles it ran.  Pieces are counted per lot quantity: a cycle whose
    test outcome is rework or scrap counts its pieces as bad.
    """

    cycles: int
    good_cycles: int
    good_pieces: int
    bad_pieces: int
    running_s: float
    blocked_s: float
    planned_s: float
    ideal_s: float

    @property
    def availability(self) -> float:
        return self.running_s / self.planned_s if self.planned_s > 0 else 0.0

    @property
    def performance(self) -> float:
        return min(1.0, self.ideal_s / self.running_s) if self.running_s > 0 else 0.0

    @property
    def quality(self) -> float:
        return self.good_cycles / self.cycles if self.cycles else 0.0

    @property
    def oee(self) -> float:
        return self.availability * self.performance * self.quality


@quick_init
@dataclass(frozen=True, slots=True)
class CycleTelemetry:
    """One completed stage cycle of one lot on one machine (the reference per-stage message)."""

    kind: ClassVar[str] = "cycle"
    seq: int
    sim_time: float  # end of the cycle
    _: KW_ONLY
    location: str
    stage: str
    machine_id: str
    machine_type: str
    lot_code: str
    priority: str
    quantity: int
    state: str  # machine state at emission
    blocked: bool  # the cycle was interrupted by a block or failure
    block_reason: str | None
    blocked_s: float
    last_maintenance_sim_s: float
    pieces_since_maintenance: int
    cycle_time_s: float  # wall span of the cycle including blocked time
    processed_s: float  # pure processing time
    alarms: str
    test_outcome: str | None
    signals: Signals
    counters: MachineCounters | None = None
    anomaly: str | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class MachineSample:
    """A periodic sample of one machine, whatever its state."""

    kind: ClassVar[str] = "sample"
    seq: int
    sim_time: float
    _: KW_ONLY
    location: str
    machine_id: str
    machine_type: str
    state: str
    lot_code: str | None
    stage: str | None
    block_reason: str | None
    last_maintenance_sim_s: float
    pieces_since_maintenance: int
    interval_s: float
    alarms: str
    signals: Signals
    counters: MachineCounters | None = None
    anomaly: str | None = None


Record = LotEvent | CycleTelemetry | MachineSample

EVENT_TYPES = (
    "lot.received",
    "lot.queued",
    "stage.started",
    "stage.completed",
    "machine.blocked",
    "machine.repaired",
    "maintenance.started",
    "maintenance.completed",
    "lot.reworked",
    "lot.scrapped",
    "lot.completed",
)


class Sink(Protocol):
    """Where the model reports: one synchronous, non-blocking call per record."""

    def emit(self, record: Record) -> None: ...


class ListSink:
    """Keeps every record in memory (tests, small offline runs)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def emit(self, record: Record) -> None:
        self.records.append(record)


class NullSink:
    """Discards records (benchmarks, statistics-only runs)."""

    def emit(self, record: Record) -> None:
        return None
