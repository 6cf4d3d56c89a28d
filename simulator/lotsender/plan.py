"""What to send and when: generated lots (mixes, arrivals, bad ratio) or lots replayed from a
file.  Pure: no clock, no I/O besides reading the replay file; times are offsets in seconds from
the start of sending (``None``: as soon as possible).

Lot codes are ``L-<date>-<run>-<n>``; the message key is the location (per-location order).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from simulator.config.plant import ArrivalSettings
from simulator.errors import UsageError
from simulator.lotsender.messages import BAD_KINDS, bad_message
from simulator.model.arrivals import OrderGenerator
from simulator.model.randomness import stream
from simulator.orders import ORDER_KEYS, Dialect, order_to_json

RUN_HEADER = "lot-sender-run"
SEQ_HEADER = "lot-sender-seq"
BAD_HEADER = "lot-sender-bad"


class ReplayError(UsageError):
    """The replay file named by ``--from-file`` cannot be read (exit code 2, like any bad flag)."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a microsecond more per lot to build
class Planned:
    seq: int  # 1, 2, … in sending order
    offset_s: float | None  # due time from the start of sending; None: at once
    key: bytes
    value: bytes
    lot_code: str | None  # the lot to follow; None for malformed messages
    bad_kind: str | None = None  # the kind of malformed message (see messages.BAD_KINDS)

    @property
    def expected_reason(self) -> str | None:
        """The dead-letter reason the service should give a malformed message."""
        return BAD_KINDS[self.bad_kind][1] if self.bad_kind is not None else None


def lot_code_prefix(date: str, run: str) -> str:
    return f"L-{date}-{run}"


class GeneratedLots:
    """An endless sequence of planned lots; ``rate_per_min`` None sends them back to back."""

    def __init__(self, arrivals: ArrivalSettings, locations: dict[str, float], *, seed: int, code_prefix: str,
                 dialect: Dialect, rate_per_min: float | None, bad_ratio: float = 0.0,
                 timestamp: Callable[[], str] | None = None) -> None:
        rate_per_hour = rate_per_min * 60.0 if rate_per_min is not None else arrivals.rate_per_hour
        self.arrivals = arrivals.model_copy(update={"rate_per_hour": rate_per_hour})
        self.generator = OrderGenerator(self.arrivals, locations, stream(seed, "lot-sender", "orders"),
                                        code_prefix=code_prefix)
        self.paced = rate_per_min is not None
        self.dialect = dialect
        self.bad_ratio = bad_ratio
        self.bad_rng = stream(seed, "lot-sender", "malformed")
        self.timestamp = timestamp

    def __iter__(self) -> Iterator[Planned]:
        offset = 0.0
        for seq, (gap, order) in enumerate(self.generator, start=1):
            if seq > 1 and self.paced:  # fixed gaps multiply rather than add up, so no rounding creeps in
                offset = (seq - 1) * gap if self.arrivals.process == "fixed" else offset + gap
            stamp = self.timestamp() if self.timestamp is not None else None
            key = order.location.encode()
            due = offset if self.paced else None
            if self.bad_ratio and self.bad_rng.random() < self.bad_ratio:
                kind, value = bad_message(order, self.dialect, self.bad_rng, stamp)
                yield Planned(seq, due, key, value, None, kind)
            else:
                yield Planned(seq, due, key, order_to_json(order, self.dialect, stamp), order.lot_code)


# -- replay -------------------------------------------------------------------------------------
_CODE_KEYS = (ORDER_KEYS["it"][0], ORDER_KEYS["en"][0])


def replayed_lots(path: Path, *, rate_per_min: float | None) -> list[Planned]:
    """Every order of a JSON Lines file (each line sent as is) or a CSV file with a header row (each
    row sent as a JSON object; whole numbers become integers), in file order."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ReplayError(f"--from-file: no such file: {path}") from exc
    except OSError as exc:
        raise ReplayError(f"--from-file: cannot read {path}: {exc.strerror or exc}") from exc
    values = _csv_rows(raw, path) if path.suffix.lower() == ".csv" else [
        line.rstrip(b"\r") for line in raw.split(b"\n") if line.strip()]
    if not values:
        raise ReplayError(f"--from-file: {path} has no orders")
    gap = 60.0 / rate_per_min if rate_per_min is not None else None
    planned = []
    for seq, value in enumerate(values, start=1):
        lot_code, location = _identity(value)
        offset = (seq - 1) * gap if gap is not None else None
        planned.append(Planned(seq, offset, (location or "").encode(), value, lot_code))
    return planned


def _csv_rows(raw: bytes, path: Path) -> list[bytes]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReplayError(f"--from-file: {path} is not UTF-8 text") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ReplayError(f"--from-file: {path} has no header row")
    rows = []
    for row in reader:
        body = {name.strip(): _cell(value) for name, value in row.items() if name is not None and value != ""}
        if body:
            rows.append(orjson.dumps(body))
    return rows


def _cell(value: Any) -> Any:
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.lstrip("-").isdigit():
        return int(text)
    return text


def _identity(value: bytes) -> tuple[str | None, str | None]:
    """The lot code and location of a message, when it is a JSON object that has them."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = next((data[k] for k in _CODE_KEYS if isinstance(data.get(k), str)), None)
    location = data.get("location")
    return code, location if isinstance(location, str) else None
