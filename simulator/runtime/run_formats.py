"""Each record encoded with the format of its own plant's run.

Plants of one service may be in different runs (instances that share the plants run one per
plant, each with its own id, start and seed): a record's event ids and calendar come from its
plant's run.  :class:`RunFormats` is the format the publishers hold; the runs come and go.
"""

from __future__ import annotations

from simulator.formats import Format, WireMessage
from simulator.model.records import Record


class RunFormats:
    """A :class:`~simulator.formats.Format` that hands each record to its plant's format."""

    def __init__(self, fallback: Format) -> None:
        self.name = fallback.name
        self.fallback = fallback  # for a record of a plant no run claims (none is expected)
        self.by_plant: dict[str, Format] = {}

    def use(self, plants: list[str], fmt: Format) -> None:
        """Records of ``plants`` are encoded with ``fmt`` from now on."""
        for plant in plants:
            self.by_plant[plant] = fmt

    def encode(self, record: Record) -> list[WireMessage]:
        return self.by_plant.get(record.location, self.fallback).encode(record)
