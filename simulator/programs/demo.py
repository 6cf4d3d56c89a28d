"""Demo mode: feed generated lots to the orders topic through Kafka and show a live summary.

The feeder is the lot-sender's generation and sending code: lots from ``arrivals`` (mixes,
quantities, customers, Poisson or fixed gaps), at the configured arrival rate scaled by the
simulation speed at start (at most 200 lots per wall second), through the same topic and parser
as any other producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from aiokafka import AIOKafkaProducer

from simulator.adapters.kafka_options import client_options, producer_options
from simulator.lotsender.messages import utc_now_text
from simulator.lotsender.plan import GeneratedLots, lot_code_prefix
from simulator.lotsender.sender import LotSender
from simulator.model.arrivals import mix_with
from simulator.model.randomness import derive_seed
from simulator.progress import human_duration
from simulator.reporting.summary import pool_utilization

if TYPE_CHECKING:
    from simulator.programs.service import Service

MAX_DEMO_RATE_PER_S = 200.0


def demo_rate_per_min(rate_per_hour: float, speed: float | None) -> float:
    """Wall-clock lots per minute for the configured arrival rate at ``speed`` (None: as fast as possible)."""
    if speed is None:
        return MAX_DEMO_RATE_PER_S * 60.0
    return min(rate_per_hour / 60.0 * speed, MAX_DEMO_RATE_PER_S * 60.0)


async def feed_orders(service: Service) -> None:
    config = service.config
    arrivals = config.arrivals
    mix = arrivals.location_mix or dict.fromkeys(config.locations, 1.0)
    run = service.instance[:6]
    plan = GeneratedLots(arrivals, mix_with(mix, config.location_of), seed=derive_seed(service.sim.seed, "demo", run),
                         code_prefix=lot_code_prefix(dt.datetime.now(dt.UTC).strftime("%Y%m%d"), run), dialect="it",
                         rate_per_min=demo_rate_per_min(arrivals.rate_per_hour, service.driver.speed),
                         timestamp=utc_now_text)
    producer = AIOKafkaProducer(**client_options(config.kafka, service.bootstrap_servers, service.environ),
                                **producer_options(config.kafka.producer))
    await producer.start()
    try:
        await LotSender(producer, config.kafka.topics.orders, f"demo{run}").send(plan)
    finally:
        await producer.stop()


RATE_WINDOW_S = 60.0  # lots and messages per ... over the last minute (a 2 s window reads 0 or 0.5)
LOG_LINES = 4  # recent log lines shown at the bottom of the screen on a terminal


class Rates:
    """Lots completed per minute and messages sent per second over the last RATE_WINDOW_S."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int, int]] = deque()

    def add(self, now: float, sent: int, finished: int) -> tuple[float, float]:
        self.samples.append((now, sent, finished))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW_S:
            self.samples.popleft()
        first = self.samples[0]
        span = max(now - first[0], 1e-9)
        return (sent - first[1]) / span, (finished - first[2]) / span * 60.0


class ScreenLog(logging.Handler):
    """While the summary is redrawn on a terminal, log records are kept for the screen's bottom
    instead of being written into it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record).splitlines()[0][:160])


@contextlib.contextmanager
def log_on_screen(tty: bool) -> Iterator[ScreenLog | None]:
    """On a terminal, the root logger's console handlers give way to a ScreenLog (restored after)."""
    root = logging.getLogger()
    console = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
               and getattr(h.stream, "isatty", lambda: False)()]
    if not tty or not console:
        yield None
        return
    screen = ScreenLog()
    screen.setLevel(min(h.level for h in console))
    for handler in console:
        root.removeHandler(handler)
    root.addHandler(screen)
    try:
        yield screen
    finally:
        root.removeHandler(screen)
        for handler in console:
            root.addHandler(handler)


