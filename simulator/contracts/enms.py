"""The ``enms`` format's messages (:mod:`simulator.formats.enms`): energy, production,
environmental and (retained) status messages per machine.

Field names come from the encoder's tables (``ENERGY_SIGNALS``, ``OPERATING_MODES``,
``AIR_FIELDS``, ``PROCESS_FIELDS``) and the machine types' signals (the words a process state
takes, the anomalies); the rest is listed here as the encoder writes it, and the tests hold the
two together.
"""

from __future__ import annotations

from simulator.config.mqtt import MqttTarget, RecordKind
from simulator.config.schema import Config
from simulator.contracts.machines import MACHINE_STATES, machine_types
from simulator.contracts.model import Message, Parameter, TopicMessages, parameter, topic_address
from simulator.contracts.schema import (
    BOOLEAN,
    COUNT,
    LOCAL_INSTANT,
    NUMBER,
    RATIO,
    SECONDS,
    TEXT,
    UTC_INSTANT,
    UUID,
    Schema,
    described,
    enum,
    nullable,
    strict,
)
from simulator.formats import enms as wire
from simulator.formats.common import MACHINE_EVENTS, TopicTemplate, level, topic_prefix
from simulator.model.control import PLANT_WIDE_ANOMALIES

FORMAT = "enms"
KINDS: tuple[str, ...] = ("energy", "production", "environmental", "status")
PERCENT: Schema = {"type": "number", "minimum": 0, "maximum": 100}
MEASURED = nullable(NUMBER)


def _head() -> dict[str, Schema]:
    return {"time": UTC_INSTANT, "time_local": LOCAL_INSTANT,
            "machine_id": described(UUID, "the machine's UUID (uuid5 of its id, stable across runs)")}


def energy_payload(config: Config) -> Schema:
    head = _head()
    fields = {"time": head["time"], "machine_id": head["machine_id"]}
    fields.update(dict.fromkeys(wire.ENERGY_SIGNALS, NUMBER))
    fields["frequency_hz"] = enum(sorted({wire.grid_frequency_hz(loc.timezone) for loc in config.locations.values()}),
                                  "the grid's nominal frequency where the machine is")
    fields["time_local"] = head["time_local"]
    return strict(fields, title="enms energy", description="energy_kwh: over the span the record covers")


def production_payload() -> Schema:
    fields = _head()
    fields.update({
        "production_count": described(COUNT, "pieces this message reports as made (0 on a sample)"),
        "production_count_good": COUNT,
        "production_count_bad": COUNT,
        "throughput_units_per_hour": nullable({"type": "number", "minimum": 0}),
        "operating_mode": enum(dict.fromkeys(wire.OPERATING_MODES.values())),
        "speed_percent": PERCENT,
        "lot_code": nullable(TEXT),
        "quantity": nullable({"type": "integer", "minimum": 1}),
        "cycle_time_s": nullable(SECONDS),
        "cycles": nullable(COUNT),
        "total_production_count": nullable(COUNT),
        "total_production_count_good": nullable(COUNT),
        "total_production_count_bad": nullable(COUNT),
        **dict.fromkeys(("availability", "performance", "quality", "oee"), nullable(RATIO)),
    })
    return strict(fields, title="enms production")


def environmental_payload() -> Schema:
    fields = _head()
    fields.update({
        "machine_temp_c": MEASURED,
        "indoor_temp_c": NUMBER,
        "outdoor_temp_c": MEASURED,
        "indoor_humidity_percent": MEASURED,
        "pressure_bar": MEASURED,
        "flow_rate_m3h": MEASURED,
        "vibration_mm_s": MEASURED,
        **dict.fromkeys(wire.AIR_FIELDS.values(), MEASURED),
    })
    return strict(fields, title="enms environmental", description="null: the machine's type does not measure it")


def status_payload(config: Config) -> Schema:
    models = machine_types(config)
    process: dict[str, Schema] = {}
    for signal, field in wire.PROCESS_FIELDS.items():
        words = [w for model in models.values() for w in model.word_signals.get(signal, ())]
        process[field] = nullable(enum(words)) if words else MEASURED
    anomalies = [a for model in models.values() for a in model.anomalies]
    fields = _head()
    fields.update({
        "machine_name": described(TEXT, "the machine id"),
        "machine_type": enum(models),
        "state": enum(MACHINE_STATES),
        "is_running": BOOLEAN,
        "operating_mode": enum(dict.fromkeys(wire.OPERATING_MODES.values())),
        "current_power_kw": MEASURED,
        "speed_percent": nullable(PERCENT),
        **process,
        "lot_code": nullable(TEXT),
        "alarm": nullable(TEXT),
        "alarm_active": BOOLEAN,
        "anomaly": nullable(enum([*anomalies, *PLANT_WIDE_ANOMALIES])),
        "source": enum(["sample", *sorted(MACHINE_EVENTS)], "a sample, or the event that changed the state"),
    })
    return strict(fields, title="enms status", description="A status made from an event carries no measurement")


def messages(config: Config) -> dict[str, Message]:
    """The message of each kind of topic."""
    made: dict[str, tuple[Schema, tuple[RecordKind, ...], str]] = {
        "energy": (energy_payload(config), ("sample", "cycle"),
                   "power and energy (from samples; from cycles of a machine type that is not sampled)"),
        "production": (production_payload(), ("sample", "cycle"), "pieces made, running totals and OEE"),
        "environmental": (environmental_payload(), ("sample",), "temperatures, pressure, flow, vibration, air"),
        "status": (status_payload(config), ("sample", "lot_event"), "the machine's state (retained)"),
    }
    return {kind: Message(f"enms.{kind}", f"EnMS {kind}", summary, payload, records=records,
                          retain=kind == "status")
            for kind, (payload, records, summary) in made.items()}


def mqtt_messages(config: Config, target: MqttTarget) -> list[TopicMessages]:
    options = config.formats.enms
    template = TopicTemplate(FORMAT, target.topic_template or wire.MQTT_TOPIC_TEMPLATE, wire.PLACEHOLDERS)
    known = {"prefix": topic_prefix(FORMAT, options.topic_prefix)}
    full_names = options.site is not None and len(config.locations) > 1
    variable: dict[str, Parameter] = {
        "machine": parameter("the machine id" + ("" if full_names else " without its location"),
                             (level(s.id if full_names else s.id.removeprefix(f"{s.location}-"))
                              for s in config.machine_slots)),
        "location": parameter("the plant (location)", map(level, config.locations)),
        "machine_id": parameter("the machine id", (level(s.id) for s in config.machine_slots)),
        "machine_type": parameter("the machine's type", map(level, machine_types(config))),
    }
    if options.site is not None:
        known["site"] = level(options.site)
    else:
        variable["site"] = parameter("the location's name in lower case",
                                     (level(name.lower()) for name in config.locations))
    found = []
    for kind, message in messages(config).items():
        address, parameters = topic_address(template, {**known, "kind": kind}, variable)
        found.append(TopicMessages(address, parameters, (message,), message.summary))
    return found
