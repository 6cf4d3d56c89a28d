"""The HTTP sink's transport against a real HTTP(S) server (harness.http_receiver): request bodies in
each body/envelope mode and their batching, headers and credentials (rotated keys), retries (5xx,
408, 429 with Retry-After, timeouts, dropped connections) without loss or reordering, rejections,
TLS, holds, closing, and the secret kept out of every view."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator import package_version
from simulator.adapters.delivery.http_sink import HttpTransport, SinkState
from simulator.adapters.delivery.http_wire import request_bodies, retry_after_s
from simulator.adapters.delivery.transport import Delivery
from simulator.config.http_sinks import HttpSink
from simulator.errors import ConfigError
from simulator.formats import WireMessage
from simulator.net import free_port

from harness.http_receiver import OK, HttpReceiver, ReceivedRequest, Reply, server_tls
from harness.pki import Pki

SECRET = "moka-7f3a9c1e5b2d"
FAST_RETRY = {"initial_s": 0.01, "max_s": 0.05, "jitter": 0.5}


def make_sink(url: str, **options: Any) -> HttpSink:
    options.setdefault("retry", FAST_RETRY)
    return HttpSink.model_validate({"name": "moka", "url": url, "path": "/ingest", **options})


def message(i: int, pad: int = 0) -> WireMessage:
    value = orjson.dumps({"id": f"m-{i}", "machine": f"cnc-{i % 3}", "value": i * 1.5, "pad": "x" * pad})
    return WireMessage(f"plant/Italia/cnc-{i % 3}", f"cnc-{i % 3}".encode(), (), value)


def sized(i: int, size: int) -> WireMessage:
    """A message whose payload is exactly ``size`` bytes."""
    return message(i, size - len(message(i).value))


class Calls:
    """Delivery callbacks that count how often each message's was called."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    def deliveries(self, messages: list[WireMessage], first: int = 0) -> list[Delivery]:
        return [(m, lambda i=first + n: self.counts.update([i])) for n, m in enumerate(messages)]


