"""``HttpReceiver``: a real HTTP(S) server (aiohttp.web, in the test's event loop, on a free loopback port)
standing in for an HTTP API that takes records.  It records every request (method, path, query,
headers, body, when it arrived and when it was answered) and answers each one by a plan:

- ``plan=None``: 200 to everything;
- a sequence of :class:`Reply`: the n-th request gets the n-th reply, requests after the end get 200;
- a callable ``plan(request) -> Reply``: decides from the request (its ``index``, headers, body).

A :class:`Reply` is a status with headers and body, or a misbehaviour: ``hang_s`` (answer late, e.g.
after the client's timeout), ``until`` (answer once an event is set), ``drop`` (close the connection
without answering).  Waits are on conditions with deadlines (:meth:`HttpReceiver.wait_for`).
``server_tls(pki)`` makes the server side of HTTPS with the test PKI (see harness.pki)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from harness.pki import Pki


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    hang_s: float = 0.0  # wait this long before answering (ends early when the receiver stops)
    until: asyncio.Event | None = None  # answer only once this is set (or the receiver stops)
    drop: bool = False  # close the connection instead of answering


OK = Reply()


@dataclass
class ReceivedRequest:
    index: int  # 0 for the first request the receiver got
    method: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    body: bytes
    arrived: float  # time.monotonic() when the body had been read
    peer: tuple[str, int]  # the client's address and port (the same port: the same connection, reused)
    reply: Reply = OK
    answered: float | None = None  # time.monotonic() just before the answer went out (None: not answered)

    @property
    def ok(self) -> bool:
        """Answered with a 2xx (a request whose client went away before the answer was not answered)."""
        return self.answered is not None and 200 <= self.reply.status < 300

    def items(self) -> list[Any]:
        """The JSON values in the body: a JSON array's elements, NDJSON lines, or the one JSON value."""
        if self.headers.get("Content-Type", "").startswith("application/x-ndjson"):
            return [orjson.loads(line) for line in self.body.splitlines() if line.strip()]
        value = orjson.loads(self.body)
        return value if isinstance(value, list) else [value]


Plan = Callable[[ReceivedRequest], Reply]


def server_tls(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """The receiver's TLS: the test server certificate (localhost, 127.0.0.1); optionally it requires a
    client certificate signed by the test CA (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca_cert)
    return context


class HttpReceiver:
    def __init__(self, plan: Plan | Sequence[Reply] | None = None, *, ssl_context: ssl.SSLContext | None = None,
                 max_body_bytes: int = 80 << 20) -> None:
        self.plan = plan
        self.ssl_context = ssl_context
        self.requests: list[ReceivedRequest] = []
        self.port = 0
        self._max_body_bytes = max_body_bytes
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context is not None else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> HttpReceiver:
        app = web.Application(client_max_size=self._max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> HttpReceiver:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- views ---------------------------------------------------------------------------------------
    def delivered(self) -> list[ReceivedRequest]:
        """The requests answered with a 2xx, in order."""
        return [r for r in self.requests if r.ok]

    def delivered_items(self) -> list[Any]:
        """The JSON values of the 2xx-answered requests, in order."""
        return [item for r in self.delivered() for item in r.items()]

    async def wait_for(self, condition: Callable[[HttpReceiver], bool], timeout_s: float = 10.0) -> None:
        """Until ``condition(self)`` holds (checked whenever a request arrives or is answered)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: condition(self))

    async def wait_requests(self, count: int, timeout_s: float = 10.0) -> None:
        await self.wait_for(lambda r: len(r.requests) >= count, timeout_s)

    # -- serving -------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = ReceivedRequest(len(self.requests), request.method, request.path, request.query_string,
                                   CIMultiDictProxy(CIMultiDict(request.headers)), body, time.monotonic(),
                                   tuple(request.transport.get_extra_info("peername")[:2]) if request.transport
                                   else ("", 0))
        self.requests.append(received)
        received.reply = reply = self._reply_for(received)
        await self._notify()
        if reply.hang_s or reply.until is not None:
            await self._delay(reply)
        if reply.drop or request.transport is None or request.transport.is_closing():
            if request.transport is not None:  # drop, or the client gave up waiting: no answer
                request.transport.close()
            return web.Response()
        received.answered = time.monotonic()
        await self._notify()
        return web.Response(status=reply.status, headers=dict(reply.headers),
                            body=reply.body.encode() if isinstance(reply.body, str) else reply.body)

    def _reply_for(self, request: ReceivedRequest) -> Reply:
        if self.plan is None:
            return OK
        if callable(self.plan):
            return self.plan(request)
        return self.plan[request.index] if request.index < len(self.plan) else OK

    async def _delay(self, reply: Reply) -> None:
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if reply.until is not None:
            waits.append(asyncio.ensure_future(reply.until.wait()))
        try:
            await asyncio.wait(waits, timeout=reply.hang_s or None, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