async def console_summary(service: Service, out: TextIO | None = None, interval_s: float = 2.0) -> None:
    """A one-screen summary, redrawn in place on a terminal, a line block per interval otherwise;
    the final state once more when the service stops (in place of the last screen on a terminal)."""
    stream_out = out or sys.stdout
    tty = stream_out.isatty()
    rates = Rates()
    current = (0.0, 0.0)
    with log_on_screen(tty) as screen:
        def draw() -> None:
            text = render_summary(service, *current)
            if screen is not None and screen.lines:
                text += "\n\nrecent log:\n" + "\n".join(screen.lines)
            stream_out.write(("\x1b[H\x1b[2J" + text + "\n") if tty else (text + "\n\n"))
            stream_out.flush()

        try:
            while True:
                await asyncio.sleep(interval_s)
                stats = service.sim.stats
                current = rates.add(time.monotonic(), service.publisher.sent if service.publisher else 0,
                                    stats.completed + stats.scrapped)
                draw()
        finally:  # the final state, once, when the service stops
            draw()


def feed_command(service: Service) -> str:
    """The lot-sender command that feeds this running service (its broker and orders topic),
    spelled with the virtualenv's path so that it works in a fresh shell."""
    return (f"{venv_bin('lot-sender')} --broker {service.bootstrap_servers} "
            f"--topic {service.config.kafka.topics.orders} --count 100 --follow")


def venv_bin(command: str) -> str:
    """``command`` as the running interpreter's environment has it (``.venv/bin/lot-sender`` for a
    checkout's virtualenv, relative to the current directory when it is inside it)."""
    path = Path(sys.executable).parent / command
    if not path.exists():
        return command
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def render_summary(service: Service, msgs_per_s: float, lots_per_min: float) -> str:
    """The screen: ``lots_per_min`` finished (completed or scrapped) and ``msgs_per_s`` sent, over
    the last minute; per stage and location the machines busy now, the share of time they ran
    since the start and the lots waiting."""
    sim = service.sim
    stats = sim.stats
    health = service.health()
    status = health["status"] if service.state == "running" else service.state  # stopping is not "unhealthy"
    lines = [
        f"factorysim  {status}  sim {sim.calendar_time():%Y-%m-%d %H:%M} "
        f"(+{human_duration(sim.now)})  speed {health['simulation']['speed']}  Kafka {service.bootstrap_servers}"
        f"{'' if service.kafka_connected else ' (UNREACHABLE)'}",
        f"lots: {stats.received} received, {stats.in_progress} in progress, {stats.completed} completed, "
        f"{stats.scrapped} scrapped   {lots_per_min:,.1f} lots/min finished   {msgs_per_s:,.0f} msgs/s "
        f"(last minute)",
        "",
        f"{'stage':<14}" + "".join(f"{loc:>28}" for loc in sim.config.locations),
    ]
    now = sim.now
    for plan in sim.plant.stages:
        cells = []
        for loc in sim.config.locations:
            pool = sim.plant.pool(loc, plan.machine_type)
            busy = sum(1 for m in pool.machines if m.current_lot is not None)
            running_share, _ = pool_utilization(pool.machines, now)
            cells.append(f"{busy}/{len(pool.machines)} busy {running_share:>4.0%}, {pool.queue_length:>3} waiting")
        lines.append(f"{plan.name:<14}" + "".join(f"{c:>28}" for c in cells))
    lines.append("")
    util = []
    for loc in sim.config.locations:
        running_share, _ = pool_utilization([m for p in sim.plant.pools_at(loc) for m in p.machines], now)
        util.append(f"{loc} {running_share:.0%}")
    lines.append("utilisation since the start: " + "   ".join(util))
    lines.append(f"dead-lettered: {service.intake.dead_lettered if service.intake else 0}   "
                 f"health: http://127.0.0.1:{service.http_port}/health   Ctrl-C stops")
    lines.append(f"more lots, from another shell: {feed_command(service)}")
    token = service.http.token if service.http is not None else None
    if token is not None and token.generated and token.value is not None:
        where = f" (also in {token.file})" if token.file is not None else ""
        lines.append(f"commands: curl -X POST -H 'Authorization: Bearer {token.value.decode()}' "
                     f"http://127.0.0.1:{service.http_port}/simulation/pause{where}")
    return "\n".join(lines)
