"""The ``coffeemek`` format's messages (:mod:`simulator.formats.coffeemek`): cycle telemetry per
stage, periodic samples per machine type, lot events, with their Kafka headers and keys.

Field names come from the encoder's own tables (``SIGNAL_FIELDS``, ``TEST_RESULT_FIELDS``,
``COUNTER_FIELDS``, ``OEE_FIELDS``, ``MACHINE_STATES``, ``MACHINE_LABELS``, ``TEST_OUTCOMES``) and
each machine type's signal list; the fields every message has are listed here, next to the
encoder's, and the tests hold the two to each other (a field the encoder adds without its schema
fails them).
"""

from __future__ import annotations

import dataclasses

from simulator.config.mqtt import MqttTarget
from simulator.config.plant import PRIORITIES
from simulator.config.schema import Config
from simulator.contracts.machines import anomaly_schema, machine_ids, machine_types, signal_schema, signals
from simulator.contracts.model import Message, TopicMessages, parameter, topic_address
from simulator.contracts.schema import (
    BOOLEAN,
    COUNT,
    LOCAL_INSTANT,
    RATIO,
    SECONDS,
    TEXT,
    UTC_INSTANT,
    UUID,
    Schema,
    const,
    described,
    enum,
    nullable,
    strict,
)
from simulator.formats import coffeemek as wire
from simulator.formats.common import CONTENT_TYPE, TopicTemplate, level
from simulator.model.lot import LotState
from simulator.model.production import COMMAND, CYCLE_BLOCK, FAILURE
from simulator.model.records import EVENT_TYPES, MachineCounters

FORMAT = "coffeemek"
MINUTES: Schema = {"type": "number", "minimum": 0, "description": "minutes, to 2 decimals"}
CYCLE_EVENT, SAMPLE_EVENT = "stage.cycle", "machine.sample"
CAUSES = (CYCLE_BLOCK, FAILURE, COMMAND)
# events of a lot (``Recorder.lot_event``: its code, priority, quantity, customer and state) by their
# prefix; the others are a machine's (``Recorder.machine_event``: its id); these lot events happen at a machine
LOT_EVENT_PREFIXES = ("lot.", "stage.")
ON_A_MACHINE = frozenset({"stage.started", "stage.completed", "lot.reworked"})


def headers(event_types: list[str]) -> Schema:
    """The Kafka headers of every coffeemek message (UTF-8 text values)."""
    return strict({
        "event_id": described(UUID, "the message's event id (the payload's id_evento / event_id)"),
        "event_type": enum(event_types, "the message's kind"),
        "schema_version": const(wire.SCHEMA_VERSION.decode(), "the payload's schema version"),
        "content_type": const(CONTENT_TYPE.decode()),
    }, description="Kafka record headers; values are UTF-8 text")


def _location(config: Config) -> Schema:
    return enum(config.locations, "the plant (location) the message is about")


def _machine_fields(config: Config, machine_type: str, *, cycle: bool) -> dict[str, Schema]:
    """The fields of ``CoffeeMekFormat._machine_fields``."""
    model = machine_types(config)[machine_type]
    lot = described(TEXT, "the lot on the machine")
    return {
        "id_evento": described(UUID, "event id: the same for the same record of the same run"),
        "sim_time_s": described(SECONDS, "simulated seconds since the run's start, to the millisecond"),
        "codice_lotto": lot if cycle else nullable(lot),
        "luogo": _location(config),
        "timestamp_locale": LOCAL_INSTANT,
        "timestamp_utc": UTC_INSTANT,
        "id_macchina": {**TEXT, "examples": machine_ids(config, machine_type)},
        "macchina": const(wire.MACHINE_LABELS.get(model.kind, machine_type), "the machine's name"),
        "tipo_macchina": const(machine_type),
        "stato": enum(wire.MACHINE_STATES.values(), "the machine's state"),
        "ultima_manutenzione": described(UTC_INSTANT, "the end of its last maintenance"),
        "pezzi_da_ultima_manutenzione": COUNT,
        "allarmi_utente": described(TEXT, f"the alarm, or {wire.NO_ALARM!r}"),
        "anomalia": anomaly_schema(model),
        "contatori": nullable(strict(_counters(), description="the machine's running totals (counts, and "
                                                                "seconds of simulated time)")),
        "oee": nullable(strict(dict.fromkeys(wire.OEE_FIELDS, RATIO), description="ratios, to 4 decimals")),
    }


