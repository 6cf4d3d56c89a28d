"""The snapshot's wire form: the model's state of a run at one instant, as Kafka messages.

A snapshot is an envelope around the model's document (:mod:`simulator.model.snapshot`): the run
id, the fingerprint of the config's model part, the model's snapshot version, the simulated time,
per plant the number of its last input applied (``inputs_through``, the journal's input ``seq``)
and of its last output record (``output_through``), and the wall-clock instant it was taken.

A snapshot the service writes also marks where the journal stood (:class:`JournalMark`): per
journal partition an offset at or before every entry written after the snapshot was asked for
(the partition's end, queried before), so a start reads the journal from there instead of from its
beginning; what the run's ``start`` and newest ``clock`` entries say; and the orders journaled
whose offsets may not be committed yet (read again after a crash, they are not admitted twice).

On Kafka the envelope is compact JSON compressed with zlib, cut into parts that each fit one
message (:func:`part_bytes`).  Every part is keyed by the run id (a run's snapshots stay in order
on one partition) and its value is one line of JSON (run id, snapshot id, part index, part count,
total size and the SHA-256 of the whole compressed content) followed by its slice of the content.
:func:`assemble` puts the parts together again and checks them; a snapshot that cannot be read
(a part missing or damaged, a checksum that does not match, content that is not an envelope) is a
:class:`SnapshotCorrupt` naming the reason.

``GET /snapshot`` and ``factorysim simulate --from-snapshot`` use the envelope as plain JSON
(:func:`to_json` / :func:`from_json`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from simulator.formats import WireMessage, fields

ENVELOPE_VERSION = 1
PART_VERSION = 1
CONTENT_TYPE = b"application/vnd.factorysim.snapshot-part"
HEADROOM_BYTES = 16 * 1024  # a message's key, headers, part header and batch framing
_COMPRESSION_LEVEL = 6


class SnapshotCorrupt(ValueError):
    """A snapshot that cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Clock:
    """The clock entry in force: simulated time ``at`` at the wall-clock instant ``wall``."""

    at: float
    wall: float
    speed: float | None  # None: as fast as possible
    paused: bool = False
    commanded: bool = False  # speed and pause were set by a runtime command


