"""Delivery over HTTP: :class:`HttpTransport` POSTs a sink's messages to an HTTP API (``http_sinks``).

- Bodies: ``json-array`` (a batch's payloads in one JSON array), ``ndjson`` (one payload a line) or
  ``json`` (one payload per request, for an API taking one point at a time); ``envelope: true`` wraps
  each payload as ``{"topic", "key", "payload"}``.  Batches are cut at ``batch.max_records`` messages
  and ``batch.max_bytes`` body bytes (a bigger message goes alone); requests go one at a time, in order.
- A 2xx delivers the batch.  5xx, 408, 429, timeouts and connection errors are retried (capped,
  jittered exponential backoff, or the answer's ``Retry-After``); any other answer, a redirect too,
  gives the batch up: its callbacks are called, its records counted as rejected.  A 401 reads the
  secret again first and retries once if it changed (a rotated key).
- The secret (api-key or bearer) comes from the environment variable or file the config names; it
  never appears in logs, health, errors or reprs (response excerpts are scrubbed of it).
- ``hold`` (an outage on purpose) is awaited before every request.  :meth:`HttpTransport.close` stops a
  send where it is; the callbacks of what was not delivered are not called.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import ssl
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar

import aiohttp
from yarl import URL

from simulator import package_version
from simulator.adapters.delivery.http_wire import CONTENT_TYPES, public_url, request_bodies, retry_after_s
from simulator.adapters.delivery.transport import Delivery, Hold
from simulator.adapters.kafka_options import read_secret
from simulator.asyncio_waits import wait_event
from simulator.config.http_sinks import HttpSink
from simulator.errors import ConfigError
from simulator.utc import now_text

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = f"factorysim/{package_version()}"
FAILING_AFTER = 3  # consecutive failed attempts before the state says "failing"
READ_LIMIT = 64 << 10  # response body bytes read (the rest is dropped with the connection)
EXCERPT_CHARS = 200
CLOSE_WAIT_S = 5.0
COUNTERS = ("requests", "timeouts", "connection_errors", "retries", "records_sent", "records_rejected", "bytes_sent")
_HEADER_SAFE = re.compile(r"[\t\x20-\x7e]+")


class SinkState(StrEnum):
    """An HTTP sink's sending, as /health shows it."""

    IDLE = "idle"  # no send running
    SENDING = "sending"  # a request is out (or waiting for a hold), no failure yet
    RETRYING = "retrying"  # the current batch failed and is tried again
    FAILING = "failing"  # the current batch failed FAILING_AFTER times or more in a row
    CLOSED = "closed"


class _Closed(Exception):
    """close() was called: the send stops where it is."""


@dataclass(frozen=True, slots=True)
class _Hidden(Generic[T]):
    """Holds the secret, or the environment it comes from, out of reprs."""

    value: T

    def __repr__(self) -> str:
        return "<hidden>"


class _Answer(NamedTuple):
    status: int
    reason: str
    retry_after: str | None
    location: str | None
    body: bytes


