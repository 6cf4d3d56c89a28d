"""The ``enms`` MQTT format: per-machine energy, production, environmental and status messages,
with the field names and types of the EnMS factory simulator it stands in for.

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
``machine_id``: a UUID derived from the machine id (uuid5, stable across runs).  Counts are
integers, measurements floats, flags booleans; a measurement a machine type does not have is null.
- energy: exactly ``time, machine_id, power_kw, energy_kwh, voltage_v, current_a, power_factor,
  frequency_hz`` plus ``time_local``; energy_kwh is the energy over the span the record covers;
  frequency_hz is the nominal grid frequency of the location's country (60 Hz in the Americas
  and a few other countries, 50 Hz elsewhere);
- production: ``production_count, production_count_good, production_count_bad`` — the pieces
  this message reports as made: a cycle's lot (good unless its test sent it to rework or scrap),
  0 on a sample, so that summing the messages of a span gives the pieces made in it;
  ``throughput_units_per_hour`` (the machine's pieces per scheduled hour so far),
  ``operating_mode``, ``speed_percent``; then ``lot_code, quantity, cycle_time_s`` (null on
  samples), ``cycles, total_production_count, total_production_count_good,
  total_production_count_bad`` (running totals) and ``availability, performance, quality, oee``
  (ratios), all from the machine's counters;
- environmental: ``machine_temp_c`` (the type's main temperature), ``indoor_temp_c`` (the
  location's configured ambient), ``outdoor_temp_c`` (where the type measures it),
  ``indoor_humidity_percent``, ``pressure_bar``, ``flow_rate_m3h``, ``vibration_mm_s``, and the
  HVAC's ``supply_air_temp_c, return_air_temp_c, cop``;
- status: ``machine_name`` (the machine id), ``machine_type, state`` (idle | running | blocked |
  maintenance | off_shift), ``is_running``, ``operating_mode`` (running | idle | fault |
  maintenance | offline), ``current_power_kw``, ``speed_percent`` (how hard it is driven, 0..100:
  see ``MachineType.speed_percent``), the process state the type computes — ``cycle_phase``
  (hydraulic pump: build | hold | release | idle; injection moulding: heating | injection |
  cooling | ejection | idle), ``active_stages`` (HVAC compressor stages), ``load_state``
  (compressor: loaded | unloaded | off) — then ``lot_code, alarm`` (text or null),
  ``alarm_active``, ``anomaly``, ``source`` (``sample`` or the event type).  A status made from an
  event carries no measurement: its power, speed, process state and anomaly are null.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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
from simulator.model.production import PASS
from simulator.model.records import CycleTelemetry, LotEvent, MachineSample, Record

MQTT_TOPIC_TEMPLATE = "{prefix}/{site}/{machine}/{kind}"
PLACEHOLDERS = ("prefix", "site", "machine", "kind", "location", "machine_id", "machine_type")
MACHINE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:factorysim:machine")
ENERGY_SIGNALS = ("power_kw", "energy_kwh", "voltage_v", "current_a", "power_factor")
OPERATING_MODES = {"running": "running", "idle": "idle", "blocked": "fault", "maintenance": "maintenance",
                   "off_shift": "offline"}
# flow signals by unit -> the factor to m³/h
FLOW_UNITS = (("_m3_min", 60.0), ("_l_min", 0.06), ("_ml_min", 0.00006), ("_m3_h", 1.0))
# the HVAC's signals -> their environmental fields
AIR_FIELDS = {"supply_temp_c": "supply_air_temp_c", "return_temp_c": "return_air_temp_c", "cop": "cop"}
# process state signals -> their status fields
PROCESS_FIELDS = {"cycle_phase": "cycle_phase", "stages_active": "active_stages", "load_state": "load_state"}
# Countries whose grid runs at 60 Hz (the rest of the world: 50 Hz).
SIXTY_HZ = frozenset({"US", "CA", "MX", "BR", "CO", "VE", "EC", "PE", "CR", "PA", "GT", "HN", "SV", "NI", "DO",
                      "PR", "CU", "BS", "BZ", "TT", "SR", "KR", "TW", "PH", "SA", "LR"})
HEADERS = (("content_type", CONTENT_TYPE),)


@dataclass(frozen=True, slots=True)
class EnmsMachine:
    """What the format works out once per machine: its topics and which signals play which role."""

    info: MachineInfo
    uid: str
    topics: dict[str, str]
    roles: SignalRoles
    flow: tuple[str, float] | None  # the flow signal and its factor to m³/h (None: no flow)


def flow_signal(names: tuple[str, ...]) -> tuple[str, float] | None:
    """A machine type's flow signal and the factor that turns it into m³/h (None: it has none)."""
    for name in names:
        if "flow" in name:
            factor = next((f for unit, f in FLOW_UNITS if name.endswith(unit)), None)
            if factor is not None:
                return name, factor
    return None


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
        self._machines: dict[str, EnmsMachine] = {}

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            if record.machine_id is None or record.event_type not in MACHINE_EVENTS:
                return []
            return [self._status_event(record, record.machine_id)]
        machine = self._machine(record.machine_id, record.location, record.machine_type)
        head = self._head(record.sim_time, record.location, machine.uid)
        key = record.machine_id.encode()
        topics = machine.topics
        messages = []
        speed = machine.info.model.speed_percent(record.state, record.signals)
        if isinstance(record, MachineSample) or not self.sampled.get(record.machine_type, False):
            messages.append(self._message(topics["energy"], key, self._energy(record, head)))
        messages.append(self._message(topics["production"], key, self._production(record, head, speed)))
        if isinstance(record, MachineSample):
            messages.append(self._message(topics["environmental"], key, self._environmental(record, head, machine)))
            status = self._status(head, record.machine_id, record.machine_type, record.state, record.lot_code,
                                  record.alarms, "sample")
            status.update(self._measured(record, speed))
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
    def _production(r: CycleTelemetry | MachineSample, head: dict[str, Any], speed: float) -> dict[str, Any]:
        body = dict(head)
        if isinstance(r, CycleTelemetry):
            good = r.test_outcome is None or r.test_outcome == PASS
            made, made_good = r.quantity, r.quantity if good else 0
        else:
            made = made_good = 0
        body["production_count"] = made
        body["production_count_good"] = made_good
        body["production_count_bad"] = made - made_good
        c = r.counters
        total = 0 if c is None else c.good_pieces + c.bad_pieces
        body["throughput_units_per_hour"] = (
            None if c is None else round(total * 3600.0 / c.planned_s, 2) if c.planned_s > 0 else 0.0)
        body["operating_mode"] = OPERATING_MODES.get(r.state, r.state)
        body["speed_percent"] = speed
        body["lot_code"] = r.lot_code
        body["quantity"] = r.quantity if isinstance(r, CycleTelemetry) else None
        body["cycle_time_s"] = wire_seconds(r.cycle_time_s) if isinstance(r, CycleTelemetry) else None
        if c is None:
            body.update(dict.fromkeys(("cycles", "total_production_count", "total_production_count_good",
                                       "total_production_count_bad", "availability", "performance", "quality",
                                       "oee")))
            return body
        availability, performance, quality, oee = oee_figures(c)
        body.update({
            "cycles": c.cycles,
            "total_production_count": total,
            "total_production_count_good": c.good_pieces,
            "total_production_count_bad": c.bad_pieces,
            "availability": availability,
            "performance": performance,
            "quality": quality,
            "oee": oee,
        })
        return body

    def _environmental(self, r: MachineSample, head: dict[str, Any], machine: EnmsMachine) -> dict[str, Any]:
        signals = r.signals
        roles = machine.roles

        def signal(name: str | None) -> float | None:
            value = signals.get(name) if name else None
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        flow_rate = None
        if machine.flow is not None:
            flow = signal(machine.flow[0])
            flow_rate = None if flow is None else round(flow * machine.flow[1], 3)
        body = dict(head)
        body.update({
            "machine_temp_c": signal(roles.temperature),
            "indoor_temp_c": self.ambient[r.location],
            "outdoor_temp_c": signal(roles.outdoor),
            "indoor_humidity_percent": signal(roles.humidity),
            "pressure_bar": signal(roles.pressure),
            "flow_rate_m3h": flow_rate,
            "vibration_mm_s": signal(roles.vibration),
        })
        for name, field in AIR_FIELDS.items():
            body[field] = signal(name) if name in machine.info.model.signal_names else None
        return body

    @staticmethod
    def _status(head: dict[str, Any], machine_id: str, machine_type: str, state: str, lot_code: str | None,
                alarm: str, source: str) -> dict[str, Any]:
        body = dict(head)
        body.update({
            "machine_name": machine_id,
            "machine_type": machine_type,
            "state": state,
            "is_running": state == MachineState.RUNNING,
            "operating_mode": OPERATING_MODES.get(state, state),
            "current_power_kw": None,
            "speed_percent": None,
            **dict.fromkeys(PROCESS_FIELDS.values()),
            "lot_code": lot_code,
            "alarm": alarm or None,
            "alarm_active": bool(alarm),
            "anomaly": None,
            "source": source,
        })
        return body

    @staticmethod
    def _measured(r: MachineSample, speed: float) -> dict[str, Any]:
        """What a sample measured for the status: power, speed, the type's process state, the anomaly."""
        power = r.signals.get("power_kw")
        measured: dict[str, Any] = {"current_power_kw": float(power) if isinstance(power, int | float) else None,
                                    "speed_percent": speed, "anomaly": r.anomaly}
        for name, field in PROCESS_FIELDS.items():
            if name in r.signals:
                measured[field] = r.signals[name]
        return measured

    def _status_event(self, r: LotEvent, machine_id: str) -> WireMessage:
        info = self.machines.info(machine_id, r.location)
        state = state_after(r, info)
        assert state is not None
        machine = self._machine(machine_id, r.location, info.machine_type)
        alarm = info.model.alarm(SignalContext(state=state, interval_s=0.0, hours_since_maintenance=0.0,
                                               pieces_since_maintenance=0,
                                               block_reason=r.reason if state == MachineState.BLOCKED else None))
        lot_code = r.lot_code if state in (MachineState.RUNNING, MachineState.BLOCKED) else None
        body = self._status(self._head(r.sim_time, r.location, machine.uid), machine_id, info.machine_type, state,
                            lot_code, alarm, r.event_type)
        return self._message(machine.topics["status"], machine_id.encode(), body, retain=True)

    @staticmethod
    def _message(topic: str, key: bytes, body: dict[str, Any], *, retain: bool = False) -> WireMessage:
        return WireMessage(topic, key, HEADERS, orjson.dumps(body), retain)

    # -- per machine ----------------------------------------------------------------------------
    def _machine(self, machine_id: str, location: str, machine_type: str) -> EnmsMachine:
        known = self._machines.get(machine_id)
        if known is None:
            info = self.machines.info(machine_id, location, machine_type)
            topics = {kind: self._topic(info, kind) for kind in ("energy", "production", "environmental", "status")}
            known = EnmsMachine(info, machine_uuid(machine_id), topics, signal_roles(info.model),
                                flow_signal(info.model.signal_names))
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
