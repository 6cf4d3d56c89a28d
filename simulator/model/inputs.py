"""Model inputs as data: every change the outside world makes to a plant's model.

An input is a frozen value: admitting an order, blocking or repairing a machine, putting an
anomaly on or taking it off.  :func:`apply` is the one function that applies an input to a
:class:`~simulator.model.simulation.Simulation`, between two steps, at the current simulated
instant; nothing else outside the model changes its state.  Each input belongs to one plant (a
location: :func:`plant_of`), so a plant's history is the list of its inputs and the instants at
which they applied: with the config and the seed, that decides everything the plant does.

Pausing, resuming and the speed are not inputs: they change when the output appears, not what it
is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulator.errors import CommandRejected
from simulator.model import control
from simulator.model.lot import Lot
from simulator.model.order import Order
from simulator.model.records import quick_init

if TYPE_CHECKING:
    from simulator.model.simulation import Simulation


@quick_init  # one per order taken in (see quick_init)
@dataclass(frozen=True, slots=True)
class Admit:
    """An order enters as a lot."""

    order: Order


@dataclass(frozen=True, slots=True)
class Block:
    machine_id: str
    reason: str = "manual"
    duration_s: float | None = None  # None: until a repair


@dataclass(frozen=True, slots=True)
class Repair:
    machine_id: str


@dataclass(frozen=True, slots=True)
class SetAnomaly:
    machine_id: str
    anomaly: str
    severity: float = 1.0
    duration_s: float | None = None  # None: until cleared


@dataclass(frozen=True, slots=True)
class ClearAnomaly:
    machine_id: str
    anomaly: str | None = None  # None: whatever anomaly the machine shows


@dataclass(frozen=True, slots=True)
class PlantAnomaly:
    """The plant-wide switch of one plant: ``anomaly`` on or off for every machine of ``plant``."""

    plant: str
    anomaly: str
    on: bool = True
    severity: float = 1.0
    duration_s: float | None = None


Input = Admit | Block | Repair | SetAnomaly | ClearAnomaly | PlantAnomaly
MachineInput = Block | Repair | SetAnomaly | ClearAnomaly


def plant_of(item: Input, machine_plants: Mapping[str, str]) -> str:
    """The plant (location) ``item`` belongs to; ``machine_plants`` maps machine ids to locations.
    An unknown machine is a CommandRejected (``unknown_machine``)."""
    if isinstance(item, Admit):
        return item.order.location
    if isinstance(item, PlantAnomaly):
        return item.plant
    plant = machine_plants.get(item.machine_id)
    if plant is None:
        raise CommandRejected("unknown_machine", f"no machine {item.machine_id!r}")
    return plant


def apply(sim: Simulation, item: Input) -> Lot | dict[str, Any]:
    """Apply ``item`` now: the admitted lot for :class:`Admit`, a small JSON-able view of the
    result for the others.  Raises OrderRejected / CommandRejected when it cannot apply; then
    nothing changed."""
    if isinstance(item, Admit):
        return sim.admit(item.order)
    if isinstance(item, Block):
        return control.block_machine(sim, item.machine_id, item.reason, item.duration_s)
    if isinstance(item, Repair):
        return control.repair_machine(sim, item.machine_id)
    if isinstance(item, SetAnomaly):
        return control.set_anomaly(sim, item.machine_id, item.anomaly, item.severity, item.duration_s)
    if isinstance(item, ClearAnomaly):
        return control.clear_anomaly(sim, item.machine_id, item.anomaly)
    return control.plant_anomaly(sim, item.anomaly, item.on, plant=item.plant, severity=item.severity,
                                 duration_s=item.duration_s)


def apply_all(sim: Simulation, items: list[Input]) -> list[Lot | dict[str, Any] | Exception]:
    """Apply ``items`` in their order; each gets its result or the exception that refused it (the
    others still apply)."""
    results: list[Lot | dict[str, Any] | Exception] = []
    for item in items:
        try:
            results.append(apply(sim, item))
        except Exception as exc:  # noqa: BLE001 - reported per input, the others still apply
            results.append(exc)
    return results
