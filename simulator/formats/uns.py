"""The ``uns`` MQTT format: a unified namespace, one metric per message.

Topic (default template ``v1/{tenant}/{plant}/{line}/{machine}/{metric}``): ``tenant`` and
``plant`` from ``formats.uns``, ``line`` = the location, ``machine`` = the machine id without its
location (``fresa_cnc-02``).  Placeholders: {tenant} {plant} {line} {machine} {metric} {location}
{machine_id} {machine_type}.

Payload: ``{ts, id, tenant, plant, line, machine, metric, value, unit, q}``, key = machine id.
Metrics of a sample or a cycle record (those the machine has):
``temp`` (°C, the type's main temperature signal), ``vibration_rms`` (mm/s), ``energy_kw`` (kW,
the active power), ``good_count`` and ``bad_count`` (pieces, from the machine's counters),
``state`` (idle | running | blocked | maintenance | off_shift, unit "").  An event about a machine
(see ``registry.state_after``) gives its ``state``.

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

from simulator.config.schema import Config
from simulator.formats import WireMessage
from simulator.formats.common import (
    CONTENT_TYPE,
    MACHINE_EVENTS,
    MachineIndex,
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
UNITS = {"temp": "°C", "vibration_rms": "mm/s", "energy_kw": "kW", "good_count": "pcs", "bad_count": "pcs",
         "state": ""}
GOOD_QUALITY = 100
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:factorysim:uns")
HEADERS = (("content_type", CONTENT_TYPE),)


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
        self.tenant = config.formats.uns.tenant
        self.plant = config.formats.uns.plant
        self.times = Timestamps(config.simulation.start,
                                {name: loc.timezone for name, loc in config.locations.items()})
        self.event_id = EventIds(seed, run_id)
        self.machines = MachineIndex(config)
        self._machines: dict[str, _Machine] = {}

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            if record.machine_id is None or record.event_type not in MACHINE_EVENTS:
                return []
            state = state_after(record, self.machines.info(record.machine_id, record.location))
            machine = self._machine(record.machine_id, record.location, None)
            return [self._message(record, record.machine_id, machine, "state", state)]
        return self._telemetry(record)

    def _telemetry(self, r: CycleTelemetry | MachineSample) -> list[WireMessage]:
        machine = self._machine(r.machine_id, r.location, r.machine_type)
        values: list[tuple[str, Any]] = [
            (metric, r.signals[signal]) for metric, signal in machine.signals.items() if signal in r.signals]
        if r.counters is not None:
            values += [("good_count", r.counters.good_pieces), ("bad_count", r.counters.bad_pieces)]
        values.append(("state", r.state))
        return [self._message(r, r.machine_id, machine, metric, value) for metric, value in values]

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
            "unit": UNITS[metric],
            "q": GOOD_QUALITY,
        }
        return WireMessage(machine.topics[metric], machine_id.encode(), HEADERS, orjson.dumps(body))

    def _machine(self, machine_id: str, location: str, machine_type: str | None) -> _Machine:
        known = self._machines.get(machine_id)
        if known is None:
            info = self.machines.info(machine_id, location, machine_type)
            roles = signal_roles(info.model)
            signals = {metric: signal for metric, signal in (
                ("temp", roles.temperature), ("vibration_rms", roles.vibration), ("energy_kw", "power_kw"))
                if signal is not None}
            values = {"tenant": level(self.tenant), "plant": level(self.plant), "line": level(location),
                      "machine": level(info.short), "location": level(location),
                      "machine_id": level(machine_id), "machine_type": level(info.machine_type)}
            topics = {metric: self.template.render({**values, "metric": metric}) for metric in METRICS}
            known = _Machine(location, info.short, signals, topics)
            self._machines[machine_id] = known
        return known
