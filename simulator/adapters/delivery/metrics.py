"""What the service and the bridge show of their MQTT targets and HTTP sinks together: the
Prometheus families of the spool, outages and faults, and the ``delivery`` section of /health,
which says loudly when a network outage or a delivery fault is on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from simulator.adapters.delivery.http_target import HttpSinkTarget
from simulator.adapters.delivery.target import DeliveryTarget

FAULT_COUNTS = ("duplicated", "dropped", "delayed", "reordered")


def delivery_view(targets: Sequence[DeliveryTarget]) -> dict[str, Any]:
    """/health ``delivery``: the targets in a network outage and those with delivery faults on."""
    outages = {t.name: t.outage.reason for t in targets if t.outage.active}
    faults = {t.name: t.faults.faults.describe() for t in targets if t.faults_on}
    warnings = [f"network outage on {name} ({reason}): nothing is sent to it" for name, reason in outages.items()]
    warnings += [f"DELIVERY FAULTS ON {name}: {text}; what it receives is altered on purpose"
                 for name, text in faults.items()]
    return {"network_outage": outages, "faults": faults, "warnings": warnings}


class DeliveryMetrics(Collector):
    """Prometheus view of every target's queue or spool, outage and faults, and of the HTTP sinks."""

    def __init__(self, targets: Sequence[DeliveryTarget]) -> None:
        self.targets = targets

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        targets = self.targets
        https = [t for t in targets if isinstance(t, HttpSinkTarget)]

        def family(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, doc: str,
                   value: Callable[[Any], float], among: Sequence[DeliveryTarget] = targets,
                   ) -> CounterMetricFamily | GaugeMetricFamily:
            metric = kind(name, doc, labels=["target", "kind"])
            for t in among:
                metric.add_metric([t.name, t.kind], value(t))
            return metric

        yield family(GaugeMetricFamily, "factorysim_delivery_network_outage",
                     "1 while the target's link is down (network_outage command or schedule)",
                     lambda t: 1.0 if t.outage.active else 0.0)
        yield family(CounterMetricFamily, "factorysim_delivery_outage_seconds", "Seconds spent in network outages",
                     lambda t: t.outage.outage_seconds)
        yield family(GaugeMetricFamily, "factorysim_delivery_faults_on", "1 while delivery faults are on",
                     lambda t: 1.0 if t.faults_on else 0.0)
        faults = CounterMetricFamily("factorysim_delivery_fault_messages", "Messages hit by a delivery fault",
                                     labels=["target", "kind", "fault"])
        for t in targets:
            for fault in FAULT_COUNTS:
                faults.add_metric([t.name, t.kind, fault], getattr(t.faults, fault))
        yield faults
        spooled = [t for t in targets if t.spool_file is not None]
        yield family(GaugeMetricFamily, "factorysim_delivery_spool_bytes", "Message bytes in the spool",
                     lambda t: t.queue.health()["spool"]["bytes"], spooled)
        yield family(GaugeMetricFamily, "factorysim_delivery_spool_messages", "Messages in the spool",
                     lambda t: t.queue.health()["spool"]["messages"], spooled)
        yield family(GaugeMetricFamily, "factorysim_delivery_queue_depth", "Records or messages waiting",
                     lambda t: len(t))
        yield family(CounterMetricFamily, "factorysim_http_sink_requests", "Requests made", lambda t: t.http.requests,
                     https)
        yield family(CounterMetricFamily, "factorysim_http_sink_retries", "Requests made again after a failure",
                     lambda t: t.http.retries, https)
        yield family(CounterMetricFamily, "factorysim_http_sink_records_sent", "Messages the API accepted (2xx)",
                     lambda t: t.http.records_sent, https)
        yield family(CounterMetricFamily, "factorysim_http_sink_records_rejected",
                     "Messages given up on a 4xx other than 408/429", lambda t: t.http.records_rejected, https)
        yield family(GaugeMetricFamily, "factorysim_http_sink_up", "1 while the last request reached the API",
                     lambda t: 1.0 if t.connected else 0.0, https)
