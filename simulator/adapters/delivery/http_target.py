"""HTTP sinks: a delivery target (:mod:`simulator.adapters.delivery.target`: queue or spool, outage,
faults) whose transport POSTs batches of messages (:mod:`simulator.adapters.delivery.http_sink`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.adapters.delivery.http_sink import HttpTransport
from simulator.adapters.delivery.target import DeliveryTarget
from simulator.config.http_sinks import HttpSink
from simulator.formats import Format


class HttpSinkTarget(DeliveryTarget):
    kind = "http"
    key = "http_sinks"

    def __init__(self, sink: HttpSink, fmt: Format, *, environ: Mapping[str, str] | None = None, seed: int = 0,
                 program: str = "run", instance_id: str | None = None) -> None:
        self.sink = sink
        self.http = HttpTransport(sink, environ=environ, hold=self._hold)
        super().__init__(sink, fmt, self.http, seed=seed, program=program, instance_id=instance_id,
                         batch_limit=sink.batch.max_records, linger_s=sink.batch.linger_ms / 1000)

    async def _hold(self) -> None:
        """No request goes out while the network is down (a retry waits for the outage to end)."""
        await self.outage.wait_clear()

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "body": self.sink.body, **self.http.health(), **self.delivery_health()}