class HttpTransport:
    """The :class:`~simulator.adapters.delivery.transport.Transport` of an HTTP sink.

    ``connected`` starts true (no problem known yet); a timeout, a connection error or a 5xx makes it
    false, any other answer true again.
    """

    def __init__(self, sink: HttpSink, *, environ: Mapping[str, str] | None = None,
                 hold: Hold | None = None) -> None:
        self.sink = sink
        self.key = f"http_sinks.{sink.name}"
        self.endpoint = public_url(sink.endpoint)
        self._environ = _Hidden(os.environ if environ is None else environ)
        self._hold = hold
        url = URL(sink.endpoint)
        if not url.host:
            raise ConfigError([f"{self.key}.url: {self.endpoint} has no host name"])
        if url.user is not None and sink.auth.method == "bearer":
            raise ConfigError([f"{self.key}.url: credentials in the URL cannot go with auth.method bearer"])
        self._where = f"{url.host}:{url.port}"
        self._ssl = _tls_context(sink, self.key) if url.scheme == "https" else None
        self._secret = self._read_secret()
        self._old_secrets: list[_Hidden[str]] = []  # scrubbed from response excerpts too
        self.state = SinkState.IDLE
        self.connected = True
        self.requests = self.timeouts = self.connection_errors = self.retries = 0
        self.records_sent = self.records_rejected = self.bytes_sent = 0
        self.responses = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.last_success: str | None = None
        self.last_latency_s: float | None = None
        self.last_rejection: dict[str, Any] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()  # one request at a time, in order
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = asyncio.Event()
        self._rng = random.Random()  # backoff jitter only

    def __repr__(self) -> str:
        return f"HttpTransport({self.sink.name!r}, {self.endpoint}, state={self.state})"

    # -- the Transport interface ---------------------------------------------------------------------
    async def run(self) -> None:
        """Nothing to keep up between requests: waits for :meth:`close`."""
        await self._closed.wait()

    async def send(self, deliveries: list[Delivery]) -> None:
        """POST the messages in batches, in order; returns once every batch is delivered or given up
        (its callbacks called), or at once after :meth:`close` (undelivered callbacks not called)."""
        if not deliveries or self._closed.is_set():
            return
        self._running += 1
        self._idle.clear()
        try:
            async with self._lock:
                start = 0
                for count, body in request_bodies([m for m, _ in deliveries], self.sink):
                    batch = deliveries[start:start + count]
                    start += count
                    await self._deliver(body, count)
                    for _, done in batch:
                        done()
        except _Closed:
            pass
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()
                if self.state != SinkState.CLOSED:
                    self.state = SinkState.IDLE

    async def wait_idle(self) -> None:
        """Nothing stays in flight after :meth:`send` returns: waits only for a running send."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop a running send (it returns without calling undelivered callbacks), then close the
        connections.  Safe to call twice."""
        self._closed.set()
        await wait_event(self._idle, CLOSE_WAIT_S)
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self.state = SinkState.CLOSED

    def health(self) -> dict[str, Any]:
        return {"name": self.sink.name, "endpoint": self.endpoint, "state": str(self.state),
                "connected": self.connected, **{name: getattr(self, name) for name in COUNTERS},
                "responses": dict(self.responses), "last_status": self.last_status, "last_error": self.last_error,
                "last_success": self.last_success, "last_latency_s": self.last_latency_s,
                "last_rejection": self.last_rejection}

    # -- one batch -----------------------------------------------------------------------------------
    async def _deliver(self, body: bytes, count: int) -> None:
        """Until the batch is delivered (2xx) or given up; raises _Closed on close()."""
        delay = self.sink.retry.initial_s
        attempts = failures = 0
        reread = False
        while True:
            if self._closed.is_set():
                raise _Closed
            if not failures:
                self.state = SinkState.SENDING
            if self._hold is not None:
                await self._unless_closed(self._hold())
            self.retries += attempts > 0
            attempts += 1
            try:
                answer = await self._unless_closed(self._post(body))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, TimeoutError):
                    self.timeouts += 1
                else:
                    self.connection_errors += 1
                self.connected = False
                wait = None
                problem = self._describe(exc)
            else:
                server_error = 500 <= answer.status < 600
                self.connected = not server_error
                if 200 <= answer.status < 300:
                    self._delivered(count, failures)
                    return
                if answer.status == 401 and not reread and self._reload_secret():
                    reread = True
                    continue
                if not server_error and answer.status not in (408, 429):
                    self._reject(answer, count)
                    return
                wait = retry_after_s(answer.retry_after)
                problem = f"{self.endpoint} answered {answer.status} {answer.reason}".rstrip()
                if server_error and answer.body:
                    problem += f": {self._excerpt(answer.body)}"
            failures += 1
            self.state = SinkState.RETRYING if failures < FAILING_AFTER else SinkState.FAILING
            if wait is None:
                wait = delay * (1.0 - self.sink.retry.jitter * self._rng.random())
                delay = min(self.sink.retry.max_s, delay * 2)
            if problem != self.last_error:
                log.warning("HTTP sink %s: %s; retrying in %.1f s", self.sink.name, problem, wait)
            self.last_error = problem
            if await wait_event(self._closed, wait):
                raise _Closed

    async def _post(self, body: bytes) -> _Answer:
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl or True),
                timeout=aiohttp.ClientTimeout(total=self.sink.timeout_s))
        self.requests += 1
        self.bytes_sent += len(body)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with session.post(self.sink.endpoint, data=body, headers=self._headers(),
                                allow_redirects=False) as response:
            data = bytearray()
            while len(data) < READ_LIMIT and (chunk := await response.content.read(READ_LIMIT - len(data))):
                data += chunk
        self.last_latency_s = round(loop.time() - started, 6)
        self.last_status = response.status
        klass = f"{response.status // 100}xx"
        self.responses[klass] = self.responses.get(klass, 0) + 1
        return _Answer(response.status, response.reason or "", response.headers.get("Retry-After"),
                       response.headers.get("Location"), bytes(data))

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Content-Type": CONTENT_TYPES[self.sink.body], **self.sink.headers}
        if self._secret is not None:
            auth = self.sink.auth
            if auth.method == "api-key":
                headers[auth.header] = self._secret.value
            else:
                headers["Authorization"] = f"Bearer {self._secret.value}"
        return headers

    def _delivered(self, count: int, failures: int) -> None:
        if failures:
            log.info("HTTP sink %s: %s takes requests again after %d failed attempt(s)", self.sink.name,
                     self.endpoint, failures)
        self.records_sent += count
        self.last_success = now_text()
        self.last_error = None

    def _reject(self, answer: _Answer, count: int) -> None:
        self.records_rejected += count
        if 300 <= answer.status < 400:
            where = public_url(answer.location) if answer.location else "another address"
            reason = (f"redirect to {where} not followed: set {self.key}.url (and path) to the address "
                      f"that takes the records")
        else:
            reason = self._excerpt(answer.body) or "(no body)"
        self.last_rejection = {"at": now_text(), "status": answer.status, "records": count, "reason": reason}
        log.warning("HTTP sink %s: %s answered %d %s; %d record(s) given up, not retried%s: %s", self.sink.name,
                    self.endpoint, answer.status, answer.reason, count, self._hint(answer.status), reason)

    def _hint(self, status: int) -> str:
        auth = self.sink.auth
        if status in (401, 403):
            if auth.method == "none":
                return f" (the receiver wants credentials: set {self.key}.auth.method to api-key or bearer)"
            source = (f"auth.value_env ({auth.value_env})" if auth.value_env
                      else f"auth.value_file ({auth.value_file})")
            header = f"auth.header ({auth.header})" if auth.method == "api-key" else "auth.method (bearer)"
            return f" (check the credentials: {self.key}.{source} and {self.key}.{header})"
        if status == 413:
            return f" (lower {self.key}.batch.max_bytes or {self.key}.batch.max_records)"
        return ""

    # -- secrets, errors, waiting --------------------------------------------------------------------
    def _read_secret(self) -> _Hidden[str] | None:
        auth = self.sink.auth
        if auth.method == "none":
            return None
        value = read_secret(f"{self.key}.auth.value", auth.value_env, auth.value_file, self._environ.value)
        if not _HEADER_SAFE.fullmatch(value):
            source = "value_env" if auth.value_env else "value_file"
            raise ConfigError([f"{self.key}.auth.{source}: the secret has characters an HTTP header cannot "
                               f"carry (line breaks, control or non-ASCII characters)"])
        return _Hidden(value)

    def _reload_secret(self) -> bool:
        """Read the secret again after a 401; True if it changed (the request is worth another try)."""
        try:
            secret = self._read_secret()
        except ConfigError as exc:
            self.last_error = str(exc)
            log.warning("HTTP sink %s: cannot read the secret again after a 401: %s", self.sink.name, exc)
            return False
        if secret == self._secret or secret is None:
            return False
        if self._secret is not None:
            self._old_secrets = [*self._old_secrets[-3:], self._secret]
        self._secret = secret
        log.info("HTTP sink %s: the secret changed; trying the request again with it", self.sink.name)
        return True

    def _excerpt(self, body: bytes) -> str:
        """The start of a response body, on one line, without any secret of this sink."""
        text = self._scrub(body.decode("utf-8", "replace"))
        text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
        return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"

    def _scrub(self, text: str) -> str:
        text = text.replace(self.sink.endpoint, self.endpoint)
        for secret in (self._secret, *self._old_secrets):
            if secret is not None:
                text = text.replace(secret.value, "***")
        return text

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer from {self.endpoint} within {self.sink.timeout_s:g} s ({self.key}.timeout_s)"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cause = exc.certificate_error
            detail = getattr(cause, "verify_message", None) or cause
            return (f"TLS certificate verification failed for {self._where}: {detail} "
                    f"(check {self.key}.tls.ca_file)")
        if isinstance(exc, aiohttp.ClientSSLError):
            return f"TLS handshake with {self._where} failed: {exc.os_error}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            if isinstance(exc.os_error, ConnectionRefusedError):
                return f"connection to {self._where} refused (is the receiver running?)"
            return f"cannot reach {self._where}: {exc.os_error.strerror or exc.os_error}"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return f"{self._where} closed the connection without answering"
        return f"request to {self.endpoint} failed: {type(exc).__name__}: {self._scrub(str(exc))}"

    async def _unless_closed(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable`` unless close() comes first (then it is cancelled and _Closed raised)."""
        work = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({work, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait({work})
        if work.cancelled():
            raise _Closed
        return work.result()


def _tls_context(sink: HttpSink, key: str) -> ssl.SSLContext:
    """Verification against the system trust store, or against ``ca_file`` alone."""
    tls = sink.tls
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{key}.tls.ca_file: cannot load {tls.ca_file} ({exc.strerror or exc})"]) from exc
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file and tls.key_file:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"{key}.tls.cert_file: cannot load the client certificate {tls.cert_file} with "
                               f"tls.key_file {tls.key_file} ({exc.strerror or exc})"]) from exc
    return context
