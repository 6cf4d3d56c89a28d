"""The ``sparkplug`` MQTT format: Sparkplug B (Eclipse Sparkplug 3.0) as Ignition, HiveMQ and
most IIoT stacks read it.

An MQTT target in this format is one Sparkplug **edge node** (``formats.sparkplug.edge_node_id``,
in group ``group_id``) and every machine of the config is one of its **devices** (device id = the
machine id).  Topics ``spBv1.0/{group}/{NBIRTH|NDEATH|DBIRTH|DDATA|NCMD|DCMD}/{edge node}[/{device}]``.

This module knows the metrics: each machine's metric table (:class:`Device`: name, datatype and
alias of every metric), and what a record says about them.  :meth:`SparkplugFormat.encode` turns
a record into one :class:`DeviceData` message: the device's DDATA topic, and each metric the record
gives with its value and its encoded protobuf field.  The edge node
(:mod:`simulator.adapters.sparkplug_node`) publishes them: it keeps each metric's last published
value, sends only the metrics that changed (report by exception), numbers the messages (``seq``)
and makes the births and deaths.  So births always carry what the host has been sent, however
far the queue runs behind the model.

Metrics of a device (``naming: folders``; ``flat`` in brackets):

- ``State`` [``state``] String: idle | running | blocked | maintenance | off_shift;
  ``Anomaly`` [``anomaly``] String ("" none); ``Alarm`` [``alarm``] String ("" none);
- ``Lot/Current`` [``lot_code``] String: the lot on the machine ("" none); ``Lot/Last Event``
  [``last_event``] String: the last lot event about the machine (``stage.started`` …);
  ``Cycle/Last Time s`` [``cycle_time_s``] Double: the last completed cycle;
- ``Counters/Good Pieces``, ``Counters/Bad Pieces``, ``Counters/Cycles`` [``good_pieces``,
  ``bad_pieces``, ``cycles``] Int64; ``OEE/Availability``, ``OEE/Performance``, ``OEE/Quality``,
  ``OEE/OEE`` [``availability`` …] Double (ratios 0..1);
- ``Signals/<signal>`` [``<signal>``]: every signal of the machine type (Double; counts Int64,
  text String), e.g. ``Signals/spindle_temp_c``, ``Signals/power_kw``;
- ``Info/Machine Type``, ``Info/Location`` [``machine_type``, ``location``] String (births only);
- ``Commands/Block``, ``Commands/Repair``, ``Commands/Clear Anomaly`` [``cmd_block`` …] Boolean
  and ``Commands/Anomaly`` [``cmd_anomaly``] String: written by a host with DCMD.

Aliases are fixed by the config: the node's metrics 1.., then device ``k`` (in config order)
``1000 × (k + 1) + i`` for its ``i``-th metric; a machine the config does not name (a bridge
reading another plant's run) gets a base from a hash of its id.  Every timestamp is the record's
(simulated) instant in milliseconds since the Unix epoch: the same seed gives the same bytes.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machines.base import COMMON_SIGNALS, MachineState, MachineType, SignalContext
from simulator.config.schema import Config
from simulator.formats import WireMessage
from simulator.formats import sparkplug_wire as wire
from simulator.formats.common import MACHINE_EVENTS, MachineIndex, level, oee_figures, state_after, wire_seconds
from simulator.formats.timestamps import epoch_ms
from simulator.model.records import CycleTelemetry, LotEvent, Record, quick_init

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"
DEFAULT_EDGE_NODE = "factorysim"
ALIAS_STRIDE = 1000  # aliases per device
UNKNOWN_BASE = 1 << 40  # devices the config does not name: a hash of the id above this
NODE_METRICS = ((BD_SEQ, 1, wire.INT64), (REBIRTH, 2, wire.BOOLEAN))

# metric key -> (folders name, flat name, datatype); signals are added per machine type
_FIXED: dict[str, tuple[str, str, int]] = {
    "state": ("State", "state", wire.STRING),
    "anomaly": ("Anomaly", "anomaly", wire.STRING),
    "alarm": ("Alarm", "alarm", wire.STRING),
    "lot": ("Lot/Current", "lot_code", wire.STRING),
    "last_event": ("Lot/Last Event", "last_event", wire.STRING),
    "cycle_time": ("Cycle/Last Time s", "cycle_time_s", wire.DOUBLE),
    "good": ("Counters/Good Pieces", "good_pieces", wire.INT64),
    "bad": ("Counters/Bad Pieces", "bad_pieces", wire.INT64),
    "cycles": ("Counters/Cycles", "cycles", wire.INT64),
    "availability": ("OEE/Availability", "availability", wire.DOUBLE),
    "performance": ("OEE/Performance", "performance", wire.DOUBLE),
    "quality": ("OEE/Quality", "quality", wire.DOUBLE),
    "oee": ("OEE/OEE", "oee", wire.DOUBLE),
}
_INFO: dict[str, tuple[str, str, int]] = {
    "machine_type": ("Info/Machine Type", "machine_type", wire.STRING),
    "location": ("Info/Location", "location", wire.STRING),
}
# the metrics a host writes (DCMD): key -> (folders name, flat name, datatype, value in births)
COMMANDS: dict[str, tuple[str, str, int, Any]] = {
    "block": ("Commands/Block", "cmd_block", wire.BOOLEAN, False),
    "repair": ("Commands/Repair", "cmd_repair", wire.BOOLEAN, False),
    "anomaly": ("Commands/Anomaly", "cmd_anomaly", wire.STRING, ""),
    "clear_anomaly": ("Commands/Clear Anomaly", "cmd_clear_anomaly", wire.BOOLEAN, False),
}
_PY_TYPES = {bool: wire.BOOLEAN, int: wire.INT64, float: wire.DOUBLE, str: wire.STRING}


def topic(group: str, kind: str, edge_node: str, device: str | None = None) -> str:
    return f"{NAMESPACE}/{group}/{kind}/{edge_node}" + (f"/{device}" if device is not None else "")


def edge_node_id(config: Config) -> str:
    """``formats.sparkplug.edge_node_id``, or the location's name when the config has one, else ``factorysim``."""
    configured = config.formats.sparkplug.edge_node_id
    if configured is not None:
        return configured
    return level(next(iter(config.locations))) if len(config.locations) == 1 else DEFAULT_EDGE_NODE


