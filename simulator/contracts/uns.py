"""The ``uns`` format's messages (:mod:`simulator.formats.uns`): one metric per message.

Metrics, units, state codes and the quality come from the encoder's tables (``METRICS``,
``UNITS``, ``STATE_CODES``, ``STATE_UNITS``, ``GOOD_QUALITY``), tenant, plant and lines from
``formats.uns``; the payload's fields are listed here as the encoder writes them.
"""

from __future__ import annotations

from simulator.config.mqtt import MqttTarget, RecordKind
from simulator.config.schema import Config
from simulator.contracts.machines import MACHINE_STATES, machine_types
from simulator.contracts.model import Message, Parameter, TopicMessages, parameter, topic_address
from simulator.contracts.schema import COUNT, NUMBER, TEXT, UTC_INSTANT, UUID, Schema, const, described, enum, strict
from simulator.formats import uns as wire
from simulator.formats.common import TopicTemplate, level, signal_roles

FORMAT = "uns"
_COUNTERS = frozenset({"good_count", "bad_count"})


def value_schema(config: Config, metric: str) -> Schema:
    if metric == "state":
        if config.formats.uns.state_as == "code":
            return enum(sorted(set(wire.STATE_CODES.values())), "0 running, 1 stopped, 2 fault")
        return enum([*MACHINE_STATES, wire.FAULTED], "the machine's state (faulted: a fault in force)")
    if metric in _COUNTERS:
        return described(COUNT, "pieces since the start of the run")
    return described(NUMBER, f"in {wire.UNITS[metric]}")


def metrics(config: Config) -> list[str]:
    """The metrics some machine of the configuration has (``UnsFormat._machine`` picks them)."""
    present = {"energy_kw", "good_count", "bad_count", "state"}
    for model in machine_types(config).values():
        roles = signal_roles(model)
        if model.bearing_temps or roles.temperature:
            present.add("temp")
        if roles.vibration:
            present.add("vibration_rms")
    return [metric for metric in wire.METRICS if metric in present]


def lines(config: Config) -> list[str]:
    return list(dict.fromkeys([*config.formats.uns.lines, *config.locations]))


def payload(config: Config, metric: str) -> Schema:
    options = config.formats.uns
    unit = wire.STATE_UNITS[options.state_as] if metric == "state" else wire.UNITS[metric]
    return strict({
        "ts": UTC_INSTANT,
        "id": described(UUID, "unique per message; the same for the same seed, record and metric"),
        "tenant": const(options.tenant),
        "plant": const(options.plant),
        "line": enum(lines(config), "the machine's line (formats.uns.lines; by default its location)"),
        "machine": described(TEXT, "the machine id without its location"),
        "metric": const(metric),
        "value": value_schema(config, metric),
        "unit": const(unit),
        "q": const(wire.GOOD_QUALITY, "quality: every value is the machine's own reading"),
    }, title=f"uns metric {metric}")


def mqtt_messages(config: Config, target: MqttTarget) -> list[TopicMessages]:
    options = config.formats.uns
    template = TopicTemplate(FORMAT, target.topic_template or wire.MQTT_TOPIC_TEMPLATE, wire.PLACEHOLDERS)
    variable: dict[str, Parameter] = {
        "line": parameter("the machine's line", map(level, lines(config))),
        "machine": parameter("the machine id without its location",
                             (level(s.id.removeprefix(f"{s.location}-")) for s in config.machine_slots)),
        "location": parameter("the plant (location)", map(level, config.locations)),
        "machine_id": parameter("the machine id", (level(s.id) for s in config.machine_slots)),
        "machine_type": parameter("the machine's type", map(level, machine_types(config))),
    }
    known = {"tenant": level(options.tenant), "plant": level(options.plant)}
    found = []
    for metric in metrics(config):
        records: tuple[RecordKind, ...] = ("cycle", "sample", "lot_event") if metric == "state" else ("cycle", "sample")
        message = Message(f"uns.{metric}", f"UNS {metric}", f"The machine's {metric}", payload(config, metric),
                          records=records)
        address, parameters = topic_address(template, {**known, "metric": metric}, variable)
        found.append(TopicMessages(address, parameters, (message,), f"metric {metric} of each machine"))
    return found
