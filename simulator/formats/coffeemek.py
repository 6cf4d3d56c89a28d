"""The default ``coffeemek`` wire format (Italian field names of the reference system).

- cycle telemetry -> ``<telemetry_prefix>.<stage>``, key = machine id;
- periodic machine samples -> ``<telemetry_prefix>.<stage>.samples`` (the stage the machine's
  type serves; its type name if it serves none), key = machine id;
- lot events -> ``<events topic>``, key = lot code (machine id for events without a lot).

Headers on every message: ``event_id``, ``event_type``, ``schema_version``, ``content_type``.
"""

from __future__ import annotations

from typing import Any

import orjson

import machines
from simulator.config_schema import Config
from simulator.formats import WireMessage
from simulator.formats.timestamps import EventIds, Timestamps
from simulator.model.records import CycleTelemetry, LotEvent, MachineSample, Record

SCHEMA_VERSION = b"1"
CONTENT_TYPE = b"application/json"

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


class CoffeeMekFormat:
    name = "coffeemek"

    def __init__(self, config: Config, seed: int, instance: str = "") -> None:
        self.seed = seed
        self.event_id = EventIds(seed, instance)
        self.topics = config.kafka.topics
        self.times = Timestamps(config.simulation.start,
                                {name: loc.timezone for name, loc in config.locations.items()})
        self.kinds = {name: machines.get(config.model_of(name)).kind
                      for loc in config.locations.values() for name in loc.machines}
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
        kind = self.kinds[r.machine_type]
        return {
            "id_evento": eid,
            "codice_lotto": r.lot_code,
            "luogo": r.location,
            "timestamp_locale": self.times.local(r.sim_time, r.location),
            "timestamp_utc": self.times.utc(r.sim_time),
            "id_macchina": r.machine_id,
            "macchina": MACHINE_LABELS.get(kind, r.machine_type),
            "tipo_macchina": r.machine_type,
            "stato": MACHINE_STATES[r.state],
            "ultima_manutenzione": self.times.utc(r.last_maintenance_sim_s),
            "pezzi_da_ultima_manutenzione": r.pieces_since_maintenance,
            "allarmi_utente": r.alarms or NO_ALARM,
        }

    def _signals(self, r: CycleTelemetry | MachineSample, body: dict[str, Any]) -> None:
        test_rig = self.kinds[r.machine_type] == "test_rig"
        results: dict[str, Any] = {}
        for signal, value in r.signals.items():
            if test_rig and signal in TEST_RESULT_FIELDS:
                results[TEST_RESULT_FIELDS[signal]] = value
            else:
                body[SIGNAL_FIELDS.get(signal, signal)] = value
        if test_rig:
            body["risultati_test"] = results

    def _cycle(self, r: CycleTelemetry) -> WireMessage:
        eid = self.event_id(r.seq)
        body = self._machine_fields(r, eid)
        body.update({
            "tipo_messaggio": "ciclo",
            "fase": r.stage,
            "priorita": r.priority,
            "quantita": r.quantity,
            "blocco_macchina": r.blocked,
            "motivo_blocco": r.block_reason,
            "durata_blocco_min": round(r.blocked_s / 60.0, 2),
            "tempo_ciclo": round(r.cycle_time_s / 60.0, 2),
            "tempo_lavorazione_min": round(r.processed_s / 60.0, 2),
        })
        self._signals(r, body)
        if r.test_outcome is not None:
            body["esito"] = TEST_OUTCOMES[r.test_outcome]
        return self._message(self.cycle_topics[r.stage], r.machine_id, eid, "stage.cycle", body)

    def _sample(self, r: MachineSample) -> WireMessage:
        eid = self.event_id(r.seq)
        body = self._machine_fields(r, eid)
        body.update({
            "tipo_messaggio": "campione",
            "fase": r.stage,
            "blocco_macchina": r.state == "blocked",
            "motivo_blocco": r.block_reason,
            "intervallo_s": r.interval_s,
        })
        self._signals(r, body)
        return self._message(self.sample_topics[r.machine_type], r.machine_id, eid, "machine.sample", body)

    # -- lot events -----------------------------------------------------------------------------
    def _lot_event(self, r: LotEvent) -> WireMessage:
        eid = self.event_id(r.seq)
        body = {
            "event_id": eid,
            "event_type": r.event_type,
            "lot_code": r.lot_code,
            "location": r.location,
            "stage": r.stage,
            "machine_id": r.machine_id,
            "priority": r.priority,
            "quantity": r.quantity,
            "customer": r.customer,
            "lot_state": r.lot_state,
            "sim_time_s": round(float(r.sim_time), 3),
            "timestamp_utc": self.times.utc(r.sim_time),
            "timestamp_local": self.times.local(r.sim_time, r.location),
            "waited_s": _rounded(r.waited_s),
            "processed_s": _rounded(r.processed_s),
            "lead_time_s": _rounded(r.lead_time_s),
            "reason": r.reason,
            "cause": r.cause,
            "outcome": r.outcome,
            "rework_count": r.rework_count,
        }
        key = r.lot_code or r.machine_id or r.location
        return self._message(self.topics.events, key, eid, r.event_type, body)

    @staticmethod
    def _message(topic: str, key: str, eid: str, event_type: str, body: dict[str, Any]) -> WireMessage:
        headers = (
            ("event_id", eid.encode()),
            ("event_type", event_type.encode()),
            ("schema_version", SCHEMA_VERSION),
            ("content_type", CONTENT_TYPE),
        )
        return WireMessage(topic, key.encode(), headers, orjson.dumps(body))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