def signal_datatypes(model: MachineType) -> dict[str, int]:
    """The Sparkplug datatype of each signal of ``model``, in the type's order (its own signals,
    then the energy ones): the types of the values it gives in every state (a signal that is ever
    a float is a Double)."""
    seen: dict[str, set[int]] = {name: set() for name in (*model.signal_names, *COMMON_SIGNALS)}
    for state in MachineState:
        ctx = SignalContext(state=state, interval_s=60.0, hours_since_maintenance=10.0, pieces_since_maintenance=5,
                            load=0.5, quantity=2, cycle_time_s=60.0, test_outcome="pass", progress=0.5)
        for name, value in model.signals(ctx, random.Random(0)).items():
            seen.setdefault(name, set())
            if value is not None:
                seen[name].add(_PY_TYPES.get(type(value), wire.STRING))
    types: dict[str, int] = {}
    for name, found in seen.items():
        for datatype in (wire.STRING, wire.DOUBLE, wire.INT64, wire.BOOLEAN):
            if datatype in found:
                types[name] = datatype
                break
        else:
            types[name] = wire.DOUBLE
    return types


@dataclass(frozen=True, slots=True)
class MetricDef:
    key: str  # "state", "signal:spindle_temp_c", "cmd:block", …
    name: str
    alias: int
    datatype: int
    alias_field: bytes  # encoded once: every DATA message repeats it


class Device:
    """One machine as a Sparkplug device: its metrics (names, aliases, datatypes) and static values."""

    __slots__ = ("by_alias", "by_key", "by_name", "device_id", "fixed", "location", "machine_id", "machine_type",
                 "metrics", "signals", "static", "topic_data")

    def __init__(self, machine_id: str, location: str, machine_type: str, model: MachineType, base: int,
                 flat: bool, data_topic: Callable[[str], str]) -> None:
        self.machine_id = machine_id
        self.device_id = level(machine_id)
        self.location = location
        self.machine_type = machine_type
        defs: list[tuple[str, str, int]] = [(key, flat_name if flat else name, datatype)
                                            for key, (name, flat_name, datatype) in _FIXED.items()]
        defs += [(f"signal:{name}", name if flat else f"Signals/{name}", datatype)
                 for name, datatype in signal_datatypes(model).items()]
        defs += [(f"info:{key}", flat_name if flat else name, datatype)
                 for key, (name, flat_name, datatype) in _INFO.items()]
        defs += [(f"cmd:{key}", flat_name if flat else name, datatype)
                 for key, (name, flat_name, datatype, _) in COMMANDS.items()]
        self.metrics = tuple(MetricDef(key, name, base + i, datatype, wire.alias_field(base + i))
                             for i, (key, name, datatype) in enumerate(defs))
        self.by_key = {m.key: m for m in self.metrics}
        self.by_name = {m.name: m for m in self.metrics}
        self.by_alias = {m.alias: m for m in self.metrics}
        self.fixed = {key: self.by_key[key] for key in _FIXED}
        self.signals = {m.key[7:]: m for m in self.metrics if m.key.startswith("signal:")}
        self.static: dict[int, Any] = {self.by_key["info:machine_type"].alias: machine_type,
                                       self.by_key["info:location"].alias: location}
        self.static.update({self.by_key[f"cmd:{key}"].alias: spec[3] for key, spec in COMMANDS.items()})
        self.topic_data = data_topic(self.device_id)


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceData(WireMessage):
    """A DDATA message before the edge node publishes it: ``values`` holds, per metric the record
    gives, (alias, value, encoded metric field); ``value`` is the payload with all of them and no
    ``seq`` (the node sends the changed ones only, and numbers the message)."""

    device: Device
    timestamp: int  # ms since the Unix epoch
    values: tuple[tuple[int, Any, bytes], ...]


