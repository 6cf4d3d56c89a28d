"""The ``uns`` MQTT format: a unified namespace, one metric per message.

Topic (default template ``v1/{tenant}/{plant}/{line}/{machine}/{metric}``): ``tenant`` and
``plant`` from ``formats.uns``, ``line`` = the machine's line (``formats.uns.lines``, by default its
location), ``machine`` = the machine id without its location (``fresa_cnc-02``).  Placeholders:
{tenant} {plant} {line} {machine} {metric} {location} {machine_id} {machine_type}.

Payload: ``{ts, id, tenant, plant, line, machine, metric, value, unit, q}``, key = machine id.
Metrics of a sample or a cycle record (those the machine has):
``temp`` (°C, the machine's own temperature: the first one a bearing fault heats, else the type's
first temperature signal), ``vibration_rms`` (mm/s), ``energy_kw`` (kW, the active power),
``good_count`` and ``bad_count`` (pieces, "units", from the machine's counters: totals since the
start of the run) and ``state``.  An event about a machine (see ``common.state_after``) gives its
``state``.

``state`` (``formats.uns.state_as``): ``text`` (the default) — idle | running | blocked |
maintenance | off_shift, or ``faulted`` while a fault (machines.base.FAULT_ANOMALIES, e.g.
``bearing_fault``) is in force, unit ""; ``code`` — an integer, unit "enum": 0 running, 1 stopped
(idle, maintenance, off shift), 2 fault (blocked, or faulted).  Records tell of a fault, events do
not: an event's state is the machine's state.

``q`` is 100 for every value: each one is the simulated machine's own reading, counter or state,
never an estimate or a substitute.  A metric the machine's type does not have (an assembly line
has no temperature) is not published rather than published with a lower q.

``id`` is a UUID (uuid5) of the record's event id and the metric: the same for the same seed,
record and metric, unique across all messages of a run (event ids also carry the service
instance, so a restarted service does not repeat them).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from machines.base import FAULT_ANOMALIES, MachineState
from simulator.config.schema import Config
from simulator.formats import WireMessage
from simulator.formats.common import (
    CONTENT_TYPE,
    MACHINE_EVENTS,
    MachineIndex,
    MachineInfo,
    TopicTemplate,
    level,
    signal_roles,
    state_after,
)
from simulator.formats.timestamps import EventIds, Timestamps
from simulator.model.records import CycleTelemetry, LotEvent, MachineSample, Record

MQTT_TOPIC_TEMPLATE = "v1/{tenant}/{plant}/{line}/{machine}/{metric}"
PLACEHOLDERS = ("tenant", "plant", "line", "machine", "metric", "location", "machine_id", "machine_type")
METRICS = ("temp", "vibration_rms", "energy_kw", "good_count", "bad_count", "state")
UNITS = {"temp": "°C", "vibration_rms": "mm/s", "energy_kw": "kW", "good_count": "units", "bad_count": "units",
         "state": ""}
FAULTED = "faulted"  # the text state of a machine with a fault in force
RUN, STOP, FAULT = 0, 1, 2
STATE_CODES: dict[str, int] = {MachineState.RUNNING: RUN, MachineState.IDLE: STOP, MachineState.MAINTENANCE: STOP,
                               MachineState.OFF_SHIFT: STOP, MachineState.BLOCKED: FAULT, FAULTED: FAULT}
STATE_UNITS = {"text": "", "code": "enum"}
GOOD_QUALITY = 100
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:factorysim:uns")
HEADERS = (("content_type", CONTENT_TYPE),)


def machine_lines(config: Config, machines: MachineIndex | None = None) -> dict[str, str]:
    """The line of each machine that ``formats.uns.lines`` places (machine id -> line); a machine
    it does not name is on its location's line.  A machine is named by its id or, when that names
    one machine only, by its id without the location (``cnc-01``).  ValueError (one line) for a
    name that is no machine's, names several, or a machine placed on two lines."""
    wanted = config.formats.uns.lines
    if not wanted:
        return {}
    infos = (machines or MachineIndex(config)).all()
    by_name: dict[str, list[MachineInfo]] = {}
    for info in infos:
        by_name.setdefault(info.machine_id, []).append(info)
        if info.short != info.machine_id:
            by_name.setdefault(info.short, []).append(info)
    placed: dict[str, str] = {}
    for line, names in wanted.items():
        for name in names:
            found = by_name.get(name, [])
            if not found:
                known = ", ".join(sorted({i.short for i in infos}))
                raise ValueError(f"line {line!r}: no machine {name!r}; known: {known}")
            if len(found) > 1:
                ids = ", ".join(i.machine_id for i in found)
                raise ValueError(f"line {line!r}: {name!r} names {len(found)} machines ({ids}); give the machine id")
            machine_id = found[0].machine_id
            if placed.get(machine_id, line) != line:
                raise ValueError(f"machine {machine_id!r} is on two lines ({placed[machine_id]!r} and {line!r})")
            placed[machine_id] = line
    return placed


