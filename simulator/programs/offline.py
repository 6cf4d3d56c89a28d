"""Offline runs: as fast as possible, no broker.  Generated arrivals or a replayed order file,
optional telemetry file; the same driver and model as the service.  A run may start from a
snapshot's document (a warm start: the plant as it was, with its work in progress) instead of an
empty plant: then durations, order instants and the timeline count from the snapshot's instant,
and the lots in progress in it are waited for like the new ones."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.adapters.jsonl import JsonlWriter
from simulator.config.schema import Config
from simulator.errors import CannotWrite, OrderRejected
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.model.order import Order
from simulator.model.records import NullSink, Sink
from simulator.model.simulation import Simulation
from simulator.orders import OrderParser, parse_timestamp
from simulator.runtime.driver import Driver, StopReason
from simulator.runtime.outbox import Outbox

DEFAULT_TIMELINE_S = (0.0, 72 * 3600.0)


@dataclass(frozen=True, slots=True)
class RejectedLine:
    line: int
    reason: str
    detail: str


@dataclass(slots=True)
class OfflineResult:
    sim: Simulation
    stop: StopReason
    messages_written: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.rejected).items()))


def load_orders(path: Path, parser: OrderParser) -> tuple[list[tuple[float, Order]], list[RejectedLine]]:
    """Read a JSONL order file.  Orders arrive at their timestamp's offset from the earliest
    timestamp in the file; orders without one arrive at time 0.  Invalid lines and repeated lot
    codes are rejected with their line number."""
    parsed: list[tuple[int, Order]] = []
    rejected: list[RejectedLine] = []
    seen: set[str] = set()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                order = parser.parse(raw.rstrip(b"\r\n"))
            except OrderRejected as exc:
                rejected.append(RejectedLine(number, exc.reason, exc.detail))
                continue
            if order.lot_code in seen:
                rejected.append(RejectedLine(number, "duplicate_lot", f"lot {order.lot_code!r} appears twice"))
                continue
            seen.add(order.lot_code)
            parsed.append((number, order))
    instants = {n: parse_timestamp(o.timestamp) for n, o in parsed if o.timestamp is not None}
    origin = min(instants.values(), default=None)
    timed = [
        ((instants[n] - origin).total_seconds() if n in instants and origin is not None else 0.0, order)
        for n, order in parsed
    ]
    timed.sort(key=lambda item: item[0])  # stable: file order within the same instant
    return timed, rejected


async def run_offline(config: Config, *, seed: int | None = None, lots: int | None = None,
                      until_s: float | None = None, orders: Path | None = None,
                      telemetry_out: Path | None = None,
                      timeline: tuple[float, float] | None = DEFAULT_TIMELINE_S,
                      progress: Callable[[Simulation], None] | None = None,
                      wall_timeout_s: float | None = None,
                      snapshot: dict[str, Any] | None = None, warm: bool = False,
                      warm_up_s: float = 0.0) -> OfflineResult:
    """Run until ``lots`` generated lots (or every replayed order) are finished, or until
    ``until_s`` simulated seconds, whichever comes first.  ``snapshot``: a model document to start
    from (``config`` is the one it was taken under, with its seed and start; ``warm``: a changed one,
    see :func:`simulator.model.snapshot.restore`).  ``warm_up_s``: the statistics count from this
    simulated time on (from the snapshot's instant, like the other durations); the lots, and so
    ``lots``, count from the start."""
    if lots is None and until_s is None and orders is None:
        raise ValueError("give lots, until_s or orders")
    if not 0.0 <= warm_up_s < math.inf:
        raise ValueError(f"warm_up_s must be a finite number of seconds >= 0, got {warm_up_s}")
    if until_s is not None and warm_up_s >= until_s:
        raise ValueError(f"the warm-up ({warm_up_s:g} s) must end before the run does ({until_s:g} s)")
    outbox = Outbox(capacity=20_000) if telemetry_out is not None else None
    sink: Sink = outbox if outbox is not None else NullSink()
    if snapshot is None:
        sim = Simulation(config, sink, seed=seed, timeline=timeline, warm_up_s=warm_up_s)
        origin, waiting = 0.0, 0
    else:
        from simulator.model import snapshot as model_snapshot

        origin = float(snapshot["now"])
        sim = model_snapshot.restore(config, sink, snapshot, timeline=None if timeline is None else
                                     (origin + timeline[0], origin + timeline[1]), warm=warm)
        stats = sim.stats
        waiting = stats.completed + stats.scrapped + stats.in_progress  # the lots in progress finish too
        if warm_up_s > 0:
            sim.warm_up_at(origin + warm_up_s)
    if until_s is not None:
        until_s += origin
    rejected: list[RejectedLine] = []
    expected: int | None = None if lots is None else lots + waiting
    if orders is not None:
        timed, rejected = load_orders(orders, OrderParser(config.location_of))
        sim.replay([(origin + at, order) for at, order in timed])
        expected = len(timed) + waiting
    elif snapshot is None:
        sim.start_arrivals(limit=lots)
    else:
        sim.start_arrivals(limit=lots, code_prefix=f"L-{sim.calendar_time():%Y%m%d-%H%M%S}")

    def finished() -> bool:
        return expected is not None and sim.stats.completed + sim.stats.scrapped >= expected

    driver = Driver(sim, speed=None, outbox=outbox)
    writer_result = 0
    try:
        async with asyncio.TaskGroup() as group:
            writer = group.create_task(_write(outbox, telemetry_out, CoffeeMekFormat(config, sim.seed))) \
                if outbox is not None and telemetry_out is not None else None
            reporter = group.create_task(_report_progress(sim, progress)) if progress else None
            try:
                stop = await driver.run(until_sim_s=until_s, until=finished, exit_when_idle=True,
                                        wall_timeout_s=wall_timeout_s)
            finally:
                if outbox is not None:
                    outbox.close()
                if reporter is not None:
                    reporter.cancel()
            if writer is not None:
                writer_result = await writer
    except* CannotWrite as failed:  # the telemetry file: one error, not a group
        raise failed.exceptions[0] from None
    sim.flush_timeline()
    if progress:
        progress(sim)
    return OfflineResult(sim, stop, writer_result, rejected)


async def _write(outbox: Outbox, path: Path, fmt: CoffeeMekFormat) -> int:
    try:
        with JsonlWriter(path, fmt) as writer:
            while batch := await outbox.get_batch(5000):
                writer.write_records(batch)
            return writer.messages
    except OSError as exc:
        raise CannotWrite(f"--telemetry-out: cannot write {path}: {exc.strerror or exc}") from exc


async def _report_progress(sim: Simulation, progress: Callable[[Simulation], None]) -> None:
    while True:
        progress(sim)
        await asyncio.sleep(0.5)