class DeviceTable:
    """The devices of an edge node: every machine of the config, in its order, and any other the
    records name (a bridge reading another plant's run)."""

    def __init__(self, config: Config) -> None:
        options = config.formats.sparkplug
        self.group = options.group_id
        self.edge_node = edge_node_id(config)
        self.flat = options.naming == "flat"
        self.machines = MachineIndex(config)
        self.devices: dict[str, Device] = {}
        for k, info in enumerate(self.machines.all()):
            self._add(info.machine_id, info.location, info.machine_type, info.model, ALIAS_STRIDE * (k + 1))
        self.by_device_id = {d.device_id: d for d in self.devices.values()}

    def device(self, machine_id: str, location: str, machine_type: str | None = None) -> Device:
        known = self.devices.get(machine_id)
        if known is not None:
            return known
        info = self.machines.info(machine_id, location, machine_type)
        base = UNKNOWN_BASE + (zlib.crc32(machine_id.encode()) << 10)
        device = self._add(machine_id, location, info.machine_type, info.model, base)
        self.by_device_id[device.device_id] = device
        return device

    def _add(self, machine_id: str, location: str, machine_type: str, model: MachineType, base: int) -> Device:
        device = Device(machine_id, location, machine_type, model, base, self.flat,
                        lambda device_id: topic(self.group, "DDATA", self.edge_node, device_id))
        self.devices[machine_id] = device
        return device


class SparkplugFormat:
    """Records -> :class:`DeviceData` (see the module docstring); deterministic per config and seed."""

    name = "sparkplug"

    def __init__(self, config: Config, seed: int, run_id: str = "", *, topic_template: str | None = None) -> None:
        if topic_template is not None:
            raise ValueError("format 'sparkplug' takes no topic template: Sparkplug fixes its topics "
                             "(set formats.sparkplug.group_id and edge_node_id)")
        self.table = DeviceTable(config)
        self.epoch_ms = epoch_ms(config.simulation.start)
        self.machines = self.table.machines

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            return self._event(record)
        device = self.table.device(record.machine_id, record.location, record.machine_type)
        fixed = device.fixed
        values: list[tuple[MetricDef, Any]] = [
            (fixed["state"], record.state), (fixed["anomaly"], record.anomaly or ""), (fixed["alarm"], record.alarms),
            (fixed["lot"], record.lot_code or "")]
        if isinstance(record, CycleTelemetry):
            values.append((fixed["cycle_time"], wire_seconds(record.cycle_time_s)))
        counters = record.counters
        if counters is not None:
            a, p, q, oee = oee_figures(counters)
            values += [(fixed["good"], counters.good_pieces), (fixed["bad"], counters.bad_pieces),
                       (fixed["cycles"], counters.cycles), (fixed["availability"], a), (fixed["performance"], p),
                       (fixed["quality"], q), (fixed["oee"], oee)]
        signals = device.signals
        # a signal the machine type's probe did not show has no birth: it is left out
        values += [(signals[name], value) for name, value in record.signals.items() if name in signals]
        return [self._data(device, self.epoch_ms(record.sim_time), values)]

    def _event(self, event: LotEvent) -> list[WireMessage]:
        if event.machine_id is None:
            return []  # orders and lots: Kafka and the other formats carry them
        device = self.table.device(event.machine_id, event.location)
        fixed = device.fixed
        values: list[tuple[MetricDef, Any]] = [(fixed["last_event"], event.event_type)]
        if event.event_type in MACHINE_EVENTS:
            state = state_after(event, self.machines.info(event.machine_id, event.location))
            if state is not None:
                values.append((fixed["state"], str(state)))
        if event.event_type == "stage.started":
            values.append((fixed["lot"], event.lot_code or ""))
        elif event.event_type == "stage.completed":
            values.append((fixed["lot"], ""))
        return [self._data(device, self.epoch_ms(event.sim_time), values)]

    @staticmethod
    def _data(device: Device, ms: int, values: list[tuple[MetricDef, Any]]) -> DeviceData:
        stamp = wire.timestamp_field(ms)
        data_metric, double = wire.data_metric, wire.DOUBLE
        encoded: list[tuple[int, Any, bytes]] = []
        for m, value in values:
            if m.datatype == double and type(value) is int:
                value = float(value)
            encoded.append((m.alias, value, data_metric(m.alias_field, stamp, m.datatype, value)))
        body = wire.payload(ms, [e[2] for e in encoded])
        return DeviceData(device.topic_data, b"", (), body, device=device, timestamp=ms, values=tuple(encoded))
