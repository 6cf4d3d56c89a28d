"""Health and monitoring over aiohttp: /health, /health/live, /health/ready, /metrics, /status,
/machines and /machines/{id}.  Read-only views of the running service."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from simulator.model.machine import BLOCKED, Machine
from simulator.reporting.summary import build_report, machine_kpis, pool_utilization

if TYPE_CHECKING:
    from simulator.runtime.app import Service

log = logging.getLogger(__name__)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status,
                        content_type="application/json")


class LiveCollector(Collector):
    """Gauges read from the service at scrape time."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        svc = self.service
        stats = svc.sim.stats
        now = svc.sim.now

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("factorysim_up", "1 when the service is healthy", 1.0 if svc.healthy else 0.0)
        yield gauge("factorysim_kafka_connected", "1 when Kafka answers and deliveries succeed",
                    1.0 if svc.kafka_connected else 0.0)
        yield gauge("factorysim_sim_time_seconds", "Simulated time since the start", now)
        yield gauge("factorysim_sim_lag_seconds", "How far the paced driver is behind the wall clock",
                    svc.driver.lag_s)
        yield gauge("factorysim_outbox_depth", "Records waiting for the publishers", len(svc.outbox))
        lag = svc.intake.lag() if svc.intake else None
        yield gauge("factorysim_consumer_lag", "Orders on the topic not yet consumed", float(lag or 0))
        yield gauge("factorysim_records_in_flight", "Messages sent but not yet confirmed",
                    svc.publisher.in_flight if svc.publisher else 0)
        lots = GaugeMetricFamily("factorysim_lots", "Lots by state since the start", labels=["state"])
        lots.add_metric(["received"], stats.received)
        lots.add_metric(["completed"], stats.completed)
        lots.add_metric(["scrapped"], stats.scrapped)
        lots.add_metric(["in_progress"], stats.in_progress)
        yield lots
        utilization = GaugeMetricFamily("factorysim_pool_utilization",
                                        "Share of scheduled time the pool's machines ran",
                                        labels=["location", "machine_type"])
        queue = GaugeMetricFamily("factorysim_pool_queue_length", "Lots waiting for the pool",
                                  labels=["location", "machine_type"])
        states = GaugeMetricFamily("factorysim_machines", "Machines by state", labels=["location", "state"])
        counts: dict[tuple[str, str], int] = {}
        for (location, mtype), pool in svc.sim.plant.pools.items():
            utilization.add_metric([location, mtype], pool_utilization(pool.machines, now)[0])
            queue.add_metric([location, mtype], pool.queue_length)
            for machine in pool.machines:
                counts[(location, machine.state)] = counts.get((location, machine.state), 0) + 1
        for (location, state), count in sorted(counts.items()):
            states.add_metric([location, state], count)
        yield utilization
        yield queue
        yield states


class HttpServer:
    def __init__(self, service: Service, host: str, port: int) -> None:
        self.service = service
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        service.metrics.registry.register(LiveCollector(service))
        app = web.Application()
        app.add_routes([
            web.get("/health", self.health),
            web.get("/health/live", self.live),
            web.get("/health/ready", self.ready),
            web.get("/metrics", self.metrics),
            web.get("/status", self.status),
            web.get("/machines", self.machines),
            web.get("/machines/{machine_id}", self.machine),
        ])
        self.app = app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port: learn which
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]
        log.info("health endpoint on http://%s:%s/health", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- handlers -------------------------------------------------------------------------------------
    async def health(self, _: web.Request) -> web.Response:
        body = self.service.health()
        return _json(body, 200 if body["status"] == "healthy" else 503)

    async def live(self, _: web.Request) -> web.Response:
        return _json({"status": "alive", "state": self.service.state})

    async def ready(self, _: web.Request) -> web.Response:
        ready = self.service.ready
        return _json({"status": "ready" if ready else "not ready", "state": self.service.state}, 200 if ready else 503)

    async def metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.service.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(self, _: web.Request) -> web.Response:
        svc = self.service
        return _json({"health": svc.health(), "report": build_report(svc.sim)})

    async def machines(self, _: web.Request) -> web.Response:
        now = self.service.sim.now
        return _json({mid: _machine_view(m, now) for mid, m in sorted(self.service.sim.plant.machines.items())})

    async def machine(self, request: web.Request) -> web.Response:
        machine_id = request.match_info["machine_id"]
        machine = self.service.sim.plant.machines.get(machine_id)
        if machine is None:
            return _json({"error": "unknown machine", "machine_id": machine_id,
                          "known": sorted(self.service.sim.plant.machines)}, 404)
        return _json({"id": machine_id, **_machine_view(machine, self.service.sim.now)})


def _machine_view(machine: Machine, now: float) -> dict[str, Any]:
    view = machine_kpis(machine, now)
    view["current_lot"] = machine.current_lot.code if machine.current_lot is not None else None
    view["state_since_s"] = round(machine.since, 3)
    view["blocked"] = machine.state == BLOCKED
    view["cycles_since_maintenance"] = machine.cycles_since_maintenance
    view["pieces_since_maintenance"] = machine.pieces_since_maintenance
    view["last_maintenance_s"] = round(machine.last_maintenance, 3)
    return view
