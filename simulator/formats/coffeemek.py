"""The default ``coffeemek`` wire format (Italian field names of the reference system).

- cycle telemetry -> ``<telemetry_prefix>.<stage>``, key = machine id;
- periodic machine samples -> ``<telemetry_prefix>.<stage>.samples`` (the stage the machine's
  type serves; its type name if it serves none), key = machine id;
- lot events -> ``<events topic>``, key = lot code (machine id for events without a lot).

Headers on every message: ``event_id``, ``event_type``, ``schema_version``, ``content_type``.

Every message carries what a consumer needs to rebuild its record (``coffeemek_decode``): the
sim time (``sim_time_s``, to the millisecond its timestamps show) and, on telemetry, the
durations in seconds to the millisecond, the machine's counters (``contatori``, exact), its OEE
(``oee``, ratios to 4 decimals) and the injected anomaly (``anomalia``).

On MQTT (``topic_template`` given) the topic comes from the template; ``{topic}`` is the Kafka
topic with ``/`` for ``.`` and ``{location}`` the record's location.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

import machines
from simulator.config.schema import Config
from simulator.formats import WireMessage
from simulator.formats.common import CONTENT_TYPE, TopicTemplate, level, oee_figures, wire_seconds
from simulator.formats.timestamps import EventIds, Timestamps
from simulator.model.records import CycleTelemetry, LotEvent, MachineCounters, MachineSample, Record

MQTT_TOPIC_TEMPLATE = "{topic}"
PLACEHOLDERS = ("topic", "location")
SCHEMA_VERSION = b"1"

MACHINE_STATES = {
    "idle": "inattiva",
    "running": "in_lavorazione",
    "blocked": "bloccata",
    "maintenance": "in_manutenzione",
    "off_shift": "fuori_turno",
}
MACHINE_LABELS = {
    "milling": "Fresa CNC",
    "lathe": "Tornio automatico",
    "assembly": "Linea di assemblaggio",
    "test_rig": "Linea di test",
}
TEST_OUTCOMES = {"pass": "superato", "rework": "rilavorazione", "scrap": "scarto"}
NO_ALARM = "Nessuno"

# Signal name (machines/) -> field name.  Signals without an entry keep their own name.
SIGNAL_FIELDS = {
    "cut_depth_mm": "profondita_taglio",
    "vibration_mm_s": "vibrazione",
    "spindle_speed_rpm": "velocita_mandrino",
    "spindle_temp_c": "temperatura_mandrino",
    "tool_wear_pct": "usura_utensile_pct",
    "rotation_speed_rpm": "velocita_rotazione",
    "feed_rate_mm_rev": "avanzamento_mm_giro",
    "active_operators": "operatori_attivi",
    "line_speed_units_h": "velocita_linea_pz_h",
    "torque_nm": "coppia_nm",
    "power_kw": "potenza_kw",
    "energy_kwh": "energia_kwh",
    "voltage_v": "tensione_v",
    "current_a": "corrente_a",
    "power_factor": "fattore_potenza",
}
# On a test rig the measurements go into the nested ``risultati_test`` object.
TEST_RESULT_FIELDS = {
    "test_pressure_bar": "pressione",
    "test_temp_c": "temperatura",
    "flow_rate_l_min": "portata",
    "noise_db": "rumore",
    "vibration_mm_s": "vibrazione",
}
_MS = dt.timedelta(milliseconds=1)
# MachineCounters attribute -> field of the ``contatori`` object.
COUNTER_FIELDS = {
    "cycles": "cicli",
    "good_cycles": "cicli_buoni",
    "good_pieces": "pezzi_buoni",
    "bad_pieces": "pezzi_scartati",
    "running_s": "tempo_marcia_s",
    "blocked_s": "tempo_blocco_s",
    "planned_s": "tempo_pianificato_s",
    "ideal_s": "tempo_ideale_s",
}
OEE_FIELDS = ("disponibilita", "prestazioni", "qualita", "oee")


class CoffeeMekFormat:
    name = "coffeemek"

    def __init__(self, config: Config, seed: int, run_id: str = "", *,
                 topic_template: str | None = None) -> None:
        self.seed = seed
        self.start = config.simulation.start
        self._whole_ms_start = self.start.microsecond % 1000 == 0
        self.template = None if topic_template is None else TopicTemplate(self.name, topic_template, PLACEHOLDERS)
        self._mqtt_topics: dict[tuple[str, str], str] = {}
        self.event_id = EventIds(seed, run_id)
        self.topics = config.kafka.topics
        self.times = Timestamps(config.simulation.start,
                                {name: loc.timezone for name, loc in config.locations.items()})
        self.kinds = {name: machines.get(config.model_of(name)).kind
                      for loc in config.locations.values() for name in loc.machines}
        self.labels = {mtype: MACHINE_LABELS.get(kind, mtype) for mtype, kind in self.kinds.items()}
        self._type_headers: dict[str, tuple[str, bytes]] = {}
        self._instants: dict[str, tuple[float, tuple[float, str, str]]] = {}  # see _instant
        stage_of_type: dict[str, str] = {}
        for stage in config.route:
            stage_of_type.setdefault(stage.machine_type, stage.name)
        self.sample_topics = {
            mtype: f"{self.topics.telemetry_prefix}.{stage_of_type.get(mtype, mtype)}.samples"
            for mtype in self.kinds
        }
        self.cycle_topics = {s.name: f"{self.topics.telemetry_prefix}.{s.name}" for s in config.route}

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            return [self._lot_event(record)]
        if isinstance(record, CycleTelemetry):
            return [self._cycle(record)]
        return [self._sample(record)]

    # -- telemetry ------------------------------------------------------------------------------
    def _machine_fields(self, r: CycleTelemetry | MachineSample, eid: str) -> dict[str, Any]:
        times, counters = self.times, r.counters
        return {
            "id_evento": eid,
            "sim_time_s": self._shown_sim_time(r.sim_time),
            "codice_lotto": r.lot_code,
            "luogo": r.location,
            "timestamp_locale": times.local(r.sim_time, r.location),
            "timestamp_utc": times.utc(r.sim_time),
            "id_macchina": r.machine_id,
            "macchina": self.labels[r.machine_type],
            "tipo_macchina": r.machine_type,
            "stato": MACHINE_STATES[r.state],
            "ultima_manutenzione": times.utc(r.last_maintenance_sim_s),
            "pezzi_da_ultima_manutenzione": r.pieces_since_maintenance,
            "allarmi_utente": r.alarms or NO_ALARM,
            "anomalia": r.anomaly,
            "contatori": None if counters is None else _counters(counters),
            "oee": None if counters is None else _oee(counters),
        }

    def _signals(self, r: CycleTelemetry | MachineSample, body: dict[str, Any]) -> None:
        if self.kinds[r.machine_type] != "test_rig":
            for signal, value in r.signals.items():
                body[SIGNAL_FIELDS.get(signal, signal)] = value
            return
        results: dict[str, Any] = {}
        for signal, value in r.signals.items():
            if signal in TEST_RESULT_FIELDS:
                results[TEST_RESULT_FIELDS[signal]] = value
            else:
                body[SIGNAL_FIELDS.get(signal, signal)] = value
        body["risultati_test"] = results

    def _cycle(self, r: CycleTelemetry) -> WireMessage:
        eid = self.event_id(r.location, r.seq)
        body = self._machine_fields(r, eid)
        blocked_s, cycle_s, processed_s = (wire_seconds(r.blocked_s), wire_seconds(r.cycle_time_s),
                                           wire_seconds(r.processed_s))
        body.update({
            "tipo_messaggio": "ciclo",
            "fase": r.stage,
            "priorita": r.priority,
            "quantita": r.quantity,
            "blocco_macchina": r.blocked,
            "motivo_blocco": r.block_reason,
            "durata_blocco_min": round(blocked_s / 60.0, 2),
            "durata_blocco_s": blocked_s,
            "tempo_ciclo": round(cycle_s / 60.0, 2),  # minutes, as the reference system
            "tempo_ciclo_s": cycle_s,
            "tempo_lavorazione_min": round(processed_s / 60.0, 2),
            "tempo_lavorazione_s": processed_s,
        })
        self._signals(r, body)
        if r.test_outcome is not None:
            body["esito"] = TEST_OUTCOMES[r.test_outcome]
        return self._message(self.cycle_topics[r.stage], r.location, r.machine_id, eid, "stage.cycle", body)

    def _sample(self, r: MachineSample) -> WireMessage:
        eid = self.event_id(r.location, r.seq)
        body = self._machine_fields(r, eid)
        body.update({
            "tipo_messaggio": "campione",
            "fase": r.stage,
            "blocco_macchina": r.state == "blocked",
            "motivo_blocco": r.block_reason,
            "intervallo_s": r.interval_s,
        })
        self._signals(r, body)
        return self._message(self.sample_topics[r.machine_type], r.location, r.machine_id, eid, "machine.sample",
                             body)

    # -- lot events -----------------------------------------------------------------------------
    def _lot_event(self, r: LotEvent) -> WireMessage:
        """The most frequent message (two per admitted lot at least): its fields are read once,
        its instant's three forms come from :meth:`_instant`."""
        location, seq, event_type = r.location, r.seq, r.event_type
        eid = self.event_id(location, seq)
        shown, utc, local = self._instant(r.sim_time, location)
        waited, processed, lead_time = r.waited_s, r.processed_s, r.lead_time_s
        lot_code = r.lot_code
        body = {
            "event_id": eid,
            "event_type": event_type,
            "lot_code": lot_code,
            "location": location,
            "stage": r.stage,
            "machine_id": r.machine_id,
            "priority": r.priority,
            "quantity": r.quantity,
            "customer": r.customer,
            "lot_state": r.lot_state,
            "sim_time_s": shown,
            "timestamp_utc": utc,
            "timestamp_local": local,
            "waited_s": None if waited is None else wire_seconds(waited),
            "processed_s": None if processed is None else wire_seconds(processed),
            "lead_time_s": None if lead_time is None else wire_seconds(lead_time),
            "reason": r.reason,
            "cause": r.cause,
            "outcome": r.outcome,
            "rework_count": r.rework_count,
        }
        key = lot_code or r.machine_id or location
        return self._message(self.topics.events, location, key, eid, event_type, body)

    def _instant(self, sim_time: float, location: str) -> tuple[float, str, str]:
        """``sim_time`` as a lot event shows it at ``location``: the sim time to the millisecond,
        UTC and local timestamps (the last one per location is kept: records repeat instants)."""
        cached = self._instants.get(location)
        if cached is not None and cached[0] == sim_time:
            return cached[1]
        times = self.times
        shown = (self._shown_sim_time(sim_time), times.utc(sim_time), times.local(sim_time, location))
        self._instants[location] = (sim_time, shown)
        return shown

    def _shown_sim_time(self, sim_time: float) -> float:
        """``sim_time`` floored to the millisecond, as the message's timestamps show it."""
        offset = self.times.offset(sim_time)
        if self._whole_ms_start:
            return (offset // _MS) / 1000
        instant = self.start + offset
        shown = instant - dt.timedelta(microseconds=instant.microsecond % 1000)
        return (shown - self.start).total_seconds()

    def _message(self, topic: str, location: str, key: str, eid: str, event_type: str,
                 body: dict[str, Any]) -> WireMessage:
        type_header = self._type_headers.get(event_type)
        if type_header is None:
            type_header = self._type_headers[event_type] = ("event_type", event_type.encode())
        headers = (("event_id", eid.encode()), type_header, ("schema_version", SCHEMA_VERSION),
                   ("content_type", CONTENT_TYPE))
        if self.template is not None:
            topic = self.mqtt_topic(topic, location)
        return WireMessage(topic, key.encode(), headers, orjson.dumps(body))

    def mqtt_topic(self, kafka_topic: str, location: str) -> str:
        """The MQTT topic of a message this format puts on ``kafka_topic`` (a target's template)."""
        topic = self._mqtt_topics.get((kafka_topic, location))
        if topic is None:
            assert self.template is not None
            topic = self.template.render({"topic": kafka_topic.replace(".", "/"), "location": level(location)})
            self._mqtt_topics[(kafka_topic, location)] = topic
        return topic


def _counters(c: MachineCounters) -> dict[str, float]:
    return {"cicli": c.cycles, "cicli_buoni": c.good_cycles, "pezzi_buoni": c.good_pieces,  # see COUNTER_FIELDS
            "pezzi_scartati": c.bad_pieces, "tempo_marcia_s": c.running_s, "tempo_blocco_s": c.blocked_s,
            "tempo_pianificato_s": c.planned_s, "tempo_ideale_s": c.ideal_s}


def _oee(c: MachineCounters) -> dict[str, float]:
    availability, performance, quality, oee = oee_figures(c)
    return {"disponibilita": availability, "prestazioni": performance, "qualita": quality, "oee": oee}  # OEE_FIELDS
