"""The small interfaces between the adapters and the engine (adapters → interfaces ← runtime).

Adapters see the engine only through these: :class:`ModelInputs` (where inputs enter the model),
:class:`RecordSource` (the records a publisher drains), :class:`CommandSink` (where a command from
an entrance goes), :class:`HealthView` (what a health endpoint serves) and :class:`HttpServiceView`
(what the service's HTTP API reads and serves); the engine sees the snapshot store as a
:class:`SnapshotStore`.  The classes satisfy them structurally; the programs
(:mod:`simulator.programs`) put them together; neither the adapters nor the engine import each
other (tests/test_import_graph.py checks it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence, Sized
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from simulator.model.inputs import Input
from simulator.model.lot import Lot

if TYPE_CHECKING:
    from simulator.config.schema import Config
    from simulator.errors import CommandRejected
    from simulator.formats.snapshot import Snapshot
    from simulator.io_metrics import IoMetrics
    from simulator.model.machine import Machine
    from simulator.model.records import Record
from simulator.model.simulation import Simulation

Result = Lot | dict[str, Any] | Exception  # an input's result, or the exception that refused it

class ServiceState(StrEnum):
    """The service's lifecycle states, as /health, /health/live and the API description show them."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


STARTING, RUNNING, STOPPING, STOPPED = ServiceState  # (in the order above)


class HealthStatus(StrEnum):
    """``status`` of GET /health, the service's and the bridge's."""

    HEALTHY = "healthy"
    RECOVERING = "recovering"  # a run found in the journal applies again; not ready yet
    DEGRADED = "degraded"  # an MQTT target is down; Kafka, the system of record, is fine
    UNHEALTHY = "unhealthy"  # answered with 503


class ModelInputs(Protocol):
    """Where inputs enter the model (:mod:`simulator.runtime.gate`)."""

    def submit(self, items: Sequence[Input], sources: Sequence[str | None] | None = None,
               ) -> asyncio.Future[list[Result]]:
        """Apply ``items`` in their order, between two steps; the future has one result each.
        ``sources`` (one per item, optional) says where each came from (an order's
        "topic/partition/offset"), for the journal."""
        ...

    def lot_in_progress(self, lot_code: str) -> bool:
        ...

    def on_lot_finished(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(lot_code)`` whenever a lot completes or is scrapped."""
        ...


class RecordSource(Protocol):
    """The model's records, for a publisher to drain (:class:`simulator.runtime.outbox.Outbox`)."""

    async def get_batch(self, max_items: int = ...) -> list[Record]:
        """Wait for records and take up to ``max_items``; an empty list means closed and drained."""
        ...

    def take(self, max_items: int) -> list[Record]:
        """Up to ``max_items`` records that are waiting, without waiting for any."""
        ...

    @property
    def closed(self) -> bool: ...


class CommandSink(Protocol):
    """Where the entrances send runtime commands (:class:`simulator.runtime.commands.CommandProcessor`)."""

    async def execute(self, payload: bytes | bytearray | memoryview | str | Mapping[str, Any],
                      source: str = ...) -> dict[str, Any]:
        """Validate and apply ``payload``; returns the result, raises CommandRejected."""
        ...

    def rejected(self, source: str, name: str, exc: CommandRejected) -> None:
        """Count and log a command an entrance rejected before :meth:`execute`."""
        ...


class SnapshotStore(Protocol):
    """Where the snapshotter writes snapshots (:class:`simulator.adapters.snapshots.SnapshotWriter`)."""

    written: int  # snapshots written since the start
    last_bytes: int  # the newest one's size, compressed

    async def write(self, snapshot: Snapshot, data: bytes | None = ..., *, confirm: bool = ...) -> None:
        """Send ``snapshot`` (``data``: its compressed content, if already made); return when it is
        stored.  Raises SnapshotRefused."""
        ...


class HealthView(Protocol):
    """A program's health, as its health endpoint (:mod:`simulator.adapters.health_server`) answers
    it: the service's and the MQTT bridge's."""

    @property
    def state(self) -> ServiceState: ...

    @property
    def ready(self) -> bool: ...

    def health(self) -> dict[str, Any]: ...  # its "status" a HealthStatus

    def not_ready_because(self) -> list[str]: ...  # empty when ready


class ConsumerLagView(Protocol):
    def lag(self) -> int | None: ...  # orders on the topic not yet consumed (None: not known yet)


class InFlightView(Protocol):
    @property
    def in_flight(self) -> int: ...  # messages sent but not yet confirmed


class HttpServiceView(HealthView, Protocol):
    """What the HTTP server reads from the service (:class:`simulator.programs.service.Service`): its
    health, configuration, counters and live model, the live gauges of /metrics, and the commands."""

    @property
    def healthy(self) -> bool: ...

    @property
    def kafka_connected(self) -> bool: ...

    @property
    def config(self) -> Config: ...

    @property
    def environ(self) -> Mapping[str, str] | None: ...  # None: the process's environment

    @property
    def metrics(self) -> IoMetrics: ...

    def sims(self) -> list[Simulation]: ...  # the models of the plants run here (new ones after a recovery)

    @property
    def machine_plants(self) -> Mapping[str, str]: ...  # every machine of the config -> its plant

    def machines_here(self) -> Mapping[str, Machine]: ...  # the machines of the plants run here

    def owner_of(self, plant: str) -> str | None: ...  # the instance that runs ``plant``, if known

    def owner_url_of(self, plant: str) -> str | None: ...  # its HTTP base URL, if known

    def lot_counts(self) -> dict[str, int]: ...  # lots by state over the plants run here

    @property
    def instance_id(self) -> str: ...

    @property
    def scale_out(self) -> bool: ...  # the instances share the plants (kafka.scale_out)

    def instance_view(self) -> dict[str, Any]: ...  # who this instance is, the plants it owns, rebalances

    @property
    def lag_s(self) -> float: ...  # how far the paced drivers are behind the wall clock (the most)

    @property
    def outbox(self) -> Sized: ...

    @property
    def intake(self) -> ConsumerLagView | None: ...

    @property
    def publisher(self) -> InFlightView | None: ...

    @property
    def commands(self) -> CommandSink: ...  # the run's (rebuilt on recovery)

    async def export_snapshot(self, timeout_s: float = ..., plant: str | None = ...) -> bytes | None:
        """The live model's snapshot (GET /snapshot; ``plant``: that plant's run), or None when the
        run is not live (or not here)."""
        ...
