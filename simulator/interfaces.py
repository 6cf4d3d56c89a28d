"""The small interfaces between the adapters and the runtime (adapters → interfaces ← runtime).

Adapters hand the model its inputs through :class:`ModelInputs` and never reach into the driver
or the simulation themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from simulator.model.inputs import Input
from simulator.model.lot import Lot

Result = Lot | dict[str, Any] | Exception  # an input's result, or the exception that refused it


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
