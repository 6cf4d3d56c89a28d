"""Helpers for service tests: config per test, the service in the test's loop, Kafka I/O, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from simulator.adapters.child_process import with_death_signal
from simulator.adapters.embedded_broker import broker_command
from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.net import free_port
from simulator.programs.service import Service


def service_config(default_yaml: dict[str, Any], bootstrap: str, unique: str, **overrides: Any) -> Config:
    """The reference plant on ``bootstrap`` with topics and group unique to the test, speed max,
    an ephemeral HTTP port; ``overrides`` are dotted keys."""
    data = copy.deepcopy(default_yaml)
    data["simulation"]["speed"] = "max"
    data["kafka"] = {
        "bootstrap_servers": bootstrap,
        "topics": {"orders": f"{unique}.orders", "telemetry_prefix": f"{unique}.telemetry",
                   "events": f"{unique}.events", "dead_letter": f"{unique}.dead_letter",
                   "journal": f"{unique}.journal", "snapshots": f"{unique}.snapshots"},
        "consumer": {"group_id": f"{unique}-group", "session_timeout_ms": 2000},
        "producer": {"linger_ms": 5},
    }
    # a generated control token goes to a file of the test's own, not to the user's state folder
    data["http"] = {"host": "127.0.0.1", "port": 0,
                    "generated_token_file": str(Path(tempfile.gettempdir()) / "factorysim-tests" / f"{unique}.token")}
    return parse(data, environ={}, overrides=overrides)


def control_headers(service: Service) -> dict[str, str]:
    """The Authorization header of the running service's command endpoints."""
    assert service.http is not None and service.http.token.value is not None
    return {"Authorization": f"Bearer {service.http.token.value.decode()}"}


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


class Program(Protocol):
    """What the service and the standalone bridge have in common for a test."""

    ready_event: asyncio.Event

    async def run(self) -> None: ...

    def request_stop(self) -> None: ...


P = TypeVar("P", bound=Program)


@asynccontextmanager
async def running(program: P, timeout_s: float = 60.0) -> AsyncIterator[P]:
    """``program`` running in the test's loop until the block ends (then stopped and awaited); a
    start-up error is raised here."""
    task = asyncio.get_running_loop().create_task(program.run(), name=type(program).__name__.lower())
    ready = asyncio.get_running_loop().create_task(program.ready_event.wait())
    await asyncio.wait([task, ready], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises the start-up error
    if not program.ready_event.is_set():
        ready.cancel()
        program.request_stop()
        await asyncio.wait_for(task, timeout_s)
        raise AssertionError(f"{type(program).__name__} did not start within {timeout_s:.0f} s")
    try:
        yield program
    finally:
        program.request_stop()
        await asyncio.wait_for(task, timeout_s)


@asynccontextmanager
async def running_service(config: Config, **kwargs: Any) -> AsyncIterator[Service]:
    async with running(Service(config, **kwargs)) as service:
        yield service


async def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=(keys[i] if keys else None)) for i, v in enumerate(values)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass
class Collected:
    messages: dict[str, list[Any]] = field(default_factory=dict)

    def of(self, topic: str) -> list[Any]:
        return self.messages.get(topic, [])

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in self.of(topic)]


class Reader:
    """Reads topics from the beginning without a consumer group (assigns every partition)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.collected = Collected()
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Reader:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest")
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def read_until(self, condition: Callable[[Collected], bool], timeout_s: float, what: str) -> Collected:
        consumer = self._consumer
        assert consumer is not None
        deadline = time.monotonic() + timeout_s
        while True:
            await self._assign_all(consumer)
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batch.items():
                self.collected.messages.setdefault(tp.topic, []).extend(messages)
            if condition(self.collected):
                return self.collected
            if time.monotonic() > deadline:
                counts = {t: len(m) for t, m in self.collected.messages.items()}
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; have {counts}")

    async def read_all(self, timeout_s: float = 30.0) -> Collected:
        """Everything the topics hold now: up to their end offsets, then until a fetch brings
        nothing (the embedded broker reports ends before the last record batch's end)."""
        consumer = self._consumer
        assert consumer is not None
        await self._assign_all(consumer)
        ends = await consumer.end_offsets(list(consumer.assignment()))

        async def at_end() -> bool:
            return all([await consumer.position(tp) >= end for tp, end in ends.items()])

        deadline = time.monotonic() + timeout_s
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batch.items():
                self.collected.messages.setdefault(tp.topic, []).extend(messages)
            if not batch and await at_end():
                return self.collected
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f} s reading {self.topics} to their end")

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> None:
        """Assign every partition of every topic once (the service has created the topics)."""
        if consumer.assignment():
            return
        await consumer._client.force_metadata_update()
        wanted = [TopicPartition(topic, p) for topic in self.topics
                  for p in sorted(consumer.partitions_for_topic(topic) or ())]
        missing = [t for t in self.topics if not consumer.partitions_for_topic(t)]
        assert not missing, f"topics do not exist: {missing}"
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)


def orders(n: int, prefix: str, seed: int = 1) -> list[bytes]:
    """``n`` valid orders ``<prefix>-0..n-1``, alternating dialects, mixed locations, aliases and priorities."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        location = rng.choice(["Italia", "Italy", "Brasile", "Brazil", "Vietnam"])
        if i % 2:
            body: dict[str, Any] = {"codice_lotto": f"{prefix}-{i}", "cliente": "Bar Sport", "quantita": 10 + i,
                                    "location": location, "priorita": rng.choice(["alta", "normale", "bassa"]),
                                    "timestamp": "2025-06-25T08:00:00Z"}
        else:
            body = {"lot_code": f"{prefix}-{i}", "customer": "Cafe Lyon", "quantity": 10 + i, "location": location,
                    "priority": rng.choice(["high", "normal", "low"])}
        out.append(orjson.dumps(body))
    return out


def finished(events: list[dict[str, Any]]) -> set[str]:
    """Lot codes with a final event."""
    return {e["lot_code"] for e in events if e["event_type"] in ("lot.completed", "lot.scrapped")}


@contextlib.contextmanager
def embedded_broker_process(*extra_args: str, cwd: str | None = None) -> Iterator[str]:
    """The embedded (tansu) broker in its own process on a free loopback port, with ``extra_args``;
    yields its bootstrap address once it accepts connections, stops it afterwards."""
    port = free_port()
    # with a parent-death signal: a killed test run leaves no broker behind
    process = subprocess.Popen(with_death_signal([*broker_command("127.0.0.1", port), *extra_args]), cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the embedded broker did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def service_process(path: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``factorysim run --config PATH ARGS`` in a subprocess, its output appended to ``log``; killed at the
    end if it still runs."""
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "simulator", "run", "--config", str(path), *args],
                                   env={**os.environ}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