def _counters() -> dict[str, Schema]:
    """``contatori``: each counter of :class:`MachineCounters` under its field name, a count or seconds as
    the counter is an integer or a float."""
    kinds = {field.name: str(field.type) for field in dataclasses.fields(MachineCounters)}
    return {name: COUNT if kinds[attribute] == "int" else SECONDS for attribute, name in wire.COUNTER_FIELDS.items()}


def _signal_fields(config: Config, machine_type: str) -> dict[str, Schema]:
    """The fields of ``CoffeeMekFormat._signals``: a test rig's measurements nested in ``risultati_test``."""
    model = machine_types(config)[machine_type]
    fields: dict[str, Schema] = {}
    nested: dict[str, Schema] = {}
    for name in signals(model):
        if model.kind == "test_rig" and name in wire.TEST_RESULT_FIELDS:
            nested[wire.TEST_RESULT_FIELDS[name]] = signal_schema(model, name)
        else:
            fields[wire.SIGNAL_FIELDS.get(name, name)] = signal_schema(model, name)
    if model.kind == "test_rig":
        fields["risultati_test"] = strict(nested, description="the test's measurements")
    return fields


def cycle_payload(config: Config, stage_name: str) -> Schema:
    stage = next(s for s in config.route if s.name == stage_name)
    fields = _machine_fields(config, stage.machine_type, cycle=True)
    fields.update({
        "tipo_messaggio": const("ciclo"),
        "fase": const(stage.name, "the stage"),
        "priorita": enum(PRIORITIES),
        "quantita": {"type": "integer", "minimum": 1},
        "blocco_macchina": described(BOOLEAN, "the cycle was interrupted by a block or a failure"),
        "motivo_blocco": nullable(TEXT),
        "durata_blocco_min": MINUTES,
        "durata_blocco_s": SECONDS,
        "tempo_ciclo": described(MINUTES, "the cycle's span in minutes, blocked time included"),
        "tempo_ciclo_s": SECONDS,
        "tempo_lavorazione_min": described(MINUTES, "processing time in minutes"),
        "tempo_lavorazione_s": SECONDS,
    })
    fields.update(_signal_fields(config, stage.machine_type))
    if stage.quality is not None:
        fields["esito"] = enum(wire.TEST_OUTCOMES.values(), "the test's outcome")
    return strict(fields, title=f"coffeemek cycle: {stage.name}",
                  description=f"One completed cycle of a lot at stage {stage.name} "
                              f"(machine type {stage.machine_type})")


def sample_payload(config: Config, machine_type: str) -> Schema:
    fields = _machine_fields(config, machine_type, cycle=False)
    stages = [s.name for s in config.route if s.machine_type == machine_type]
    fields.update({
        "tipo_messaggio": const("campione"),
        "fase": nullable(enum(stages, "the stage of the lot on the machine")) if stages else {"type": "null"},
        "blocco_macchina": described(BOOLEAN, "the machine is blocked"),
        "motivo_blocco": nullable(TEXT),
        "intervallo_s": described(SECONDS, "the span the sample covers"),
    })
    fields.update(_signal_fields(config, machine_type))
    return strict(fields, title=f"coffeemek sample: {machine_type}",
                  description=f"A periodic sample of a {machine_type} machine, whatever its state")


def lot_event_payload(config: Config) -> Schema:
    """The fields of ``CoffeeMekFormat._lot_event``."""
    optional_seconds = nullable(SECONDS)
    schema = strict({
        "event_id": UUID,
        "event_type": enum(EVENT_TYPES),
        "lot_code": nullable(TEXT),
        "location": _location(config),
        "stage": nullable(enum([s.name for s in config.route])),
        "machine_id": nullable({**TEXT, "examples": machine_ids(config)}),
        "priority": nullable(enum(PRIORITIES)),
        "quantity": nullable({"type": "integer", "minimum": 1}),
        "customer": nullable(TEXT),
        "lot_state": nullable(enum(state.value for state in LotState)),
        "sim_time_s": SECONDS,
        "timestamp_utc": UTC_INSTANT,
        "timestamp_local": LOCAL_INSTANT,
        "waited_s": optional_seconds,
        "processed_s": optional_seconds,
        "lead_time_s": optional_seconds,
        "reason": nullable(described(TEXT, "why a machine was blocked or a lot scrapped")),
        "cause": nullable(enum(CAUSES, "what blocked the machine")),
        "outcome": nullable(enum(("pass", "rework", "scrap"), "the test's outcome at a quality stage")),
        "rework_count": nullable(COUNT),
    }, title="coffeemek lot event", description="A lot's lifecycle event or a machine event")
    lot_events = [t for t in EVENT_TYPES if t.startswith(LOT_EVENT_PREFIXES)]
    machine_events = [t for t in EVENT_TYPES if t not in lot_events]
    at_machine = [*machine_events, *(t for t in lot_events if t in ON_A_MACHINE)]
    schema["allOf"] = [
        _when(lot_events, {"lot_code": TEXT, "priority": enum(PRIORITIES), "quantity": {"type": "integer"},
                           "customer": TEXT, "lot_state": TEXT}),
        _when(at_machine, {"machine_id": TEXT}),
        _when(["machine.blocked"], {"cause": enum(CAUSES), "reason": TEXT}),
        _when(["lot.completed"], {"lead_time_s": SECONDS}),
    ]
    return schema


