"""A delivery target on its own (an HTTP sink against a real aiohttp server): a batch fills up for
``linger_ms`` before it goes, a network outage holds everything and the end of it sends all in
order, and ``finish`` delivers what is queued before the target stops."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from simulator.adapters.delivery import target as target_module
from simulator.adapters.delivery.http_target import HttpSinkTarget
from simulator.config.http_sinks import HttpSink
from simulator.config.loader import load
from simulator.formats import WireMessage
from simulator.formats.registry import build_format

from harness.cli_process import ROOT
from harness.http_receiver import HttpReceiver
from harness.service import wait_for


def message(i: int) -> list[WireMessage]:
    return [WireMessage("t", b"k", (), orjson.dumps({"n": i}))]


def sink(receiver: HttpReceiver, **options: object) -> HttpSinkTarget:
    config = HttpSink.model_validate({"name": "api", "url": receiver.url, "path": "/ingest", **options})
    fmt = build_format("coffeemek", load(ROOT / "config.yaml", environ={}), 1)
    return HttpSinkTarget(config, fmt)


async def test_a_batch_fills_up_for_linger_ms_and_an_outage_holds_then_sends_all_in_order() -> None:
    async with HttpReceiver() as api:
        target = sink(api, batch={"max_records": 100, "linger_ms": 300})
        running = asyncio.create_task(target.run())
        try:
            for i in range(5):
                target.offer_encoded("sample", message(i))
            await asyncio.sleep(0.05)  # a second burst within the linger
            for i in range(5, 10):
                target.offer_encoded("sample", message(i))
            await api.wait_for(lambda r: len(r.delivered_items()) == 10, 5)
            assert len(api.requests) == 1  # one batch: the linger let the second burst join it

            target.network_outage(True)
            for i in range(10, 60):
                target.offer_encoded("sample", message(i))
            started = time.monotonic()
            await wait_for(lambda: time.monotonic() - started > 0.5, 2, "half a second of outage")
            assert len(api.requests) == 1 and len(target) == 50  # nothing sent: everything waits
            assert target.health()["outage"]["active"] is True
            target.network_outage(False)
            await api.wait_for(lambda r: len(r.delivered_items()) == 60, 5)
            assert [item["n"] for item in api.delivered_items()] == list(range(60))

            for i in range(60, 70):
                target.offer_encoded("sample", message(i))
            target.finish()
            await asyncio.wait_for(running, 10)
        finally:
            running.cancel()
    assert [item["n"] for item in api.delivered_items()] == list(range(70))


async def test_messages_held_back_by_faults_are_bounded_and_all_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Delays hold messages in memory: at most MAX_HELD at once; the rest wait in the queue (its bound
    and policy apply), and every one arrives."""
    monkeypatch.setattr(target_module, "MAX_HELD", 10)
    async with HttpReceiver() as api:
        target = sink(api, batch={"max_records": 5, "linger_ms": 0},
                      faults={"delay": {"fraction": 1.0, "min_s": 0.2, "max_s": 0.2}})
        running = asyncio.create_task(target.run())
        most = 0

        def watch(_: HttpReceiver) -> bool:
            nonlocal most
            most = max(most, target.faults.held)
            return len(api.delivered_items()) == 40
        try:
            for i in range(40):
                target.offer_encoded("sample", message(i))
            await api.wait_for(watch, 10)
            target.finish()
            await asyncio.wait_for(running, 10)
        finally:
            running.cancel()
    assert most <= 10 + 5  # the limit, and at most one batch taken before it was reached
    assert sorted(item["n"] for item in api.delivered_items()) == list(range(40))
    assert target.faults.delayed == 40
