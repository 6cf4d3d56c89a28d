"""The default wire format: topics, keys, headers and the fields of SPEC section 5."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import orjson
import pytest

from simulator.config.schema import Config
from simulator.formats import WireMessage
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.model.records import CycleTelemetry, ListSink, LotEvent, MachineSample
from simulator.model.simulation import Simulation

COMMON = {
    "codice_lotto", "luogo", "timestamp_locale", "timestamp_utc", "id_macchina", "macchina", "stato",
    "blocco_macchina", "motivo_blocco", "ultima_manutenzione", "tempo_ciclo", "allarmi_utente", "id_evento",
    "pezzi_da_ultima_manutenzione", "potenza_kw", "energia_kwh", "tensione_v", "corrente_a", "fattore_potenza",
}
PER_STAGE = {
    "fresa_cnc": {"profondita_taglio", "vibrazione", "velocita_mandrino"},
    "tornio": {"velocita_rotazione", "temperatura_mandrino"},
    "assemblaggio": {"operatori_attivi"},
    "test": {"risultati_test", "esito"},
}
EVENT_FIELDS = {"event_id", "event_type", "lot_code", "location", "stage", "machine_id", "priority", "sim_time_s",
                "timestamp_utc", "timestamp_local", "waited_s", "processed_s", "lead_time_s"}


@pytest.fixture(scope="module")
def encoded(default_config: Config) -> tuple[Simulation, list[tuple[object, WireMessage]]]:
    sink = ListSink()
    sim = Simulation(default_config, sink, seed=11)
    sim.start_arrivals(limit=120)
    sim.env.run(until=20 * 86400)
    fmt = CoffeeMekFormat(default_config, sim.seed)
    return sim, [(r, m) for r in sink.records for m in fmt.encode(r)]


def test_cycle_messages_carry_the_stage_fields(encoded) -> None:  # type: ignore[no-untyped-def]
    _, messages = encoded
    cycles = [(r, m) for r, m in messages if isinstance(r, CycleTelemetry)]
    assert {m.topic for _, m in cycles} == {f"coffeemek.telemetry.{s}" for s in PER_STAGE}
    for record, message in cycles:
        body = orjson.loads(message.value)
        missing = (COMMON | PER_STAGE[record.stage]) - body.keys()
        assert not missing, (record.stage, missing)
        assert message.key == record.machine_id.encode()
        assert body["id_macchina"] == record.machine_id and body["codice_lotto"] == record.lot_code
        assert body["tempo_ciclo_s"] == round(record.cycle_time_s, 3)  # seconds, to the millisecond
        assert body["tempo_ciclo"] == round(body["tempo_ciclo_s"] / 60, 2)  # minutes, as the reference system
        assert isinstance(body["blocco_macchina"], bool)
        assert (body["motivo_blocco"] is None) == (not body["blocco_macchina"])
        assert body["allarmi_utente"] == "Nessuno" or body["blocco_macchina"]
        if record.stage == "test":
            assert set(body["risultati_test"]) == {"pressione", "temperatura", "portata", "rumore", "vibrazione"}
            assert body["esito"] == {"pass": "superato", "rework": "rilavorazione", "scrap": "scarto"}[
                record.test_outcome or ""]
    assert any(orjson.loads(m.value)["blocco_macchina"] for _, m in cycles)


def test_telemetry_carries_counters_oee_and_anomaly(encoded) -> None:  # type: ignore[no-untyped-def]
    _, messages = encoded
    telemetry = [(r, orjson.loads(m.value)) for r, m in messages if not isinstance(r, LotEvent)]
    for record, body in telemetry:
        c = record.counters
        assert body["contatori"] == {
            "cicli": c.cycles, "cicli_buoni": c.good_cycles, "pezzi_buoni": c.good_pieces,
            "pezzi_scartati": c.bad_pieces, "tempo_marcia_s": c.running_s, "tempo_blocco_s": c.blocked_s,
            "tempo_pianificato_s": c.planned_s, "tempo_ideale_s": c.ideal_s}  # exact, to rebuild the record
        assert body["oee"] == {"disponibilita": round(c.availability, 4), "prestazioni": round(c.performance, 4),
                               "qualita": round(c.quality, 4), "oee": round(c.oee, 4)}
        assert body["anomalia"] == record.anomaly
        assert body["tempo_lavorazione_s"] == round(record.processed_s, 3)
        assert body["durata_blocco_s"] == round(record.blocked_s, 3)
    rigs = [body for record, body in telemetry if record.stage == "test"]
    assert any(body["contatori"]["pezzi_scartati"] > 0 for body in rigs)


def test_sim_time_is_the_instant_the_timestamps_show(encoded) -> None:  # type: ignore[no-untyped-def]
    sim, messages = encoded
    for record, message in messages[:2000]:
        body = orjson.loads(message.value)
        shown = dt.datetime.fromisoformat(body["timestamp_utc"])
        assert sim.calendar_time(body["sim_time_s"]) == shown
        # floored to the millisecond (of the instant rounded to the microsecond, as datetime does)
        assert -1e-6 < record.sim_time - body["sim_time_s"] < 0.001  # type: ignore[attr-defined]


def test_timestamps_are_utc_and_local_with_the_location_offset(encoded) -> None:  # type: ignore[no-untyped-def]
    sim, messages = encoded
    offsets = {"Italia": "+02:00", "Brasile": "-03:00", "Vietnam": "+07:00"}  # June: Rome is on CEST
    for record, message in messages[:400]:
        body = orjson.loads(message.value)
        utc_text = body.get("timestamp_utc")
        local_text = body.get("timestamp_locale") or body.get("timestamp_local")
        utc = dt.datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
        local = dt.datetime.fromisoformat(local_text)
        assert utc_text.endswith("Z")
        assert local == utc
        assert local_text.endswith(offsets[record.location])  # type: ignore[attr-defined]
        exact = sim.calendar_time(record.sim_time)  # type: ignore[attr-defined]
        assert dt.timedelta(0) <= exact - utc < dt.timedelta(milliseconds=1)  # millisecond precision


def test_headers_and_unique_event_ids(encoded) -> None:  # type: ignore[no-untyped-def]
    _, messages = encoded
    ids = set()
    for record, message in messages:
        headers = dict(message.headers)
        assert set(headers) == {"event_id", "event_type", "schema_version", "content_type"}
        assert headers["content_type"] == b"application/json" and headers["schema_version"] == b"1"
        body = orjson.loads(message.value)
        eid = body.get("id_evento") or body.get("event_id")
        assert headers["event_id"].decode() == eid
        uuid.UUID(eid)
        ids.add(eid)
        if isinstance(record, LotEvent):
            assert headers["event_type"].decode() == record.event_type
    assert len(ids) == len(messages)


def test_lot_events_keyed_by_lot_code(encoded) -> None:  # type: ignore[no-untyped-def]
    _, messages = encoded
    events = [(r, m) for r, m in messages if isinstance(r, LotEvent)]
    assert {m.topic for _, m in events} == {"coffeemek.events.production_status"}
    completed = 0
    for record, message in events:
        body = orjson.loads(message.value)
        assert body.keys() >= EVENT_FIELDS
        assert message.key == (record.lot_code or record.machine_id or "").encode()
        if body["event_type"] == "lot.completed":
            completed += 1
            assert body["lead_time_s"] > 0
        if body["event_type"] == "stage.completed":
            assert body["processed_s"] > 0 and body["waited_s"] >= 0
    assert completed > 50


def test_samples_go_to_the_stage_sample_topic(default_config: Config) -> None:
    cfg = default_config.model_copy(update={"telemetry": default_config.telemetry.model_copy(
        update={"sample_interval_s": 300.0})})
    sink = ListSink()
    sim = Simulation(cfg, sink)
    sim.start_arrivals(limit=5)
    sim.env.run(until=3600)
    samples = [r for r in sink.records if isinstance(r, MachineSample)]
    per_machine: dict[str, list[float]] = {}
    for record in samples:
        per_machine.setdefault(record.machine_id, []).append(record.sim_time)
    assert per_machine.keys() == sim.plant.machines.keys()  # every machine, in any state
    for times in per_machine.values():  # every 5 minutes, from a per-machine offset
        assert len(times) in (11, 12)
        assert all(b - a == pytest.approx(300.0) for a, b in itertools.pairwise(times))
    fmt = CoffeeMekFormat(cfg, sim.seed)
    for record in samples:
        (message,) = fmt.encode(record)
        stage = {"fresa_cnc": "fresa_cnc", "tornio": "tornio", "assemblaggio": "assemblaggio", "test": "test"}[
            record.machine_type]
        assert message.topic == f"coffeemek.telemetry.{stage}.samples"
        body = orjson.loads(message.value)
        assert body["tipo_messaggio"] == "campione" and body["intervallo_s"] == 300.0
        assert body["stato"] in {"inattiva", "in_lavorazione", "bloccata", "in_manutenzione", "fuori_turno"}
