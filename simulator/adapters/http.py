"""The service's HTTP API over aiohttp: the health endpoint (:mod:`simulator.adapters.health_server`)
plus the live model's views and the runtime commands.

Read-only views, always open: /health, /health/live, /health/ready, /metrics, /status, /machines,
/machines/{id}, /snapshot (the live model's state, see :mod:`simulator.formats.snapshot`),
/openapi.json and /docs (a page that renders it), /asyncapi.json (the messages of the running
configuration: :mod:`simulator.contracts.asyncapi`).
Commands (see :mod:`simulator.command_schema`), always behind a bearer token (configured, or
generated at start: :mod:`simulator.adapters.http_token`) unless ``http.open_controls`` is true:
POST /machines/{id}/block, POST /machines/{id}/repair, POST and DELETE /machines/{id}/anomaly,
POST /simulation/pause, POST /simulation/resume, PUT /simulation/speed.  A rejected command
answers 400 (404 for an unknown machine) with
``{"error": <reason code>, "detail": <text>}``.  The EnMS simulator's /simulator/... routes map onto
these (:mod:`simulator.adapters.enms_routes`)."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from simulator.adapters import enms_routes, openapi
from simulator.adapters.docs_page import DOCS_HEADERS, docs_page
from simulator.adapters.health_server import HealthServer, HttpServerClosed, json_response
from simulator.adapters.http_token import ControlToken
from simulator.adapters.listening import PortSetting
from simulator.command_schema import decode_command
from simulator.contracts.asyncapi import document as asyncapi_document
from simulator.contracts.catalogue import dumps
from simulator.errors import CommandRejected
from simulator.interfaces import HttpServiceView
from simulator.model.control import anomaly_view, block_view
from simulator.model.machine import Machine, MachineState
from simulator.reporting.summary import build_report, machine_kpis, pool_utilization

__all__ = ["HTTP_PORT", "HttpServer", "HttpServerClosed", "json_response"]

log = logging.getLogger(__name__)
HTTP_PORT = PortSetting("http.port", env="HEALTH_CHECK_PORT")


# reason codes of rejected commands that are not a 400
_STATUS = {"unknown_machine": 404, "unavailable": 503}
UNAUTHORIZED_DETAIL = ("this endpoint needs 'Authorization: Bearer <token>': the token configured with http.token_env "
                       "or http.token_file, or else the one the service generated at start (printed once in its log "
                       "and written to a file only the service's user can read; see the README, 'Security')")


class LiveCollector(Collector):
    """Gauges read from the service at scrape time."""

    def __init__(self, service: HttpServiceView) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        svc = self.service
        sims = svc.sims()
        counts = svc.lot_counts()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("factorysim_up", "1 when the service is healthy", 1.0 if svc.healthy else 0.0)
        yield gauge("factorysim_kafka_connected", "1 when Kafka answers and deliveries succeed",
                    1.0 if svc.kafka_connected else 0.0)
        yield gauge("factorysim_sim_time_seconds", "Simulated time since the start (the plant furthest behind)",
                    min((sim.now for sim in sims), default=0.0))
        yield gauge("factorysim_sim_lag_seconds", "How far the paced driver is behind the wall clock", svc.lag_s)
        yield gauge("factorysim_outbox_depth", "Records waiting for the publishers", len(svc.outbox))
        lag = svc.intake.lag() if svc.intake else None
        yield gauge("factorysim_consumer_lag", "Orders on the topic not yet consumed", float(lag or 0))
        yield gauge("factorysim_records_in_flight", "Messages sent but not yet confirmed",
                    svc.publisher.in_flight if svc.publisher else 0)
        lots = GaugeMetricFamily("factorysim_lots", "Lots by state since the start", labels=["state"])
        for state in ("received", "completed", "scrapped", "in_progress"):
            lots.add_metric([state], counts[state])
        yield lots
        plants = GaugeMetricFamily("factorysim_plant_owned", "1 for each plant this instance runs",
                                   labels=["plant", "instance"])
        plant_time = GaugeMetricFamily("factorysim_plant_sim_time_seconds", "Simulated time of each plant run here",
                                       labels=["plant"])
        utilization = GaugeMetricFamily("factorysim_pool_utilization",
                                        "Share of scheduled time the pool's machines ran",
                                        labels=["location", "machine_type"])
        queue = GaugeMetricFamily("factorysim_pool_queue_length", "Lots waiting for the pool",
                                  labels=["location", "machine_type"])
        states = GaugeMetricFamily("factorysim_machines", "Machines by state", labels=["location", "state"])
        counts_by_state: dict[tuple[str, str], int] = {}
        for sim in sims:
            now = sim.now
            for plant in sim.config.locations:
                plants.add_metric([plant, svc.instance_id], 1.0)
                plant_time.add_metric([plant], now)
            for (location, mtype), pool in sim.plant.pools.items():
                utilization.add_metric([location, mtype], pool_utilization(pool.machines, now)[0])
                queue.add_metric([location, mtype], pool.queue_length)
                for machine in pool.machines:
                    counts_by_state[(location, machine.state)] = counts_by_state.get((location, machine.state), 0) + 1
        for (location, state), count in sorted(counts_by_state.items()):
            states.add_metric([location, state], count)
        yield plants
        yield plant_time
        instance = svc.instance_view()
        info = GaugeMetricFamily("factorysim_instance", "This instance (1): its id, and whether it shares the plants",
                                 labels=["instance", "scale_out"])
        info.add_metric([svc.instance_id, "true" if instance.get("scale_out") else "false"], 1.0)
        yield info
        if instance.get("scale_out"):
            yield gauge("factorysim_rebalances", "Rebalances of the plants' group this instance went through",
                        instance["rebalances"])
            yield gauge("factorysim_plants_taken_over", "Plants this instance took over since it started",
                        instance["plants_taken_over"])
            yield gauge("factorysim_plants_handed_over", "Plants this instance handed over since it started",
                        instance["plants_handed_over"])
            take_over = GaugeMetricFamily("factorysim_plant_take_over_seconds",
                                          "How long the latest take-over of the plant took, to live", labels=["plant"])
            for plant, seconds in instance["take_over_s"].items():
                take_over.add_metric([plant], seconds)
            yield take_over
        yield utilization
        yield queue
        yield states


class HttpServer(HealthServer):
    """The health endpoint of the service plus its views and commands (the routes the API
    description lists, :mod:`simulator.adapters.openapi`: one table for both)."""

    def __init__(self, service: HttpServiceView, host: str, port: int) -> None:
        super().__init__(service, service.metrics.registry, host, port, HTTP_PORT)
        self.service = service
        service.metrics.registry.register(LiveCollector(service))
        self._environ = os.environ if service.environ is None else service.environ
        self.token = ControlToken.from_settings(service.config.http, self._environ)
        views: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "status": self.status, "machines": self.machines, "machine": self.machine, "snapshot": self.snapshot,
            "docs": self.docs, "simulator_status": self.simulator_status, "asyncapi": self.asyncapi}
        self.app.router.add_get("/openapi.json", self.openapi)
        self._asyncapi: bytes | None = None
        for method, path, operation, _ in openapi.VIEWS:
            handler = views.get(openapi.VIEW_ALIASES.get(operation, operation))
            if handler is not None:  # (the health views are the HealthServer's)
                self.app.router.add_route(method.upper(), path, handler)
        for method, path, command, _ in openapi.COMMAND_ROUTES:
            self.app.router.add_route(method.upper(), path, self._command(command))
        for method, path, operation, _ in openapi.CONTROL_ROUTES:
            self.app.router.add_route(method.upper(), path, self._start_or_stop(operation == "simulator_start"))

    async def start(self) -> None:
        await super().start()
        self.token.publish(self.service.config.http, self._environ, self.host, self.port)

    async def stop(self) -> None:
        self.token.withdraw()
        await super().stop()

    # -- views ----------------------------------------------------------------------------------------
    async def openapi(self, _: web.Request) -> web.Response:
        return json_response(openapi.document(sorted(self.service.machine_plants)))

    async def asyncapi(self, _: web.Request) -> web.Response:
        """The AsyncAPI document of the running configuration (made once: the configuration does not change)."""
        if self._asyncapi is None:
            self._asyncapi = dumps(asyncapi_document(self.service.config))
        return web.Response(body=self._asyncapi, content_type="application/json")

    async def docs(self, _: web.Request) -> web.Response:
        return web.Response(text=docs_page(), content_type="text/html", headers=DOCS_HEADERS)

    async def simulator_status(self, _: web.Request) -> web.Response:
        return json_response(enms_routes.status(self.service))

    async def status(self, _: web.Request) -> web.Response:
        svc = self.service
        sims = svc.sims()
        report: dict[str, Any] = build_report(sims[0]) if len(sims) == 1 and not svc.scale_out else \
            {"plants": {plant: build_report(sim) for sim in sims for plant in sim.config.locations}}
        return json_response({"health": svc.health(), "report": report})

    async def machines(self, _: web.Request) -> web.Response:
        views = {mid: _machine_view(m, sim.now) for sim in self.service.sims() for mid, m in sim.plant.machines.items()}
        return json_response(dict(sorted(views.items())))

    async def machine(self, request: web.Request) -> web.Response:
        machine_id = request.match_info["machine_id"]
        svc = self.service
        for sim in svc.sims():
            machine = sim.plant.machines.get(machine_id)
            if machine is not None:
                return json_response({"id": machine_id, **_machine_view(machine, sim.now)})
        plant = svc.machine_plants.get(machine_id)
        if plant is None:
            return json_response({"error": "unknown_machine", "detail": f"no machine {machine_id!r}",
                                  "machine_id": machine_id, "known": sorted(svc.machine_plants)}, 404)
        return self._elsewhere(request, machine_id, plant)

    def _elsewhere(self, request: web.Request, machine_id: str, plant: str) -> web.Response:
        """A machine of a plant another instance runs (scale_out): a redirect to its owner, when
        the group's assignment says where that is; else 503 (the plant is changing hands)."""
        svc = self.service
        owner, url = svc.owner_of(plant), svc.owner_url_of(plant)
        body = {"error": "elsewhere", "machine_id": machine_id, "plant": plant, "owner": owner,
                "owner_url": url, "detail": f"plant {plant} is run by instance {owner}" if owner else
                f"plant {plant} is being taken over by another instance; ask again in a few seconds"}
        if url is None or owner == svc.instance_id:  # (this instance is taking it over: no redirect to itself)
            body["detail"] = f"plant {plant} is being taken over; ask again in a few seconds"
            return json_response(body, 503, headers={"Retry-After": "2"})
        return json_response(body, 307, headers={"Location": f"{url}{request.rel_url}"})

    async def snapshot(self, request: web.Request) -> web.Response:
        plant = request.query.get("plant")
        raw = await self.service.export_snapshot(plant=plant)
        if raw is None:
            return json_response({"error": "unavailable", "detail": "the run is not live (starting, recovering or "
                                  "stopping), or the simulation did not take the snapshot in time" +
                                  ("; with kafka.scale_out name a plant run here: /snapshot?plant=NAME"
                                   if self.service.scale_out else "")}, 503)
        return web.Response(body=raw, content_type="application/json")

    # -- commands -------------------------------------------------------------------------------------
    def _command(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The handler of command ``name``: the JSON body (optional) plus the machine id of the path."""

        async def handle(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return self._unauthorized(request, name)
            try:
                try:
                    body = await self._body(request, name)
                except CommandRejected as exc:
                    self.service.commands.rejected("http", name, exc)
                    raise
                result = await self.service.commands.execute(body, source="http")  # the run's (rebuilt on recovery)
            except CommandRejected as exc:
                return json_response({"error": exc.reason, "detail": exc.detail}, _STATUS.get(exc.reason, 400))
            return json_response(result)

        return handle

    def _start_or_stop(self, start: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The handler of POST /simulator/start (``start``) or /simulator/stop."""
        name = "simulator_start" if start else "simulator_stop"

        async def handle(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return self._unauthorized(request, name)
            try:
                answer = await enms_routes.start_or_stop(self.service, start, await request.read())
            except CommandRejected as exc:
                return json_response({"error": exc.reason, "detail": exc.detail}, _STATUS.get(exc.reason, 400))
            return json_response(answer)

        return handle

    def _unauthorized(self, request: web.Request, name: str) -> web.Response:
        self.service.metrics.commands.labels("http", name, "unauthorized").inc()
        log.warning("command %s from %s refused: missing or wrong bearer token", name, request.remote)
        return json_response({"error": "unauthorized", "detail": UNAUTHORIZED_DETAIL},
                             401, headers={"WWW-Authenticate": 'Bearer realm="factorysim"'})

    def _authorized(self, request: web.Request) -> bool:
        expected = self.token.value
        if expected is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # compare_digest: the time taken does not tell how much of the token was right
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(errors="replace"), expected)

    @staticmethod
    async def _body(request: web.Request, name: str) -> dict[str, Any]:
        raw = await request.read()
        body = decode_command(raw) if raw else {}  # no body: no fields; anything else is a JSON object or refused
        if body.get("command", name) != name or body.get("cmd", name) != name:
            raise CommandRejected("invalid_field", f"the path names the command {name!r}; leave 'command' out")
        body["command"] = name
        body.pop("cmd", None)
        machine_id = request.match_info.get("machine_id")
        if machine_id is not None:
            if body.get("machine_id", machine_id) != machine_id:
                raise CommandRejected("invalid_field", "machine_id in the body differs from the one in the path")
            body["machine_id"] = machine_id
        return body


def _machine_view(machine: Machine, now: float) -> dict[str, Any]:
    view = machine_kpis(machine, now)
    view["current_lot"] = machine.current_lot.code if machine.current_lot is not None else None
    view["state_since_s"] = round(machine.since, 3)
    view["blocked"] = machine.state == MachineState.BLOCKED
    view["cycles_since_maintenance"] = machine.cycles_since_maintenance
    view["pieces_since_maintenance"] = machine.pieces_since_maintenance
    view["last_maintenance_s"] = round(machine.last_maintenance, 3)
    view["block"] = block_view(machine)  # reason, cause, since_s, until_s (None when not blocked)
    view["anomaly"] = anomaly_view(machine, now)  # type, severity, until_s (None without one)
    return view