class _Machine:
    """What the messages of one machine share."""

    __slots__ = ("line", "name", "signals", "topics")

    def __init__(self, line: str, name: str, signals: dict[str, str], topics: dict[str, str]) -> None:
        self.line = line
        self.name = name
        self.signals = signals  # metric -> signal name, for the metrics read from signals
        self.topics = topics  # metric -> topic


class UnsFormat:
    name = "uns"

    def __init__(self, config: Config, seed: int, run_id: str = "", *, topic_template: str | None = None) -> None:
        self.template = TopicTemplate(self.name, topic_template or MQTT_TOPIC_TEMPLATE, PLACEHOLDERS)
        options = config.formats.uns
        self.tenant = options.tenant
        self.plant = options.plant
        self.codes = options.state_as == "code"
        self.state_unit = STATE_UNITS[options.state_as]
        self.times = Timestamps(config.simulation.start,
                                {name: loc.timezone for name, loc in config.locations.items()})
        self.event_id = EventIds(seed, run_id)
        self.machines = MachineIndex(config)
        self.lines = machine_lines(config, self.machines)
        self._machines: dict[str, _Machine] = {}

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            if record.machine_id is None or record.event_type not in MACHINE_EVENTS:
                return []
            state = state_after(record, self.machines.info(record.machine_id, record.location))
            machine = self._machine(record.machine_id, record.location, None)
            return [self._message(record, record.machine_id, machine, "state", self._state(state))]
        return self._telemetry(record)

    def _telemetry(self, r: CycleTelemetry | MachineSample) -> list[WireMessage]:
        machine = self._machine(r.machine_id, r.location, r.machine_type)
        values: list[tuple[str, Any]] = [
            (metric, r.signals[signal]) for metric, signal in machine.signals.items() if signal in r.signals]
        if r.counters is not None:
            values += [("good_count", r.counters.good_pieces), ("bad_count", r.counters.bad_pieces)]
        values.append(("state", self._state(FAULTED if r.anomaly in FAULT_ANOMALIES else r.state)))
        return [self._message(r, r.machine_id, machine, metric, value) for metric, value in values]

    def _state(self, state: str | None) -> str | int | None:
        return STATE_CODES[state] if self.codes and state is not None else state

    def _message(self, r: Record, machine_id: str, machine: _Machine, metric: str, value: Any) -> WireMessage:
        body = {
            "ts": self.times.utc(r.sim_time),
            "id": str(uuid.uuid5(ID_NAMESPACE, f"{self.event_id(r.location, r.seq)}/{metric}")),
            "tenant": self.tenant,
            "plant": self.plant,
            "line": machine.line,
            "machine": machine.name,
            "metric": metric,
            "value": value,
            "unit": self.state_unit if metric == "state" else UNITS[metric],
            "q": GOOD_QUALITY,
        }
        return WireMessage(machine.topics[metric], machine_id.encode(), HEADERS, orjson.dumps(body))

    def _machine(self, machine_id: str, location: str, machine_type: str | None) -> _Machine:
        known = self._machines.get(machine_id)
        if known is None:
            info = self.machines.info(machine_id, location, machine_type)
            roles = signal_roles(info.model)
            temperature = info.model.bearing_temps[0] if info.model.bearing_temps else roles.temperature
            signals = {metric: signal for metric, signal in (
                ("temp", temperature), ("vibration_rms", roles.vibration), ("energy_kw", "power_kw"))
                if signal is not None}
            line = self.lines.get(machine_id, location)
            values = {"tenant": level(self.tenant), "plant": level(self.plant), "line": level(line),
                      "machine": level(info.short), "location": level(location),
                      "machine_id": level(machine_id), "machine_type": level(info.machine_type)}
            topics = {metric: self.template.render({**values, "metric": metric}) for metric in METRICS}
            known = _Machine(line, info.short, signals, topics)
            self._machines[machine_id] = known
        return known
