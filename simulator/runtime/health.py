"""What the service and the MQTT bridge say of their health the same way: the status of GET
/health and the reasons GET /health/ready gives for a 503 that concern Kafka and a failed loop."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from simulator.interfaces import RUNNING, HealthStatus, ServiceState
from simulator.runtime.supervision import Failure


class Connected(Protocol):
    @property
    def connected(self) -> bool: ...


def health_status(*, up: bool, targets: Iterable[Connected], recovering: bool = False) -> HealthStatus:
    """Unhealthy unless ``up``; then recovering, or degraded while one of the MQTT ``targets`` is not
    connected (Kafka, the system of record, is fine), else healthy."""
    if not up:
        return HealthStatus.UNHEALTHY
    if recovering:
        return HealthStatus.RECOVERING
    return HealthStatus.HEALTHY if all(t.connected for t in targets) else HealthStatus.DEGRADED


def kafka_reasons(program: str, state: ServiceState, kafka_connected: bool, kafka_error: str | None,
                  failure: Failure | None) -> list[str]:
    """Why ``program`` ("the service") is not ready, as far as its state, Kafka (``kafka_error``: the
    latest start-up attempt's) and its loops go."""
    reasons = []
    if state != RUNNING:
        reasons.append(f"{program} is {state}")
    if not kafka_connected:
        reasons.append("Kafka is not reachable" + (f" ({kafka_error})" if kafka_error else ""))
    if failure is not None:
        reasons.append(f"{failure.task} failed ({failure.error})")
    return reasons
