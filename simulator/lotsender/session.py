"""One lot-sender run: connect (or start the embedded broker and factorysim), follow, send,
wait for the lots, summarise."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from simulator.adapters.kafka_options import client_options, producer_options
from simulator.asyncio_waits import wait_for
from simulator.config import loader as config_loader
from simulator.config.origins import Override, flag
from simulator.errors import BrokerUnavailable
from simulator.lotsender.follow import LotFollower
from simulator.lotsender.report import build_summary
from simulator.lotsender.sender import LotSender, SendStats
from simulator.runtime.signals import install_stop_signals

if TYPE_CHECKING:
    from simulator.lotsender.cli import Settings
    from simulator.programs.service import Service

log = logging.getLogger(__name__)
LAST_TRY_S = 0.5  # the longest a connection attempt may run past --connect-timeout


async def run_session(settings: Settings, environ: Mapping[str, str] | None = None, *,
                      handle_signals: bool = False) -> dict[str, Any]:
    """Send, follow and summarise; with ``handle_signals`` the first SIGINT/SIGTERM stops sending
    (the summary still comes), a second one exits at once."""
    stop = asyncio.Event()
    if handle_signals:
        install_stop_signals(stop.set)
    async with AsyncExitStack() as stack:
        bootstrap = settings.broker
        if bootstrap == "embedded":
            bootstrap = await stack.enter_async_context(_embedded_service(settings))
        options = client_options(settings.kafka, bootstrap, environ)
        producer = await connect_producer({**options, **producer_options(settings.kafka.producer)},
                                          bootstrap, settings.connect_timeout_s)
        stack.push_async_callback(producer.stop)
        await _check_topic(producer, settings.topic, bootstrap, settings.connect_timeout_s)
        sender = LotSender(producer, settings.topic, settings.run_id, track=settings.follow)
        follower = None
        if settings.follow:
            topics = settings.kafka.topics
            follower = LotFollower(options, topics.events, topics.dead_letter, settings.run_id, sender.stats)
            await follower.start(settings.connect_timeout_s)
            stack.push_async_callback(follower.stop)
            stack.enter_context(_task(follower.run(), "follow"))
        if settings.progress:
            stack.enter_context(_task(_show_progress(sender.stats, follower, settings.count), "progress"))
        await sender.send(settings.plan, count=settings.count, duration_s=settings.duration_s, stop=stop)
        interrupted = stop.is_set()
        if follower is not None and not interrupted:
            waiting = asyncio.ensure_future(follower.wait_all(settings.follow_timeout_s))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([waiting, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in (waiting, stopped):
                task.cancel()
            interrupted = stop.is_set()
        summary = build_summary(
            run_id=settings.run_id, broker=bootstrap, topic=settings.topic, mode=settings.mode,
            requested_rate_per_min=settings.rate_per_min, stats=sender.stats,
            follow=follower.result if follower is not None else None,
            follow_outstanding=follower.outstanding() if follower is not None else (0, 0),
            interrupted=interrupted)
    return summary


async def connect_producer(options: dict[str, Any], bootstrap: str, timeout_s: float) -> AIOKafkaProducer:
    """A started producer; tries again (with backoff) until ``timeout_s`` has passed: the last try
    starts at the deadline, and no try runs more than ``LAST_TRY_S`` past it."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        producer = AIOKafkaProducer(**options)
        try:
            await wait_for(producer.start(), max(deadline - time.monotonic(), LAST_TRY_S))
            return producer
        except (KafkaConnectionError, TimeoutError) as exc:
            await producer.stop()
            left = deadline - time.monotonic()
            if left <= 0:
                why = str(exc) if isinstance(exc, KafkaConnectionError) else "no answer"
                raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap} within {timeout_s:g} s ({why}); "
                                        "check --broker and that the broker is running") from exc
            if delay == 0.2:
                print(f"lot-sender: waiting for Kafka at {bootstrap} (up to {timeout_s:g} s) …", file=sys.stderr)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


async def _check_topic(producer: AIOKafkaProducer, topic: str, bootstrap: str, timeout_s: float) -> None:
    try:
        await wait_for(producer.partitions_for(topic), timeout_s)
    except (KafkaError, TimeoutError) as exc:
        raise BrokerUnavailable(f"topic {topic!r} is not available on {bootstrap} ({exc!r}); factorysim creates it "
                                "when it starts, or create it yourself") from exc


@contextlib.asynccontextmanager
async def _embedded_service(settings: Settings) -> AsyncIterator[str]:
    """The embedded broker and factorysim on it (HTTP on a free port); yields the bootstrap address."""
    from simulator.programs.service import Service  # the service only for --embedded

    assert settings.config is not None
    fixed = {"kafka.bootstrap_servers": "embedded", "kafka.embedded.storage": "memory", "http.port": 0,
             "simulation.start": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}
    config = config_loader.parse(  # the config is valid already; only --embedded-speed can be wrong here
        settings.config.model_dump(mode="json", exclude_none=True), environ={},
        overrides=[*(Override(key, value) for key, value in fixed.items()),
                   Override("simulation.speed", settings.embedded_speed,
                            flag("--embedded-speed", settings.embedded_speed))])
    service = Service(config)
    task = asyncio.get_running_loop().create_task(service.run(), name="embedded-factorysim")
    ready = asyncio.ensure_future(service.ready_event.wait())
    await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises what stopped it
        raise BrokerUnavailable("the embedded factorysim stopped before it was ready")
    print(f"lot-sender: embedded broker {service.bootstrap_servers}, factorysim health on "
          f"http://127.0.0.1:{service.http_port}/health", file=sys.stderr)
    try:
        yield str(service.bootstrap_servers)
    finally:
        await _stop_service(service, task)


async def _stop_service(service: Service, task: asyncio.Task[None]) -> None:
    service.request_stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.contextmanager
def _task(coro: Any, name: str) -> Any:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    try:
        yield task
    finally:
        task.cancel()


async def _show_progress(stats: SendStats, follower: LotFollower | None, count: int | None,
                         out: TextIO | None = None, interval_s: float = 0.5) -> None:
    stream = out or sys.stderr
    tty = stream.isatty()
    every = 1 if tty else 10  # non-terminals get a line every 5 s
    tick = 0
    last = (time.monotonic(), 0)
    try:
        while True:
            await asyncio.sleep(interval_s)
            tick += 1
            now = time.monotonic()
            rate = (stats.sent - last[1]) / max(now - last[0], 1e-9)
            last = (now, stats.sent)
            if tick % every:
                continue
            total = f"/{count:,}" if count else ""
            line = (f"sent {stats.sent:,}{total}  acked {stats.acked:,}  failed {stats.failed:,}  "
                    f"{rate:,.1f} lots/s")
            if follower is not None:
                lots_left, _ = follower.outstanding()
                line += f"  finished {len(follower.result.finished):,}, open {lots_left:,}"
            stream.write(f"\r\x1b[K{line}" if tty else line + "\n")
            stream.flush()
    finally:
        if tty:
            stream.write("\r\x1b[K")
            stream.flush()