@dataclass(frozen=True, slots=True)
class JournalMark:
    """Where the run's journal stood when a snapshot was taken (see the module's docstring)."""

    partitions: int  # the journal topic's partition count then
    offsets: dict[int, int]  # partition -> read from here: every entry written after the snapshot is at or after it
    seed: int  # the run's start entry: its seed ...
    start: dt.datetime  # ... and the calendar instant of simulated time 0
    clock: Clock | None  # the newest clock entry
    # "topic/partition" -> offsets of orders journaled whose offsets may not be committed yet
    sources: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    run_id: str
    fingerprint: str  # Config.model_fingerprint of the run
    model_version: int  # simulator.model.snapshot.SNAPSHOT_VERSION of the document
    sim_time_s: float
    inputs_through: dict[str, int]  # per plant: the journal seq of its last input applied
    output_through: dict[str, int]  # per plant: the number of its last output record
    taken_at: float  # wall clock, Unix seconds
    document: dict[str, Any] = field(repr=False)
    snapshot_id: str = ""
    journal: JournalMark | None = None  # None: a start reads the whole journal

    @property
    def taken_at_utc(self) -> str:
        return dt.datetime.fromtimestamp(self.taken_at, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Part:
    """One part's header as read from its message (the slice itself follows it)."""

    run_id: str
    snapshot_id: str
    index: int
    count: int
    size: int  # of the whole compressed content
    sha256: str  # of the whole compressed content
    data: bytes = field(repr=False)


def new_snapshot_id() -> str:
    return uuid.uuid4().hex[:16]


# -- the envelope as JSON ---------------------------------------------------------------------------
def to_json(snapshot: Snapshot) -> dict[str, Any]:
    return {"v": ENVELOPE_VERSION, "id": snapshot.snapshot_id, "run": snapshot.run_id,
            "fingerprint": snapshot.fingerprint, "model_version": snapshot.model_version,
            "sim_time_s": snapshot.sim_time_s, "inputs_through": dict(sorted(snapshot.inputs_through.items())),
            "output_through": dict(sorted(snapshot.output_through.items())), "taken_at": snapshot.taken_at_utc,
            **({} if snapshot.journal is None else {"journal": _mark_json(snapshot.journal)}),
            "document": snapshot.document}


def _mark_json(mark: JournalMark) -> dict[str, Any]:
    clock = mark.clock
    return {"partitions": mark.partitions, "offsets": {str(p): o for p, o in sorted(mark.offsets.items())},
            "seed": mark.seed, "start": mark.start.isoformat().replace("+00:00", "Z"),
            "clock": None if clock is None else {"at": clock.at, "wall": clock.wall, "speed": clock.speed,
                                                 "paused": clock.paused, "commanded": clock.commanded},
            "sources": {where: offsets for where, offsets in sorted(mark.sources.items())}}


def _mark(data: Any) -> JournalMark | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError("journal must be an object")
    offsets, sources, clock = data["offsets"], data.get("sources", {}), data.get("clock")
    if not isinstance(offsets, dict) or not isinstance(sources, dict):
        raise TypeError("journal.offsets and journal.sources must be objects")
    if clock is not None and not isinstance(clock, dict):
        raise TypeError("journal.clock must be an object")
    partitions = fields.integer(data, "partitions", minimum=1)
    marks = {fields.checked_integer(int(p), "journal.offsets partition", minimum=0):
             fields.checked_integer(o, f"journal.offsets.{p}", minimum=0) for p, o in offsets.items()}
    if any(p >= partitions for p in marks):
        raise ValueError(f"journal.offsets names a partition beyond the {partitions} it counts")
    speed = None if clock is None else clock.get("speed")
    return JournalMark(
        partitions, marks, fields.integer(data, "seed"), fields.instant(data, "start"),
        None if clock is None else Clock(fields.seconds(clock, "at"), fields.seconds(clock, "wall"),
                                         None if speed is None else _speed(speed), bool(clock.get("paused", False)),
                                         clock.get("commanded") is True),
        {str(where): [fields.checked_integer(o, f"journal.sources.{where}", minimum=0) for o in _list(listed)]
         for where, listed in sources.items()})


def _speed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise TypeError("journal.clock.speed must be a positive number or null")
    return float(value)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("journal.sources lists offsets")
    return value


def from_json(data: Any) -> Snapshot:
    """The snapshot of an envelope (raises SnapshotCorrupt when it is not one)."""
    if not isinstance(data, dict):
        raise SnapshotCorrupt("a snapshot is a JSON object")
    if data.get("v") != ENVELOPE_VERSION:
        raise SnapshotCorrupt(f"snapshot envelope version {data.get('v')!r}; this factorysim reads version "
                              f"{ENVELOPE_VERSION}")
    try:
        taken = fields.instant(data, "taken_at")
        document = data["document"]
        if not isinstance(document, dict):
            raise TypeError("document must be a JSON object")
        return Snapshot(fields.text(data, "run"), fields.text(data, "fingerprint"),
                        fields.integer(data, "model_version", minimum=0), fields.seconds(data, "sim_time_s"),
                        _seqs(data, "inputs_through"), _seqs(data, "output_through"),
                        taken.timestamp(), document, fields.text(data, "id"), _mark(data.get("journal")))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotCorrupt(f"not a snapshot envelope: {exc!r}") from exc


def _seqs(data: Mapping[str, Any], key: str) -> dict[str, int]:
    value = data[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object of plant: number")
    return {str(plant): fields.checked_integer(seq, f"{key}.{plant}", minimum=0) for plant, seq in value.items()}


# -- on Kafka ---------------------------------------------------------------------------------------
def part_bytes(max_request_bytes: int) -> int:
    """The largest slice of content one part carries, for a producer's ``max_request_size``."""
    return max(1024, max_request_bytes - HEADROOM_BYTES)


def content(snapshot: Snapshot) -> bytes:
    """The compressed envelope (what the parts carry, cut in slices)."""
    return compress(orjson.dumps(to_json(snapshot)))


def compress(raw: bytes) -> bytes:
    return zlib.compress(raw, _COMPRESSION_LEVEL)


def encode_content(run_id: str, snapshot_id: str, data: bytes, topic: str, max_part_bytes: int) -> list[WireMessage]:
    """The messages of a snapshot whose compressed content is ``data``."""
    size = max(1, max_part_bytes)
    checksum = hashlib.sha256(data).hexdigest()
    count = max(1, math.ceil(len(data) / size))
    key = run_id.encode()
    messages = []
    for index in range(count):
        header = orjson.dumps({"v": PART_VERSION, "run": run_id, "id": snapshot_id, "index": index, "count": count,
                               "size": len(data), "sha256": checksum})
        messages.append(WireMessage(topic, key, (("content_type", CONTENT_TYPE),),
                                    header + b"\n" + data[index * size:(index + 1) * size]))
    return messages


def encode(snapshot: Snapshot, topic: str, max_part_bytes: int) -> list[WireMessage]:
    return encode_content(snapshot.run_id, snapshot.snapshot_id, content(snapshot), topic, max_part_bytes)


def read_part(value: bytes) -> Part:
    """A part's header and slice (raises SnapshotCorrupt for a message that is not a part)."""
    header, newline, data = value.partition(b"\n")
    if not newline:
        raise SnapshotCorrupt("not a snapshot part (no header line)")
    try:
        meta = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise SnapshotCorrupt(f"not a snapshot part: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("v") != PART_VERSION:
        raise SnapshotCorrupt(f"not a snapshot part of version {PART_VERSION}")
    try:
        part = Part(fields.text(meta, "run"), fields.text(meta, "id"), fields.integer(meta, "index", minimum=0),
                    fields.integer(meta, "count", minimum=0), fields.integer(meta, "size", minimum=0),
                    fields.text(meta, "sha256"), data)
    except (KeyError, TypeError) as exc:
        raise SnapshotCorrupt(f"a snapshot part header that cannot be read: {exc!r}") from exc
    if not part.index < part.count:
        raise SnapshotCorrupt(f"part {part.index} of {part.count}")
    return part


def assemble(parts: Iterable[Part]) -> Snapshot:
    """The snapshot of its parts (any order; a part given twice counts once).  Raises SnapshotCorrupt
    when one is missing, they disagree, or the content does not check out."""
    by_index: dict[int, Part] = {}
    for part in parts:
        by_index.setdefault(part.index, part)
    if not by_index:
        raise SnapshotCorrupt("no parts")
    first = next(iter(by_index.values()))
    if any((p.run_id, p.snapshot_id, p.count, p.size, p.sha256) !=
           (first.run_id, first.snapshot_id, first.count, first.size, first.sha256) for p in by_index.values()):
        raise SnapshotCorrupt(f"the parts of snapshot {first.snapshot_id} disagree on what they belong to")
    missing = [i for i in range(first.count) if i not in by_index]
    if missing:
        raise SnapshotCorrupt(f"snapshot {first.snapshot_id} is incomplete: {first.count - len(missing)} of "
                              f"{first.count} parts (missing {', '.join(map(str, missing[:5]))})")
    data = b"".join(by_index[i].data for i in range(first.count))
    if len(data) != first.size:
        raise SnapshotCorrupt(f"snapshot {first.snapshot_id} has {len(data)} bytes, its parts say {first.size}")
    if hashlib.sha256(data).hexdigest() != first.sha256:
        raise SnapshotCorrupt(f"snapshot {first.snapshot_id}: the SHA-256 of its content does not match")
    snapshot = decode_content(data)
    if snapshot.run_id != first.run_id or snapshot.snapshot_id != first.snapshot_id:
        raise SnapshotCorrupt(f"snapshot {first.snapshot_id}: its content is of another snapshot")
    return snapshot


def decode_content(data: bytes) -> Snapshot:
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise SnapshotCorrupt(f"the content does not decompress: {exc}") from exc
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SnapshotCorrupt(f"the content is not JSON: {exc}") from exc
    return from_json(envelope)