class Gate:
    """A ``hold``: counts its calls and blocks while shut."""

    def __init__(self, *, shut: bool = False) -> None:
        self.calls = 0
        self._open = asyncio.Event()
        self._called = asyncio.Condition()
        if not shut:
            self._open.set()

    def shut(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def __call__(self) -> None:
        self.calls += 1
        async with self._called:
            self._called.notify_all()
        await self._open.wait()

    async def wait_calls(self, count: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s), self._called:
            await self._called.wait_for(lambda: self.calls >= count)


def payloads(messages: list[WireMessage]) -> list[Any]:
    return [orjson.loads(m.value) for m in messages]


# -- bodies and headers ------------------------------------------------------------------------------
async def test_json_array_body_api_key_and_headers() -> None:
    messages = [message(i) for i in range(3)]
    calls = Calls()
    async with HttpReceiver() as receiver:
        sink = make_sink(receiver.url, auth={"method": "api-key", "value_env": "MOKAMETRICS_API_KEY"},
                         headers={"X-Plant": "Italia"})
        transport = HttpTransport(sink, environ={"MOKAMETRICS_API_KEY": SECRET})
        await transport.send(calls.deliveries(messages))
        await transport.close()
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/ingest")
    assert request.body == b"[" + b",".join(m.value for m in messages) + b"]"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-API-Key"] == SECRET
    assert request.headers["X-Plant"] == "Italia"
    assert request.headers["User-Agent"] == f"factorysim/{package_version()}"
    assert "Authorization" not in request.headers
    assert calls.counts == {0: 1, 1: 1, 2: 1}
    health = transport.health()
    assert health["endpoint"] == f"{receiver.url}/ingest"
    assert (health["requests"], health["records_sent"], health["responses"]["2xx"]) == (1, 3, 1)
    assert (health["last_status"], health["bytes_sent"], health["retries"]) == (200, len(request.body), 0)
    assert health["last_success"] is not None and health["last_success"].endswith("Z")
    assert health["connected"] is True and health["last_error"] is None
    assert health["state"] == "closed"


async def test_ndjson_envelope_body_is_one_line_per_message() -> None:
    messages = [WireMessage("plant/Italia/cnc-1", b"cnc-1", (), b'{"id":"a","v":2.5}'),
                WireMessage("plant/Italia/events", b"", (), b'{\n  "id": "b",\n  "text": "two\\nlines"\n}')]
    async with HttpReceiver() as receiver:
        transport = HttpTransport(make_sink(receiver.url, body="ndjson", envelope=True))
        await transport.send(Calls().deliveries(messages))
        await transport.close()
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request.body == (b'{"topic":"plant/Italia/cnc-1","key":"cnc-1","payload":{"id":"a","v":2.5}}\n'
                            b'{"topic":"plant/Italia/events","key":null,"payload":{"id":"b","text":"two\\nlines"}}\n')


async def test_json_array_envelope() -> None:
    messages = [message(i) for i in range(2)]
    async with HttpReceiver() as receiver:
        transport = HttpTransport(make_sink(receiver.url, envelope=True))
        await transport.send(Calls().deliveries(messages))
        await transport.close()
    [request] = receiver.requests
    assert orjson.loads(request.body) == [{"topic": m.topic, "key": m.key.decode(), "payload": orjson.loads(m.value)}
                                          for m in messages]


async def test_json_body_sends_one_message_per_request_in_order() -> None:
    messages = [message(i) for i in range(4)]
    calls = Calls()
    async with HttpReceiver() as receiver:
        transport = HttpTransport(make_sink(receiver.url, body="json"))
        await transport.send(calls.deliveries(messages))
        await transport.close()
    assert [r.body for r in receiver.requests] == [m.value for m in messages]
    assert {r.headers["Content-Type"] for r in receiver.requests} == {"application/json"}
    assert len({r.peer for r in receiver.requests}) == 1  # one connection, reused
    assert calls.counts == dict.fromkeys(range(4), 1)
    assert transport.records_sent == 4


@pytest.mark.parametrize("body", ["json-array", "ndjson"])
async def test_batches_are_cut_by_records_and_bytes(body: str) -> None:
    # json-array: 2 + 510 + 1 + 511 = 1024 bytes (fits max_bytes exactly); ndjson: 511 + 512 = 1023
    sizes = [510, 511, 1, 300, 300, 300, 300, 1500, 100, 100]
    messages = [sized(i, size) for i, size in enumerate(sizes)]
    calls = Calls()
    async with HttpReceiver() as receiver:
        sink = make_sink(receiver.url, body=body, batch={"max_records": 3, "max_bytes": 1024})
        transport = HttpTransport(sink)
        await transport.send(calls.deliveries(messages))
        await transport.close()
    groups = [[0, 1], [2, 3, 4], [5, 6], [7], [8, 9]]  # by bytes, records, bytes, alone (> max_bytes), the rest
    values = [[messages[i].value for i in group] for group in groups]
    expected = ([b"[" + b",".join(v) + b"]" for v in values] if body == "json-array"
                else [b"".join(x + b"\n" for x in v) for v in values])
    assert [r.body for r in receiver.requests] == expected
    assert calls.counts == dict.fromkeys(range(len(messages)), 1)
    assert transport.requests == 5 and transport.records_sent == len(messages)


def test_request_bodies_single_oversized_message_goes_alone() -> None:
    sink = make_sink("http://127.0.0.1:1", batch={"max_records": 100, "max_bytes": 1024})
    bodies = request_bodies([sized(0, 5000), sized(1, 10)], sink)
    assert [count for count, _ in bodies] == [1, 1]
    assert len(bodies[0][1]) == 5002


# -- credentials ------------------------------------------------------------------------------------------
async def test_bearer_from_file_is_read_again_after_a_401(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-1\n")

    def plan(request: ReceivedRequest) -> Reply:
        return OK if request.headers.get("Authorization") == "Bearer token-2" else Reply(401, "expired")

    calls = Calls()
    async with HttpReceiver(plan) as receiver:
        transport = HttpTransport(make_sink(receiver.url, auth={"method": "bearer", "value_file": str(token)}))
        token.write_text("token-2\n")  # rotated after the transport read it
        await transport.send(calls.deliveries([message(0)]))
        await transport.close()
    assert [r.headers["Authorization"] for r in receiver.requests] == ["Bearer token-1", "Bearer token-2"]
    assert calls.counts == {0: 1}
    assert (transport.records_sent, transport.records_rejected, transport.retries) == (1, 0, 1)


async def test_a_401_with_an_unchanged_key_is_a_rejection_with_a_hint_and_no_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    calls = Calls()
    async with HttpReceiver([Reply(401, f'{{"error":"unknown key {SECRET}"}}')]) as receiver:
        sink = make_sink(receiver.url, auth={"method": "api-key", "header": "X-Api-Key",
                                             "value_env": "MOKAMETRICS_API_KEY"})
        transport = HttpTransport(sink, environ={"MOKAMETRICS_API_KEY": SECRET})
        await transport.send(calls.deliveries([message(0), message(1)]))
        await transport.close()
    assert len(receiver.requests) == 1
    assert calls.counts == {0: 1, 1: 1}
    assert (transport.records_rejected, transport.records_sent, transport.retries) == (2, 0, 0)
    assert "http_sinks.moka.auth.value_env (MOKAMETRICS_API_KEY)" in caplog.text
    assert "http_sinks.moka.auth.header (X-Api-Key)" in caplog.text
    assert 'unknown key ***' in caplog.text
    assert transport.last_rejection is not None and transport.last_rejection["status"] == 401
    for view in (caplog.text, repr(transport.health()), repr(transport), repr(vars(transport))):
        assert SECRET not in view


def test_missing_secret_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    sink = make_sink("http://127.0.0.1:1", auth={"method": "api-key", "value_env": "MOKAMETRICS_API_KEY"})
    with pytest.raises(ConfigError, match=r"http_sinks\.moka\.auth\.value_env: .*MOKAMETRICS_API_KEY"):
        HttpTransport(sink, environ={})
    sink = make_sink("http://127.0.0.1:1", auth={"method": "bearer", "value_file": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match=r"http_sinks\.moka\.auth\.value_file: cannot read"):
        HttpTransport(sink)
    bad = "line-one\nline-two"
    sink = make_sink("http://127.0.0.1:1", auth={"method": "bearer", "value_env": "TOKEN"})
    with pytest.raises(ConfigError, match=r"http_sinks\.moka\.auth\.value_env: .*line breaks") as raised:
        HttpTransport(sink, environ={"TOKEN": bad})
    assert bad not in str(raised.value)


# -- retries, rejections ------------------------------------------------------------------------------
async def test_a_flaky_receiver_loses_nothing_and_keeps_the_order(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    troubles = {1: Reply(500, "boom"), 3: Reply(429, headers={"Retry-After": "1"}), 6: Reply(500),
                7: Reply(hang_s=30), 9: Reply(drop=True), 11: Reply(500), 13: Reply(408), 16: Reply(500),
                18: Reply(503, "busy"), 21: Reply(500)}  # 5 of the first 25 requests are 500s

    def plan(request: ReceivedRequest) -> Reply:
        return troubles.get(request.index, OK)

    messages = [message(i) for i in range(40)]
    calls = Calls()
    async with HttpReceiver(plan) as receiver:
        sink = make_sink(receiver.url, timeout_s=1.0, batch={"max_records": 3},
                         auth={"method": "bearer", "value_env": "TOKEN"})
        transport = HttpTransport(sink, environ={"TOKEN": SECRET})
        await transport.send(calls.deliveries(messages[:20]))
        await transport.send(calls.deliveries(messages[20:], first=20))
        await transport.close()
    batches = 7 + 7
    assert len(receiver.requests) == batches + len(troubles)
    assert receiver.delivered_items() == payloads(messages)  # each batch delivered once, in order
    assert calls.counts == dict.fromkeys(range(40), 1)
    assert transport.retries == len(troubles)
    assert (transport.timeouts, transport.connection_errors) == (1, 1)
    assert transport.responses == {"2xx": batches, "3xx": 0, "4xx": 2, "5xx": 6}
    assert (transport.records_sent, transport.records_rejected) == (40, 0)
    throttled = receiver.requests[3]
    assert throttled.answered is not None
    assert receiver.requests[4].arrived - throttled.answered >= 0.99  # Retry-After: 1 honoured
    assert receiver.requests[4].body == throttled.body
    assert transport.connected and transport.last_error is None and transport.state == SinkState.CLOSED
    assert "answered 500 Internal Server Error: boom" in caplog.text
    assert "no answer from" in caplog.text and "http_sinks.moka.timeout_s" in caplog.text
    assert SECRET not in caplog.text


async def test_a_400_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    calls = Calls()
    async with HttpReceiver([Reply(400, '{"error": "field \'ts\'\n missing"}')]) as receiver:
        transport = HttpTransport(make_sink(receiver.url))
        await transport.send(calls.deliveries([message(0), message(1), message(2)]))
        assert len(receiver.requests) == 1
        await transport.send(calls.deliveries([message(3)], first=3))  # the next batch goes on
        await transport.close()
    assert len(receiver.requests) == 2
    assert calls.counts == dict.fromkeys(range(4), 1)
    assert (transport.records_rejected, transport.records_sent, transport.retries) == (3, 1, 0)
    assert transport.last_rejection is not None
    assert transport.last_rejection["status"] == 400 and transport.last_rejection["records"] == 3
    assert transport.last_rejection["reason"] == """{"error": "field 'ts' missing"}"""
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("http_sink")]
    assert "answered 400 Bad Request; 3 record(s) given up, not retried" in warning.getMessage()


async def test_a_408_is_retried() -> None:
    calls = Calls()
    async with HttpReceiver([Reply(408)]) as receiver:
        transport = HttpTransport(make_sink(receiver.url))
        await transport.send(calls.deliveries([message(0)]))
        await transport.close()
    assert [r.reply.status for r in receiver.requests] == [408, 200]
    assert receiver.requests[0].body == receiver.requests[1].body
    assert calls.counts == {0: 1}
    assert (transport.retries, transport.records_sent, transport.records_rejected) == (1, 1, 0)


async def test_a_redirect_is_not_followed() -> None:
    redirect = Reply(307, headers={"Location": "https://other.example/ingest?sig=abc"})
    async with HttpReceiver([redirect]) as receiver:
        transport = HttpTransport(make_sink(receiver.url))
        await transport.send(Calls().deliveries([message(0)]))
        await transport.close()
    assert len(receiver.requests) == 1
    assert transport.records_rejected == 1
    assert transport.last_rejection is not None
    reason = transport.last_rejection["reason"]
    assert "redirect to https://other.example/ingest not followed" in reason and "http_sinks.moka.url" in reason
    assert "sig=abc" not in reason


def test_retry_after_forms() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s("999999") == 3600.0
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = retry_after_s(soon)
    assert wait is not None and 28.0 <= wait <= 30.0
    past = email.utils.format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_s(past) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None and retry_after_s("-3") is None


async def test_an_unreachable_receiver_is_retried_and_reported() -> None:
    gate = Gate()
    calls = Calls()
    transport = HttpTransport(make_sink(f"http://127.0.0.1:{free_port()}"), hold=gate)
    sending = asyncio.create_task(transport.send(calls.deliveries([message(0)])))
    await gate.wait_calls(2)
    assert transport.state == SinkState.RETRYING and not transport.connected
    assert transport.last_error is not None and "refused" in transport.last_error
    await gate.wait_calls(4)
    assert transport.state == SinkState.FAILING
    assert transport.connection_errors >= 3
    await transport.close()
    await sending
    assert not calls.counts


# -- holds, closing ---------------------------------------------------------------------------------------
async def test_no_request_goes_out_while_held() -> None:
    gate = Gate(shut=True)

    def plan(request: ReceivedRequest) -> Reply:
        if request.index == 0:
            gate.shut()  # the retry after this 500 is held
            return Reply(500)
        return OK

    calls = Calls()
    async with HttpReceiver(plan) as receiver:
        transport = HttpTransport(make_sink(receiver.url), hold=gate)
        sending = asyncio.create_task(transport.send(calls.deliveries([message(0)])))
        await gate.wait_calls(1)
        assert receiver.requests == [] and transport.requests == 0
        gate.open()
        await gate.wait_calls(2)  # held again before the retry
        assert len(receiver.requests) == 1 and not calls.counts
        gate.open()
        await sending
        await transport.close()
    assert [r.reply.status for r in receiver.requests] == [500, 200]
    assert calls.counts == {0: 1}


async def test_close_during_retries_returns_promptly() -> None:
    calls = Calls()
    async with HttpReceiver(lambda _: Reply(503)) as receiver:
        transport = HttpTransport(make_sink(receiver.url, retry={"initial_s": 30, "max_s": 60}))
        sending = asyncio.create_task(transport.send(calls.deliveries([message(0)])))
        await receiver.wait_for(lambda r: bool(r.requests) and r.requests[0].answered is not None)
        started = time.monotonic()
        await transport.close()
        await sending
        assert time.monotonic() - started < 2.0
        await transport.close()  # twice is fine
    assert len(receiver.requests) == 1 and not calls.counts
    assert transport.records_sent == 0 and transport.state == SinkState.CLOSED


async def test_close_during_a_request_returns_promptly() -> None:
    never = asyncio.Event()
    calls = Calls()
    async with HttpReceiver([Reply(until=never)]) as receiver:
        transport = HttpTransport(make_sink(receiver.url, timeout_s=60))
        runner = asyncio.create_task(transport.run())
        sending = asyncio.create_task(transport.send(calls.deliveries([message(0)])))
        await receiver.wait_requests(1)
        assert transport.state == SinkState.SENDING
        started = time.monotonic()
        await transport.close()
        await sending
        await runner
        assert time.monotonic() - started < 2.0
    assert not calls.counts
    await transport.send(Calls().deliveries([message(1)]))  # after close: nothing goes out
    assert len(receiver.requests) == 1


async def test_wait_idle_waits_for_a_running_send() -> None:
    release = asyncio.Event()
    calls = Calls()
    async with HttpReceiver([Reply(until=release)]) as receiver:
        transport = HttpTransport(make_sink(receiver.url))
        await asyncio.wait_for(transport.wait_idle(), 1.0)  # nothing running: at once
        sending = asyncio.create_task(transport.send(calls.deliveries([message(0)])))
        await receiver.wait_requests(1)
        idle = asyncio.create_task(transport.wait_idle())
        await asyncio.wait({idle}, timeout=0.2)
        assert not idle.done()
        release.set()
        await asyncio.wait_for(idle, 5.0)
        assert calls.counts == {0: 1} and sending.done()
        await transport.close()


# -- TLS ---------------------------------------------------------------------------------------------------
async def test_tls_verified_against_the_ca_file(test_pki: Pki) -> None:
    async with HttpReceiver(ssl_context=server_tls(test_pki)) as receiver:
        transport = HttpTransport(make_sink(receiver.url, tls={"ca_file": str(test_pki.ca_cert)}))
        await transport.send(Calls().deliveries([message(0)]))
        await transport.close()
    assert receiver.url.startswith("https://") and len(receiver.delivered()) == 1


async def test_tls_without_the_ca_fails_with_a_clear_error(test_pki: Pki) -> None:
    gate = Gate()
    calls = Calls()
    async with HttpReceiver(ssl_context=server_tls(test_pki)) as receiver:
        transport = HttpTransport(make_sink(receiver.url), hold=gate)
        sending = asyncio.create_task(transport.send(calls.deliveries([message(0)])))
        await gate.wait_calls(2)
        await transport.close()
        await sending
    assert receiver.requests == [] and not calls.counts
    assert transport.last_error is not None
    assert "TLS certificate verification failed for 127.0.0.1:" in transport.last_error
    assert "http_sinks.moka.tls.ca_file" in transport.last_error


async def test_tls_verify_false(test_pki: Pki) -> None:
    async with HttpReceiver(ssl_context=server_tls(test_pki)) as receiver:
        transport = HttpTransport(make_sink(receiver.url, tls={"verify": False}))
        await transport.send(Calls().deliveries([message(0)]))
        await transport.close()
    assert len(receiver.delivered()) == 1


async def test_mutual_tls(test_pki: Pki) -> None:
    gate = Gate()
    async with HttpReceiver(ssl_context=server_tls(test_pki, require_client_cert=True)) as receiver:
        with_cert = HttpTransport(make_sink(receiver.url, tls={
            "ca_file": str(test_pki.ca_cert), "cert_file": str(test_pki.client_cert),
            "key_file": str(test_pki.client_key)}))
        await with_cert.send(Calls().deliveries([message(0)]))
        await with_cert.close()
        without = HttpTransport(make_sink(receiver.url, tls={"ca_file": str(test_pki.ca_cert)}), hold=gate)
        sending = asyncio.create_task(without.send(Calls().deliveries([message(1)])))
        await gate.wait_calls(2)
        await without.close()
        await sending
    assert len(receiver.delivered()) == 1 and without.records_sent == 0
    assert without.connection_errors >= 1 and without.last_error is not None


def test_unreadable_tls_files_are_config_errors(tmp_path: Path, test_pki: Pki) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    for ca_file in (tmp_path / "absent.pem", garbage):
        with pytest.raises(ConfigError, match=r"http_sinks\.moka\.tls\.ca_file: cannot load"):
            HttpTransport(make_sink("https://127.0.0.1:1", tls={"ca_file": str(ca_file)}))
    with pytest.raises(ConfigError, match=r"http_sinks\.moka\.tls\.cert_file: cannot load"):
        HttpTransport(make_sink("https://127.0.0.1:1", tls={"cert_file": str(garbage),
                                                            "key_file": str(test_pki.client_key)}))
