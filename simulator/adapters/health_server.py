"""The health endpoint every long-running program serves: GET /health, /health/live,
/health/ready and /metrics over aiohttp, for a :class:`~simulator.interfaces.HealthView`.

The service's HTTP server (:mod:`simulator.adapters.http`) adds its views and commands to it; the
MQTT bridge serves it as it is.  /health answers 503 when the program is unhealthy, /health/ready
503 with the reasons when it is not ready.  :meth:`HealthServer.serve` is the server's loop for a
supervisor: it ends (with an error) when the server stops listening.  A malformed HTTP request (an
over-long URL, say) is the client's error: one line in the log, not a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from simulator.adapters.listening import PortSetting, listen
from simulator.errors import FactorySimError
from simulator.interfaces import HealthStatus, HealthView

log = logging.getLogger(__name__)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status,
                        content_type="application/json", headers=headers)


class HttpServerClosed(FactorySimError):
    """The HTTP server stopped listening while the program runs."""


class _ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs a malformed request (a 400 it answers itself) as an error with a traceback; it
    is the client's error: keep one line at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.getMessage().startswith("Error handling request"):
            what = record.getMessage().replace("Error handling request", "malformed HTTP request")
            record.msg, record.args = "%s: %s %s", (what, exc.code, str(exc.message)[:200])
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


_ONE_LINE_FILTER = _ClientErrorsInOneLine()


class HealthServer:
    """Serves ``view``'s health and ``registry``'s metrics on ``host``:``port`` (0: any free port;
    ``setting`` names where the port is configured, for the one-line error when it is taken)."""

    def __init__(self, view: HealthView, registry: CollectorRegistry, host: str, port: int,
                 setting: PortSetting, name: str = "health endpoint") -> None:
        self.view = view
        self.registry = registry
        self.host = host
        self.port = port
        self.setting = setting
        self.name = name
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.app = web.Application()
        self.app.add_routes([web.get("/health", self.health), web.get("/health/live", self.live),
                             web.get("/health/ready", self.ready), web.get("/metrics", self.metrics)])

    def add_json_document(self, path: str, make: Callable[[], bytes]) -> None:
        """Serve the JSON document ``make`` returns at GET ``path`` (made at the first request, then kept)."""
        made: list[bytes] = []

        async def document(_: web.Request) -> web.Response:
            if not made:
                made.append(make())
            return web.Response(body=made[0], content_type="application/json")
        self.app.router.add_get(path, document)

    async def start(self) -> None:
        server_log = logging.getLogger("aiohttp.server")
        if _ONE_LINE_FILTER not in server_log.filters:
            server_log.addFilter(_ONE_LINE_FILTER)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        try:
            site, self.port = await listen(self._runner, self.host, self.port, self.setting)
        except FactorySimError:
            await self.stop()
            raise
        self._server = site._server if isinstance(site._server, asyncio.Server) else None
        log.info("%s on http://%s:%s/health", self.name, self.host, self.port)

    async def serve(self, check_interval_s: float = 0.2) -> None:
        """Until the server stops listening (then HttpServerClosed) or this task is cancelled (which
        leaves the server as it is: it stops with :meth:`stop`, last of all)."""
        server = self._server
        # polled: asyncio.Server's wait_closed() also waits for every open connection to end
        while server is not None and server.is_serving():  # noqa: ASYNC110
            await asyncio.sleep(check_interval_s)
        raise HttpServerClosed(f"the HTTP server on port {self.port} stopped listening")

    def close_listener(self) -> None:
        """Stop accepting connections (what a failing server does; the fault drill uses it)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- handlers -------------------------------------------------------------------------------------
    async def health(self, _: web.Request) -> web.Response:
        body = self.view.health()
        return json_response(body, 503 if body["status"] == HealthStatus.UNHEALTHY else 200)

    async def live(self, _: web.Request) -> web.Response:
        return json_response({"status": "alive", "state": self.view.state})

    async def ready(self, _: web.Request) -> web.Response:
        ready = self.view.ready
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "state": self.view.state}
        if not ready:
            body["reasons"] = self.view.not_ready_because() or ["not ready"]
        return json_response(body, 200 if ready else 503)

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