def _when(event_types: list[str], fields: dict[str, Schema]) -> Schema:
    """Events of ``event_types`` have ``fields`` (not null)."""
    return {"if": {"properties": {"event_type": enum(event_types)}},
            "then": {"properties": fields, "required": list(fields)}}


def _machine_key(config: Config, machine_type: str | None = None) -> Schema:
    return {**TEXT, "description": "the machine id", "examples": machine_ids(config, machine_type)}


def cycle_message(config: Config, stage_name: str) -> Message:
    stage = next(s for s in config.route if s.name == stage_name)
    return Message(f"coffeemek.cycle.{stage.name}", f"Cycle at {stage.name}",
                   f"One completed stage cycle at {stage.name}: the machine's signals, times and counters",
                   cycle_payload(config, stage.name), headers=headers([CYCLE_EVENT]),
                   key=_machine_key(config, stage.machine_type), records=("cycle",))


def sample_message(config: Config, machine_type: str) -> Message:
    return Message(f"coffeemek.sample.{machine_type}", f"Sample of {machine_type}",
                   f"A periodic sample of a {machine_type} machine", sample_payload(config, machine_type),
                   headers=headers([SAMPLE_EVENT]), key=_machine_key(config, machine_type), records=("sample",))


def lot_event_message(config: Config) -> Message:
    codes = {**TEXT, "description": "the lot code; the machine id for a machine event without a lot (else the "
                                    "location)"}
    return Message("coffeemek.lot_event", "Lot event", "A lot's lifecycle event or a machine event",
                   lot_event_payload(config), headers=headers(list(EVENT_TYPES)), key=codes, records=("lot_event",))


def kafka_topics(config: Config) -> list[tuple[str, str, list[Message]]]:
    """(topic, description, messages) of every topic the format writes on Kafka: the cycle telemetry
    of each stage, the samples of each sampled machine type, the lot events."""
    topics: list[tuple[str, str, list[Message]]] = []
    prefix = config.kafka.topics.telemetry_prefix
    for stage in config.route:
        topics.append((f"{prefix}.{stage.name}", f"Cycle telemetry of stage {stage.name}",
                       [cycle_message(config, stage.name)]))
    samples: dict[str, list[Message]] = {}
    first_stage: dict[str, str] = {}
    for stage in config.route:
        first_stage.setdefault(stage.machine_type, stage.name)
    for mtype in machine_types(config):
        if config.sample_interval_of(mtype) > 0:
            topic = f"{prefix}.{first_stage.get(mtype, mtype)}.samples"
            samples.setdefault(topic, []).append(sample_message(config, mtype))
    for topic, messages in samples.items():
        types = ", ".join(m.name.rpartition(".")[2] for m in messages)
        topics.append((topic, f"Periodic machine samples ({types})", messages))
    topics.append((config.kafka.topics.events, "Lot lifecycle and machine events", [lot_event_message(config)]))
    return topics


def mqtt_messages(config: Config, target: MqttTarget) -> list[TopicMessages]:
    """The Kafka messages on an MQTT target: ``{topic}`` is the Kafka topic with ``/`` for ``.``."""
    template = TopicTemplate(FORMAT, target.topic_template or wire.MQTT_TOPIC_TEMPLATE, wire.PLACEHOLDERS)
    location = parameter("the plant (location), as a topic level", map(level, config.locations))
    found: list[TopicMessages] = []
    for topic, description, messages in kafka_topics(config):
        address, parameters = topic_address(template, {"topic": topic.replace(".", "/")},
                                            {"location": location})
        found.append(TopicMessages(address, parameters, tuple(messages), description))
    return found
