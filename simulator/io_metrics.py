"""Counters of the service's I/O, kept in one Prometheus registry per app.

Live gauges (simulated time, lag, WIP, utilisation, outbox depth, consumer lag) are read from
the running components when /metrics is scraped; see :mod:`simulator.adapters.http`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IoMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_sent = Counter("factorysim_kafka_records_sent", "Messages acknowledged by Kafka",
                                    ["topic"], registry=r)
        self.records_failed = Counter("factorysim_kafka_records_failed",
                                      "Message deliveries that failed (retriable ones are sent again)",
                                      ["topic"], registry=r)
        self.records_retried = Counter("factorysim_kafka_records_retried", "Messages sent again after a failure",
                                       ["topic"], registry=r)
        self.orders_consumed = Counter("factorysim_orders_consumed", "Messages read from the orders topic",
                                       registry=r)
        self.lots_admitted = Counter("factorysim_lots_admitted", "Orders admitted to the model as lots",
                                     registry=r)
        self.orders_dead_lettered = Counter("factorysim_orders_dead_lettered",
                                            "Orders sent to the dead-letter topic", ["reason"], registry=r)
        self.offsets_committed = Counter("factorysim_offsets_committed", "Order offset commits", registry=r)
        self.commands = Counter("factorysim_commands", "Runtime commands by entrance (http, mqtt), command and "
                                "outcome (accepted, rejected, unauthorized)", ["source", "command", "outcome"],
                                registry=r)
