"""The plant's address space: a folder per location under ``Objects/Plant``, an object per machine
with its state, lot, counters, OEE and signals as variables, its alarms as events and the runtime
commands as methods.

Node ids are strings in the server's namespace, built from the machine id (``<machine>.State``,
``<machine>.Signals.spindle_temp_c``, ``<machine>.OEE.Availability`` …), so they are stable across
restarts and can be written into an asset definition.  Every signal of the machine's type is a
variable with an ``EngineeringUnits`` property (:mod:`simulator.adapters.opcua.units`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from asyncua import Node, Server, ua

import machines
from machines.base import MachineState, SignalContext
from simulator.adapters.opcua.units import CEFACT_NAMESPACE, PERCENT, SECONDS, Unit, unit_of
from simulator.config.machine_ids import MachineSlot

Method = Callable[..., Coroutine[Any, Any, Any]]

# what a machine object shows besides its signals: browse name, value type, unit
STATUS_VARIABLES: tuple[tuple[str, ua.VariantType, Unit | None], ...] = (
    ("State", ua.VariantType.String, None),
    ("CurrentLot", ua.VariantType.String, None),
    ("Stage", ua.VariantType.String, None),
    ("BlockReason", ua.VariantType.String, None),
    ("Anomaly", ua.VariantType.String, None),
    ("Alarm", ua.VariantType.String, None),
    ("SimulatedTime", ua.VariantType.Double, SECONDS),
)
COUNTER_VARIABLES: tuple[tuple[str, str, ua.VariantType, Unit | None], ...] = (
    ("Cycles", "cycles", ua.VariantType.Int64, None),
    ("GoodCycles", "good_cycles", ua.VariantType.Int64, None),
    ("GoodPieces", "good_pieces", ua.VariantType.Int64, None),
    ("BadPieces", "bad_pieces", ua.VariantType.Int64, None),
    ("RunningSeconds", "running_s", ua.VariantType.Double, SECONDS),
    ("BlockedSeconds", "blocked_s", ua.VariantType.Double, SECONDS),
    ("PlannedSeconds", "planned_s", ua.VariantType.Double, SECONDS),
)
OEE_VARIABLES: tuple[tuple[str, str], ...] = (
    ("Availability", "availability"), ("Performance", "performance"), ("Quality", "quality"), ("OEE", "oee"))
EVENT_FIELDS: tuple[tuple[str, ua.VariantType], ...] = (
    ("MachineId", ua.VariantType.String), ("AlarmKind", ua.VariantType.String),
    ("Reason", ua.VariantType.String), ("SimulatedTime", ua.VariantType.Double))


def _variant_type(value: object) -> ua.VariantType:
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int):
        return ua.VariantType.Int64
    if isinstance(value, str):
        return ua.VariantType.String
    return ua.VariantType.Double


def signal_types(machine_type: str) -> dict[str, ua.VariantType]:
    """The signals of a machine type and the OPC UA type of each, from one set of its values
    computed apart from the model (its own random stream: the run's are not touched)."""
    model = machines.get(machine_type)
    values = model.signals(SignalContext(state=MachineState.RUNNING, interval_s=1.0, hours_since_maintenance=1.0,
                                         pieces_since_maintenance=1, load=0.5, quantity=1, cycle_time_s=60.0,
                                         progress=0.5), random.Random(0))
    return {name: _variant_type(value) for name, value in values.items()}


def default_of(vtype: ua.VariantType) -> object:
    return {ua.VariantType.String: "", ua.VariantType.Boolean: False, ua.VariantType.Int64: 0}.get(vtype, 0.0)


@dataclass
class MachineNodes:
    """The node ids of one machine's variables (what the writer writes), and the object itself."""

    object: Node
    status: dict[str, ua.NodeId] = field(default_factory=dict)
    counters: dict[str, ua.NodeId] = field(default_factory=dict)
    oee: dict[str, ua.NodeId] = field(default_factory=dict)
    signals: dict[str, tuple[ua.NodeId, ua.VariantType]] = field(default_factory=dict)


async def _engineering_units(variable: Node, ns: int, unit: Unit) -> None:
    eu = ua.EUInformation(NamespaceUri=CEFACT_NAMESPACE, UnitId=unit.unit_id,
                          DisplayName=ua.LocalizedText(unit.symbol), Description=ua.LocalizedText(unit.description))
    await variable.add_property(ua.NodeId(f"{variable.nodeid.Identifier}.EngineeringUnits", ns),
                                ua.QualifiedName("EngineeringUnits", 0), eu,
                                datatype=ua.NodeId(ua.ObjectIds.EUInformation))


async def _variable(parent: Node, ns: int, node_id: str, name: str, vtype: ua.VariantType,
                    unit: Unit | None) -> ua.NodeId:
    variable = await parent.add_variable(ua.NodeId(node_id, ns), ua.QualifiedName(name, ns), default_of(vtype),
                                         varianttype=vtype)
    if unit is not None:
        await _engineering_units(variable, ns, unit)
    return variable.nodeid


class MethodArguments:
    """The methods' arguments (OPC UA ``Argument`` descriptions)."""

    @staticmethod
    def of(*named: tuple[str, ua.VariantType, str]) -> list[ua.Argument]:
        arguments = []
        for name, vtype, description in named:
            argument = ua.Argument()
            argument.Name = name
            argument.DataType = ua.NodeId(vtype.value)
            argument.ValueRank = -1
            argument.Description = ua.LocalizedText(description)
            arguments.append(argument)
        return arguments


RESULT = MethodArguments.of(("Result", ua.VariantType.String, "the applied command's result as JSON"))
METHODS: tuple[tuple[str, str, list[ua.Argument]], ...] = (
    ("Block", "block", MethodArguments.of(
        ("Reason", ua.VariantType.String, "why the machine stops (empty: a default reason)"),
        ("DurationSeconds", ua.VariantType.Double, "simulated seconds until it is repaired; 0: until Repair"))),
    ("Repair", "repair", []),
    ("InjectAnomaly", "anomaly", MethodArguments.of(
        ("Type", ua.VariantType.String, "the anomaly type (the machine type's own, bearing_fault, energy_spike)"),
        ("Severity", ua.VariantType.Double, "how strong (0: the default, 1)"),
        ("DurationSeconds", ua.VariantType.Double, "simulated seconds it lasts; 0: until ClearAnomaly"))),
    ("ClearAnomaly", "clear_anomaly", MethodArguments.of(
        ("Type", ua.VariantType.String, "clear only this type (empty: whatever is in force)"))),
)


async def build(server: Server, ns: int, slots: tuple[MachineSlot, ...], model_of: Callable[[str], str],
                method: Callable[[str, str], Method]) -> tuple[dict[str, MachineNodes], ua.NodeId]:
    """Create the plant's nodes; ``method(command, machine_id)`` is the callback of a machine's
    method.  Returns the machines' nodes and the alarm event type."""
    plant = await server.nodes.objects.add_folder(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
    event_type = await server.nodes.base_event_type.add_object_type(
        ua.NodeId("MachineAlarmEventType", ns), ua.QualifiedName("MachineAlarmEventType", ns))
    for name, vtype in EVENT_FIELDS:
        await event_type.add_property(ns, name, default_of(vtype), varianttype=vtype)
    locations: dict[str, Node] = {}
    types: dict[str, dict[str, ua.VariantType]] = {}
    nodes: dict[str, MachineNodes] = {}
    for slot in slots:
        if slot.location not in locations:
            locations[slot.location] = await plant.add_folder(ua.NodeId(slot.location, ns),
                                                              ua.QualifiedName(slot.location, ns))
        model = model_of(slot.machine_type)
        if model not in types:
            types[model] = signal_types(model)
        nodes[slot.id] = await _machine(locations[slot.location], ns, slot, types[model], method)
        await asyncio.sleep(0)  # a large plant takes a while: /health answers meanwhile
    return nodes, event_type.nodeid


async def _machine(parent: Node, ns: int, slot: MachineSlot, signals: dict[str, ua.VariantType],
                   method: Callable[[str, str], Method]) -> MachineNodes:
    mid = slot.id
    obj = await parent.add_object(ua.NodeId(mid, ns), ua.QualifiedName(mid, ns))
    await obj.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
    await obj.add_property(ua.NodeId(f"{mid}.MachineType", ns), ua.QualifiedName("MachineType", ns),
                           slot.machine_type, varianttype=ua.VariantType.String)
    await obj.add_property(ua.NodeId(f"{mid}.Location", ns), ua.QualifiedName("Location", ns), slot.location,
                           varianttype=ua.VariantType.String)
    nodes = MachineNodes(obj)
    for name, vtype, unit in STATUS_VARIABLES:
        nodes.status[name] = await _variable(obj, ns, f"{mid}.{name}", name, vtype, unit)
    counters = await obj.add_object(ua.NodeId(f"{mid}.Counters", ns), ua.QualifiedName("Counters", ns))
    for name, key, vtype, unit in COUNTER_VARIABLES:
        nodes.counters[key] = await _variable(counters, ns, f"{mid}.Counters.{name}", name, vtype, unit)
    oee = await obj.add_object(ua.NodeId(f"{mid}.OEE", ns), ua.QualifiedName("OEE", ns))
    for name, key in OEE_VARIABLES:
        nodes.oee[key] = await _variable(oee, ns, f"{mid}.OEE.{name}", name, ua.VariantType.Double, PERCENT)
    folder = await obj.add_object(ua.NodeId(f"{mid}.Signals", ns), ua.QualifiedName("Signals", ns))
    for name, vtype in signals.items():
        node_id = await _variable(folder, ns, f"{mid}.Signals.{name}", name, vtype,
                                  unit_of(name) if vtype in (ua.VariantType.Double, ua.VariantType.Int64) else None)
        nodes.signals[name] = (node_id, vtype)
    for name, command, arguments in METHODS:
        await obj.add_method(ua.NodeId(f"{mid}.{name}", ns), ua.QualifiedName(name, ns), method(command, mid),
                             arguments, RESULT)
    return nodes
