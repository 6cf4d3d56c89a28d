"""The journal's wire format: a plant's history as JSON entries on the journal topic.

Every entry is one Kafka message keyed by its plant (location), so a plant's entries stay in
order on one partition.  Kinds:

- ``start``: a run of the plant begins: run id, seed, config fingerprint, the calendar instant of
  simulated time 0;
- ``input``: a model input (:mod:`simulator.model.inputs`) applied at simulated time ``at``, with
  the plant's input number ``seq`` (1, 2, 3 …), whether it applied together with the plant's
  previous input (``joined``: right after it, no event in between) and, for an order, where it
  came from (``source``: topic, partition, offset);
- ``checkpoint``: Kafka has acknowledged every output record of the plant up to ``output_seq``;
- ``clock``: how simulated time followed the wall clock from then on (``speed`` None: as fast as
  possible; ``paused``; ``commanded``: that speed and pause are a runtime command's, not the
  config's, written only when true).

Every entry carries the format version and the run id, so entries of older runs on the same
topic are told apart.  A malformed entry is a :class:`JournalError`.

Version 2 (written now) writes an ``input`` entry, one per order and so the bulk of a journal, as a
JSON array of its fields in a fixed order (:data:`INPUT_FIELDS`); an order's own fields follow in
the same way (:data:`ADMIT_FIELDS`), any other input is the object version 1 wrote.  The other
kinds stay JSON objects with ``"v": 2``.  Version 1 entries (every entry an object) are still read.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import orjson

from simulator.config.plant import PRIORITIES
from simulator.formats import WireMessage, fields
from simulator.model.inputs import Admit, Block, ClearAnomaly, Input, PlantAnomaly, Repair, SetAnomaly
from simulator.model.order import Order
from simulator.model.records import quick_init
from simulator.orders import MAX_LOT_CODE, MAX_QUANTITY

JOURNAL_VERSION = 2
READABLE_VERSIONS = (1, 2)
CONTENT_TYPE = b"application/json"
HEADERS = (("content_type", CONTENT_TYPE),)
# version 2: an input entry's array, and an admitted order's array inside it
INPUT_FIELDS = ("v", "kind", "run", "plant", "seq", "at", "source", "joined", "input")
ADMIT_FIELDS = ("kind", "lot_code", "customer", "quantity", "location", "priority", "timestamp")


class JournalError(ValueError):
    """A journal entry that cannot be read."""


@dataclass(frozen=True, slots=True)
class RunStart:
    plant: str
    run_id: str
    seed: int
    fingerprint: str  # of the config's model part (config.model_fingerprint)
    start: dt.datetime  # the calendar instant of simulated time 0 (UTC)


@quick_init  # one per order taken in (see quick_init)
@dataclass(frozen=True, slots=True)
class Applied:
    plant: str
    run_id: str
    seq: int  # the plant's input number, from 1
    at: float  # simulated time at which it applied
    input: Input
    source: str | None = None  # an order's "topic/partition/offset"
    joined: bool = False  # applied right after the plant's previous input, no event in between


@dataclass(frozen=True, slots=True)
class Checkpoint:
    plant: str
    run_id: str
    output_seq: int  # every output record of the plant up to this number is in Kafka
    at: float


@dataclass(frozen=True, slots=True)
class ClockSet:
    plant: str
    run_id: str
    at: float  # simulated time ...
    wall: float  # ... at this wall-clock instant (Unix seconds)
    speed: float | None  # simulated seconds per wall second; None: as fast as possible
    paused: bool = False
    commanded: bool = False  # speed and pause were set by a runtime command (kept when the plant moves)


Entry = RunStart | Applied | Checkpoint | ClockSet


@dataclass(frozen=True, slots=True)
class Read:
    """One journal message as read back: its entry (or why it cannot be read) and where it was."""

    entry: Entry | JournalError
    partition: int
    offset: int
    timestamp_ms: int


def encode(entry: Entry, topic: str) -> WireMessage:
    if isinstance(entry, Applied):
        item = entry.input
        if isinstance(item, Admit):
            o = item.order
            data: Any = ["admit", o.lot_code, o.customer, o.quantity, o.location, o.priority, o.timestamp]
        else:
            data = encode_input(item)
        row = [JOURNAL_VERSION, "input", entry.run_id, entry.plant, entry.seq, entry.at, entry.source,
               entry.joined, data]  # INPUT_FIELDS
        return WireMessage(topic, entry.plant.encode(), HEADERS, orjson.dumps(row))
    body: dict[str, Any] = {"v": JOURNAL_VERSION, "run": entry.run_id, "plant": entry.plant}
    if isinstance(entry, RunStart):
        body |= {"kind": "start", "seed": entry.seed, "fingerprint": entry.fingerprint,
                 "start": entry.start.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}
    elif isinstance(entry, Checkpoint):
        body |= {"kind": "checkpoint", "output_seq": entry.output_seq, "at": entry.at}
    else:
        body |= {"kind": "clock", "at": entry.at, "wall": entry.wall, "speed": entry.speed, "paused": entry.paused}
        if entry.commanded:
            body["commanded"] = True
    return WireMessage(topic, entry.plant.encode(), HEADERS, orjson.dumps(body))


def decode_entry(value: bytes) -> Entry:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise JournalError(f"not JSON: {exc}") from exc
    if isinstance(body, list):
        return _decode_input_array(body)
    if not isinstance(body, dict):
        raise JournalError("an entry is a JSON object or array")
    if body.get("v") not in READABLE_VERSIONS:
        raise JournalError(f"journal format version {body.get('v')!r}; this factorysim reads versions "
                           f"{', '.join(map(str, READABLE_VERSIONS))}")
    try:
        plant, run_id, kind = fields.text(body, "plant"), fields.text(body, "run"), body.get("kind")
        if kind == "start":
            start = fields.instant(body, "start")
            return RunStart(plant, run_id, fields.integer(body, "seed"), fields.text(body, "fingerprint"), start)
        if kind == "input":  # (version 2 writes inputs as arrays)
            source = body.get("source")
            return Applied(plant, run_id, fields.integer(body, "seq"), fields.seconds(body, "at"),
                           decode_input(body["input"]), source if isinstance(source, str) else None,
                           body.get("joined") is True)
        if kind == "checkpoint":
            return Checkpoint(plant, run_id, fields.integer(body, "output_seq"), fields.seconds(body, "at"))
        if kind == "clock":
            speed = body.get("speed")
            return ClockSet(plant, run_id, fields.seconds(body, "at"), fields.seconds(body, "wall"),
                            None if speed is None else _positive(speed, "speed"), bool(body.get("paused", False)),
                            body.get("commanded") is True)
    except (KeyError, TypeError, ValueError) as exc:
        raise JournalError(f"a {kind!r} entry that cannot be read: {exc!r}") from exc
    raise JournalError(f"unknown entry kind {kind!r}")


def _decode_input_array(body: list[Any]) -> Applied:
    """A version 2 input entry (:data:`INPUT_FIELDS`)."""
    if len(body) != len(INPUT_FIELDS) or body[0] != JOURNAL_VERSION or body[1] != "input":
        version = body[0] if body else None
        if version != JOURNAL_VERSION:
            raise JournalError(f"journal format version {version!r} in an array; this factorysim reads "
                               f"version {JOURNAL_VERSION} arrays")
        raise JournalError(f"an entry array is an input entry of {len(INPUT_FIELDS)} fields "
                           f"({', '.join(INPUT_FIELDS)})")
    try:
        entry = dict(zip(INPUT_FIELDS, body, strict=True))
        source, joined, item = entry["source"], entry["joined"], entry["input"]
        if source is not None and not isinstance(source, str):
            raise TypeError("source must be a string or null")
        if not isinstance(joined, bool):
            raise TypeError("joined must be true or false")
        if isinstance(item, list):
            if len(item) != len(ADMIT_FIELDS) or item[0] != "admit":
                raise ValueError(f"an input array is an order of {len(ADMIT_FIELDS)} fields "
                                 f"({', '.join(ADMIT_FIELDS)})")
            item = dict(zip(ADMIT_FIELDS, item, strict=True))
        return Applied(fields.text(entry, "plant"), fields.text(entry, "run"), fields.integer(entry, "seq"),
                       fields.seconds(entry, "at"), decode_input(item), source, joined)
    except (KeyError, TypeError, ValueError) as exc:
        raise JournalError(f"an 'input' entry that cannot be read: {exc!r}") from exc


# -- inputs ------------------------------------------------------------------------------------------
def encode_input(item: Input) -> dict[str, Any]:
    if isinstance(item, Admit):
        o = item.order
        return {"kind": "admit", "lot_code": o.lot_code, "customer": o.customer, "quantity": o.quantity,
                "location": o.location, "priority": o.priority, "timestamp": o.timestamp}
    if isinstance(item, Block):
        return {"kind": "block", "machine_id": item.machine_id, "reason": item.reason, "duration_s": item.duration_s}
    if isinstance(item, Repair):
        return {"kind": "repair", "machine_id": item.machine_id}
    if isinstance(item, SetAnomaly):
        return {"kind": "set_anomaly", "machine_id": item.machine_id, "anomaly": item.anomaly,
                "severity": item.severity, "duration_s": item.duration_s}
    if isinstance(item, ClearAnomaly):
        return {"kind": "clear_anomaly", "machine_id": item.machine_id, "anomaly": item.anomaly}
    return {"kind": "plant_anomaly", "plant": item.plant, "anomaly": item.anomaly, "on": item.on,
            "severity": item.severity, "duration_s": item.duration_s}


def decode_input(data: Any) -> Input:
    if not isinstance(data, dict):
        raise TypeError("an input is a JSON object")
    kind = data.get("kind")
    if kind == "admit":  # held to the order rules: a bad entry must not break the model on every start
        timestamp = data.get("timestamp")
        lot_code, priority = fields.text(data, "lot_code"), fields.text(data, "priority")
        quantity = fields.integer(data, "quantity")
        if not 0 < len(lot_code) <= MAX_LOT_CODE or not 1 <= quantity <= MAX_QUANTITY or priority not in PRIORITIES:
            raise ValueError(f"not an order factorysim admits: {lot_code[:40]!r}, quantity {quantity}, "
                             f"{priority[:20]!r}")
        return Admit(Order(lot_code, str(data.get("customer", "")), quantity, fields.text(data, "location"), priority,
                           timestamp if isinstance(timestamp, str) else None))
    if kind == "block":
        return Block(fields.text(data, "machine_id"), fields.text(data, "reason"), _duration(data))
    if kind == "repair":
        return Repair(fields.text(data, "machine_id"))
    if kind == "set_anomaly":
        return SetAnomaly(fields.text(data, "machine_id"), fields.text(data, "anomaly"),
                          _positive(data["severity"], "severity"), _duration(data))
    if kind == "clear_anomaly":
        anomaly = data.get("anomaly")
        return ClearAnomaly(fields.text(data, "machine_id"), anomaly if isinstance(anomaly, str) else None)
    if kind == "plant_anomaly":
        return PlantAnomaly(fields.text(data, "plant"), fields.text(data, "anomaly"), bool(data["on"]),
                            _positive(data["severity"], "severity"), _duration(data))
    raise ValueError(f"unknown input kind {kind!r}")


def _positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise TypeError(f"{key} must be a positive number")
    return float(value)


def _duration(data: dict[str, Any]) -> float | None:
    value = data.get("duration_s")
    return None if value is None else _positive(value, "duration_s")
