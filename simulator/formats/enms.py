"""The ``enms`` MQTT format: per-machine energy, production, environmental and status messages.

Topics (default template ``{prefix}/{site}/{machine}/{kind}``): ``prefix`` =
``formats.enms.topic_prefix``; ``site`` = ``formats.enms.site`` or the location name in lower
case; ``machine`` = the machine id without its location (``compressor-01``) — or the whole id when
one configured site covers several locations, so that topics stay unique; ``kind`` = energy |
production | environmental | status.  Placeholders: {prefix} {site} {machine} {kind} {location}
{machine_id} {machine_type}.

What produces what (key = machine id):
- a sample: energy, production, environmental and status;
- a cycle record: production, plus energy when the machine's type is not sampled (a sampled
  machine's energy comes with its samples, so that energy_kwh is not counted twice);
- an event about a machine (stage.started, stage.completed, machine.blocked, machine.repaired,
  maintenance.started, maintenance.completed): status, with the state the event leaves the
  machine in (see ``registry.state_after``).
Status messages are retained (the topic's last message is the machine's current status).

Every message has ``time`` (UTC, ``Z``), ``time_local`` (the location's offset) and
``machine_id``: a UUID derived from the machine id (uuid5, stable across runs).
- energy: exactly ``time, machine_id, power_kw, energy_kwh, voltage_v, current_a, power_factor,
  frequency_hz`` plus ``time_local``; energy_kwh is the energy over the span the record covers;
  frequency_hz is the nominal grid frequency of the location's country (60 Hz in the Americas
  and a few other countries, 50 Hz elsewhere);
- production: ``lot_code, quantity, cycle_time_s`` (null on samples), ``cycles,
  production_count, good_count, reject_count`` (pieces), ``throughput_pcs_h`` (pieces per
  planned hour) and ``availability, performance, quality, oee`` (ratios), all from the counters;
- environmental: ``temperature_c`` (the type's main temperature), ``pressure_bar``,
  ``humidity_pct``, ``vibration_mm_s`` (null where the type has no such signal),
  ``ambient_temp_c`` (the location's configured ambient), ``outdoor_temp_c`` (where the type
  measures it, else null);
- status: ``machine_name`` (the machine id) ``, machine_type, state`` (idle | running | blocked | maintenance |
  off_shift), ``running``, ``operating_mode`` (production | standby | fault | maintenance | off),
  ``lot_code, alarm`` (text or null), ``alarm_active``, ``anomaly`` (null on event-driven status:
  lot events do not carry it), ``source`` (``sample`` or the event type).
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

import orjson
import pytz

from machines.base import MachineState, SignalContext
from simulator.config.schema import Config
from simulator.formats import WireMessage
from simulator.formats.common import (
    CONTENT_TYPE,
    MACHINE_EVENTS,
    MachineIndex,
    MachineInfo,
    SignalRoles,
    TopicTemplate,
    level,
    oee_figures,
    signal_roles,
    state_after,
    topic_prefix,
    wire_seconds,
)
from simulator.formats.timestamps import Timestamps
from simulator.model.records import CycleTelemetry, LotEvent, MachineSample, Record

MQTT_TOPIC_TEMPLATE = "{prefix}/{site}/{machine}/{kind}"
PLACEHOLDERS = ("prefix", "site", "machine", "kind", "location", "machine_id", "machine_type")
MACHINE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:factorysim:machine")
ENERGY_SIGNALS = ("power_kw", "energy_kwh", "voltage_v", "current_a", "power_factor")
OPERATING_MODES = {"running": "production", "idle": "standby", "blocked": "fault", "maintenance": "maintenance",
                   "off_shift": "off"}
# Countries whose grid runs at 60 Hz (the rest of the world: 50 Hz).
SIXTY_HZ = frozenset({"US", "CA", "MX", "BR", "CO", "VE", "EC", "PE", "CR", "PA", "GT", "HN", "SV", "NI", "DO",
                      "PR", "CU", "BS", "BZ", "TT", "SR", "KR", "TW", "PH", "SA", "LR"})
HEADERS = (("content_type", CONTENT_TYPE),)


def machine_uuid(machine_id: str) -> str:
    """The stable UUID of a machine (uuid5 of its id)."""
    return str(uuid.uuid5(MACHINE_NAMESPACE, machine_id))


@cache
def grid_frequency_hz(timezone: str) -> float:
    """The nominal grid frequency where ``timezone`` is (by its country)."""
    country = next((cc for cc, zones in pytz.country_timezones.items() if timezone in zones), None)
    return 60.0 if country in SIXTY_HZ else 50.0


class EnmsFormat:
    name = "enms"

    def __init__(self, config: Config, seed: int, run_id: str = "", *, topic_template: str | None = None) -> None:
        options = config.formats.enms
        self.template = TopicTemplate(self.name, topic_template or MQTT_TOPIC_TEMPLATE, PLACEHOLDERS)
        self.prefix = topic_prefix(self.name, options.topic_prefix)
        self.site = options.site
        self.full_names = options.site is not None and len(config.locations) > 1
        self.times = Timestamps(config.simulation.start,
                                {name: loc.timezone for name, loc in config.locations.items()})
        self.machines = MachineIndex(config)
        self.ambient = {name: loc.ambient_c for name, loc in config.locations.items()}
        self.frequency = {name: grid_frequency_hz(loc.timezone) for name, loc in config.locations.items()}
        self.sampled = {mtype: config.sample_interval_of(mtype) > 0
                        for loc in config.locations.values() for mtype in loc.machines}
        self._machines: dict[str, tuple[str, dict[str, str], SignalRoles]] = {}

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            if record.machine_id is None or record.event_type not in MACHINE_EVENTS:
                return []
            return [self._status_event(record, record.machine_id)]
        uid, topics, roles = self._machine(record.machine_id, record.location, record.machine_type)
        head = self._head(record.sim_time, record.location, uid)
        key = record.machine_id.encode()
        messages = []
        if isinstance(record, MachineSample) or not self.sampled.get(record.machine_type, False):
            messages.append(self._message(topics["energy"], key, self._energy(record, head)))
        messages.append(self._message(topics["production"], key, self._production(record, head)))
        if isinstance(record, MachineSample):
            messages.append(self._message(topics["environmental"], key, self._environmental(record, head, roles)))
            status = self._status(head, record.machine_id, record.machine_type, record.state, record.lot_code,
                                  record.alarms, record.anomaly, "sample")
            messages.append(self._message(topics["status"], key, status, retain=True))
        return messages

    # -- messages -------------------------------------------------------------------------------
    def _head(self, sim_time: float, location: str, uid: str) -> dict[str, Any]:
        return {"time": self.times.utc(sim_time), "time_local": self.times.local(sim_time, location),
                "machine_id": uid}

    def _energy(self, r: CycleTelemetry | MachineSample, head: dict[str, Any]) -> dict[str, Any]:
        body = {"time": head["time"], "machine_id": head["machine_id"]}
        for name in ENERGY_SIGNALS:
            body[name] = r.signals.get(name)
        body["frequency_hz"] = self.frequency[r.location]
        body["time_local"] = head["time_local"]
        return body

    @staticmethod
    def _production(r: CycleTelemetry | MachineSample, head: dict[str, Any]) -> dict[str, Any]:
        body = dict(head)
        body["lot_code"] = r.lot_code
        body["quantity"] = r.quantity if isinstance(r, CycleTelemetry) else None
        body["cycle_time_s"] = wire_seconds(r.cycle_time_s) if isinstance(r, CycleTelemetry) else None
        c = r.counters
        if c is None:
            body.update(dict.fromkeys(("cycles", "production_count", "good_count", "reject_count", "throughput_pcs_h",
                                       "availability", "performance", "quality", "oee")))
            return body
        pieces = c.good_pieces + c.bad_pieces
        availability, performance, quality, oee = oee_figures(c)
        body.update({
            "cycles": c.cycles,
            "production_count": pieces,
            "good_count": c.good_pieces,
            "reject_count": c.bad_pieces,
            "throughput_pcs_h": round(pieces * 3600.0 / c.planned_s, 2) if c.planned_s > 0 else 0.0,
            "availability": availability,
            "performance": performance,
            "quality": quality,
            "oee": oee,
        })
        return body

    def _environmental(self, r: MachineSample, head: dict[str, Any], roles: SignalRoles) -> dict[str, Any]:
        signals = r.signals
        body = dict(head)
        body.update({
            "temperature_c": signals.get(roles.temperature) if roles.temperature else None,
            "pressure_bar": signals.get(roles.pressure) if roles.pressure else None,
            "humidity_pct": signals.get(roles.humidity) if roles.humidity else None,
            "vibration_mm_s": signals.get(roles.vibration) if roles.vibration else None,
            "ambient_temp_c": self.ambient[r.location],
            "outdoor_temp_c": signals.get(roles.outdoor) if roles.outdoor else None,
        })
        return body

    def _status(self, head: dict[str, Any], machine_id: str, machine_type: str, state: str, lot_code: str | None,
                alarm: str, anomaly: str | None, source: str) -> dict[str, Any]:
        body = dict(head)
        body.update({
            "machine_name": machine_id,
            "machine_type": machine_type,
            "state": state,
            "running": state == MachineState.RUNNING,
            "operating_mode": OPERATING_MODES.get(state, state),
            "lot_code": lot_code,
            "alarm": alarm or None,
            "alarm_active": bool(alarm),
            "anomaly": anomaly,
            "source": source,
        })
        return body

    def _status_event(self, r: LotEvent, machine_id: str) -> WireMessage:
        info = self.machines.info(machine_id, r.location)
        state = state_after(r, info)
        assert state is not None
        uid, topics, _ = self._machine(machine_id, r.location, info.machine_type)
        alarm = info.model.alarm(SignalContext(state=state, interval_s=0.0, hours_since_maintenance=0.0,
                                               pieces_since_maintenance=0,
                                               block_reason=r.reason if state == MachineState.BLOCKED else None))
        lot_code = r.lot_code if state in (MachineState.RUNNING, MachineState.BLOCKED) else None
        body = self._status(self._head(r.sim_time, r.location, uid), machine_id, info.machine_type, state, lot_code,
                            alarm, None, r.event_type)
        return self._message(topics["status"], machine_id.encode(), body, retain=True)

    @staticmethod
    def _message(topic: str, key: bytes, body: dict[str, Any], *, retain: bool = False) -> WireMessage:
        return WireMessage(topic, key, HEADERS, orjson.dumps(body), retain)

    # -- per machine ----------------------------------------------------------------------------
    def _machine(self, machine_id: str, location: str, machine_type: str) -> tuple[str, dict[str, str], SignalRoles]:
        known = self._machines.get(machine_id)
        if known is None:
            info = self.machines.info(machine_id, location, machine_type)
            topics = {kind: self._topic(info, kind) for kind in ("energy", "production", "environmental", "status")}
            known = (machine_uuid(machine_id), topics, signal_roles(info.model))
            self._machines[machine_id] = known
        return known

    def _topic(self, info: MachineInfo, kind: str) -> str:
        return self.template.render({
            "prefix": self.prefix,
            "site": level(self.site or info.location.lower()),
            "machine": level(info.machine_id if self.full_names else info.short),
            "kind": kind,
            "location": level(info.location),
            "machine_id": level(info.machine_id),
            "machine_type": level(info.machine_type),
        })
