"""Reading ``coffeemek`` messages back into records (the inverse of :class:`CoffeeMekFormat`).

The standalone MQTT bridge consumes the Kafka topics and re-encodes what it reads in another
format.  A decoded record equals the one the service encoded except that its times are those the
message shows: sim time and last maintenance to the millisecond of their timestamps, durations
to the millisecond.  Every format writes times at that precision, so encoding a decoded record
gives the same messages as encoding the original.

No config is needed: the sim time is in the message (``sim_time_s``), the record's ``seq`` is the
last group of the event id (hex), and the signals are the fields that are not part of the
envelope, in the order the message gives them (a test rig's ``risultati_test`` first: its
measurements precede its energy fields).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from machines.base import Signals
from simulator.formats.coffeemek import (
    COUNTER_FIELDS,
    MACHINE_STATES,
    NO_ALARM,
    SIGNAL_FIELDS,
    TEST_OUTCOMES,
    TEST_RESULT_FIELDS,
)
from simulator.model.records import CycleTelemetry, LotEvent, MachineCounters, MachineSample, Record

STATE_OF = {text: state for state, text in MACHINE_STATES.items()}
OUTCOME_OF = {text: outcome for outcome, text in TEST_OUTCOMES.items()}
SIGNAL_OF = {field: signal for signal, field in SIGNAL_FIELDS.items()}
RESULT_OF = {field: signal for signal, field in TEST_RESULT_FIELDS.items()}
# Telemetry fields that are not signals.
ENVELOPE = frozenset({
    "id_evento", "sim_time_s", "codice_lotto", "luogo", "timestamp_locale", "timestamp_utc", "id_macchina",
    "macchina", "tipo_macchina", "stato", "ultima_manutenzione", "pezzi_da_ultima_manutenzione", "allarmi_utente",
    "anomalia", "contatori", "oee", "tipo_messaggio", "fase", "priorita", "quantita", "blocco_macchina",
    "motivo_blocco", "durata_blocco_min", "durata_blocco_s", "tempo_ciclo", "tempo_ciclo_s", "tempo_lavorazione_min",
    "tempo_lavorazione_s", "intervallo_s", "risultati_test", "esito",
})


class DecodeError(ValueError):
    """A message that is not a coffeemek record (not JSON, a field missing or of the wrong type)."""


def decode_record(topic: str, value: bytes) -> Record:
    """The record a coffeemek message on ``topic`` was encoded from; DecodeError if it is not one."""
    return decode_message(topic, value)[0]


def decode_message(topic: str, value: bytes) -> tuple[Record, dt.datetime]:
    """The record a coffeemek message on ``topic`` was encoded from, and the calendar instant of
    its run's simulated time 0 (its UTC timestamp less its sim time, to the millisecond: what a
    re-encoding needs to show the same instants); DecodeError if it is not one."""
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{topic}: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise DecodeError(f"{topic}: not a JSON object")
    try:
        kind = body.get("tipo_messaggio")
        if kind == "ciclo":
            record: Record = _cycle(body)
        elif kind == "campione":
            record = _sample(body)
        elif kind is None and "event_type" in body:
            record = _lot_event(body)
        else:
            raise DecodeError(f"{topic}: neither telemetry (tipo_messaggio ciclo|campione) nor a lot event")
        shown = _instant(body["timestamp_utc"]) - dt.timedelta(milliseconds=round(_sim_time(body) * 1000))
    except DecodeError:
        raise
    except KeyError as exc:
        raise DecodeError(f"{topic}: field {exc} missing or unknown") from None
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise DecodeError(f"{topic}: {exc}") from None
    return record, shown


# -- pieces -------------------------------------------------------------------------------------
def _instant(text: str) -> dt.datetime:
    instant = dt.datetime.fromisoformat(text)
    if instant.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    return instant


def _sim_time(body: dict[str, Any]) -> float:
    value = body["sim_time_s"]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"sim_time_s is not a number: {value!r}")
    return float(value)


def _seq(event_id: str) -> int:
    return int(event_id.rpartition("-")[2], 16)


def _signals(body: dict[str, Any]) -> Signals:
    signals: Signals = {}
    results = body.get("risultati_test")
    if isinstance(results, dict):
        for field, value in results.items():
            signals[RESULT_OF.get(str(field), str(field))] = value
    for field, value in body.items():
        if field not in ENVELOPE:
            signals[SIGNAL_OF.get(field, field)] = value
    return signals


def _counters(data: dict[str, Any] | None) -> MachineCounters | None:
    if data is None:
        return None
    return MachineCounters(**{name: data[field] for name, field in COUNTER_FIELDS.items()})


def _common(body: dict[str, Any]) -> dict[str, Any]:
    sim_time = _sim_time(body)
    # the last maintenance relative to the message's own instant (both to the millisecond)
    since_maintenance = _instant(body["timestamp_utc"]) - _instant(body["ultima_manutenzione"])
    alarms = body["allarmi_utente"]
    return {
        "seq": _seq(body["id_evento"]),
        "sim_time": sim_time,
        "location": body["luogo"],
        "machine_id": body["id_macchina"],
        "machine_type": body["tipo_macchina"],
        "state": STATE_OF[body["stato"]],
        "last_maintenance_sim_s": (dt.timedelta(seconds=sim_time) - since_maintenance).total_seconds(),
        "pieces_since_maintenance": body["pezzi_da_ultima_manutenzione"],
        "alarms": "" if alarms == NO_ALARM else alarms,
        "signals": _signals(body),
        "counters": _counters(body.get("contatori")),
        "anomaly": body.get("anomalia"),
    }


def _cycle(body: dict[str, Any]) -> CycleTelemetry:
    esito = body.get("esito")
    return CycleTelemetry(
        **_common(body),
        stage=body["fase"],
        lot_code=body["codice_lotto"],
        priority=body["priorita"],
        quantity=body["quantita"],
        blocked=body["blocco_macchina"],
        block_reason=body["motivo_blocco"],
        blocked_s=body["durata_blocco_s"],
        cycle_time_s=body["tempo_ciclo_s"],
        processed_s=body["tempo_lavorazione_s"],
        test_outcome=None if esito is None else OUTCOME_OF[esito],
    )


def _sample(body: dict[str, Any]) -> MachineSample:
    return MachineSample(
        **_common(body),
        lot_code=body["codice_lotto"],
        stage=body["fase"],
        block_reason=body["motivo_blocco"],
        interval_s=body["intervallo_s"],
    )


def _lot_event(body: dict[str, Any]) -> LotEvent:
    return LotEvent(
        seq=_seq(body["event_id"]),
        sim_time=_sim_time(body),
        event_type=body["event_type"],
        location=body["location"],
        lot_code=body["lot_code"],
        stage=body["stage"],
        machine_id=body["machine_id"],
        priority=body["priority"],
        quantity=body["quantity"],
        customer=body["customer"],
        lot_state=body["lot_state"],
        reason=body["reason"],
        cause=body["cause"],
        waited_s=body["waited_s"],
        processed_s=body["processed_s"],
        lead_time_s=body["lead_time_s"],
        rework_count=body["rework_count"],
        outcome=body["outcome"],
    )
