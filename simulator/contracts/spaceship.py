"""The ``spaceship`` format's messages (:mod:`simulator.formats.spaceship`): machine telemetry by
machine type (a cycle and a sample message each), orders and dispatches.

Topics, statuses and qualities come from the encoder's tables (``KIND_TOPICS``, ``STATUS``,
``QUALITY``), names from ``formats.spaceship``; the fields each machine kind adds are listed here
as the encoder writes them (``KIND_FIELDS``), and the tests hold the two together.
"""

from __future__ import annotations

from simulator.config.mqtt import MqttTarget
from simulator.config.plant import PRIORITY_ENGLISH
from simulator.config.schema import Config
from simulator.contracts.machines import anomaly_schema, machine_ids, machine_types, signal_schema, signals
from simulator.contracts.model import Message, Parameter, TopicMessages, parameter, topic_address
from simulator.contracts.schema import (
    BOOLEAN,
    COUNT,
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
from simulator.formats import spaceship as wire
from simulator.formats.common import TopicTemplate, level, topic_prefix

FORMAT = "spaceship"
NULL: Schema = {"type": "null"}
PRINTER_PROGRESS = "progress_pct"  # a printer's signal that goes out as ``progress``


def _kind_fields(config: Config, kind: str, cycle: bool) -> dict[str, Schema]:
    """The fields a machine kind adds after ``status`` (``SpaceshipFormat._<kind>_fields``)."""
    options = config.formats.spaceship
    quality = enum(dict.fromkeys(wire.QUALITY.values()), "the stage's outcome") if cycle else NULL
    cycle_time = described(SECONDS, "seconds, blocked time included") if cycle else NULL
    if kind == "cnc":
        return {"part_type": nullable(enum(options.cnc_part_types)),
                "part_id": nullable({**TEXT, "pattern": r"^.+-\d+$"}), "cycle_time": cycle_time, "quality": quality}
    if kind == "3d_printer":
        return {"part_type": nullable(enum(options.printer_part_types)),
                "part_id": nullable({**TEXT, "pattern": r"^.+-\d+$"}),
                "progress": described(RATIO, "how far the print is (1 on its cycle record)"),
                "quality": quality, "cycle_time": cycle_time}
    if kind == "welding":
        return {"assembly_id": nullable({**TEXT, "pattern": rf"^{wire.ASSEMBLY_PREFIX}-\d+$"}),
                "assembly_type": nullable(enum(options.assembly_types)), "last_cycle_time": cycle_time,
                "quality": quality}
    if kind == "painting":
        return {"part_id": nullable({**TEXT, "pattern": rf"^{wire.PAINTED_PART}-\d+$"}),
                "color": nullable(enum(options.colors)), "cycle_time": cycle_time, "quality": quality}
    if kind == "test_rig":
        return {"target_id": nullable({**TEXT, "pattern": r"^.+-\d+$"}),
                "target_type": nullable(enum(options.products)),
                "test_result": enum(("pass", "fail")) if cycle else NULL,
                "issues_found": described(COUNT, "test measurements outside their acceptance bands"),
                "cycle_time": cycle_time, "quality": quality}
    return {"cycle_time": cycle_time, "quality": quality}


KIND_FIELDS = ("cnc", "3d_printer", "welding", "painting", "test_rig")  # kinds with fields of their own


def telemetry_payload(config: Config, machine_type: str, *, cycle: bool) -> Schema:
    """The fields of ``SpaceshipFormat._telemetry`` for a machine of ``machine_type``."""
    model = machine_types(config)[machine_type]
    fields: dict[str, Schema] = {
        "timestamp": UTC_INSTANT,
        "machine_id": {**TEXT, "examples": machine_ids(config, machine_type)},
        "station_id": TEXT,
        "status": enum(dict.fromkeys(wire.STATUS.values()), "faulted: blocked; a machine off shift is idle"),
    }
    fields.update(_kind_fields(config, model.kind, cycle))
    fields.update({
        "off_shift": BOOLEAN,
        "location": enum(config.locations),
        "machine_type": const(machine_type),
        "order_id": nullable(described(TEXT, "the lot on the machine")),
        "alarm": nullable(TEXT),
        "anomaly": anomaly_schema(model),
    })
    for name in signals(model):
        if not (model.kind == "3d_printer" and name == PRINTER_PROGRESS):
            fields[name] = signal_schema(model, name)
    fields.update({
        "good_count": nullable(COUNT),
        "bad_count": nullable(COUNT),
        "oee": nullable(strict(dict.fromkeys(("availability", "performance", "quality", "oee"), RATIO))),
    })
    what = "cycle" if cycle else "sample"
    return strict(fields, title=f"spaceship {what}: {machine_type}",
                  description=f"A {machine_type} machine's {'completed cycle' if cycle else 'periodic sample'}")


def _items(config: Config) -> Schema:
    item = strict({"product_type": enum(config.formats.spaceship.products),
                   "quantity": {"type": "integer", "minimum": 1}})
    return {"type": "array", "items": item, "minItems": 1, "maxItems": 1, "description": "the lot"}


def order_payload(config: Config) -> Schema:
    return strict({
        "timestamp": UTC_INSTANT,
        "event_type": const("order_placed"),
        "order_id": described(TEXT, "the lot code"),
        "items": _items(config),
        "customer": nullable(TEXT),
        "quantity": {"type": "integer", "minimum": 1},
        "priority": enum(PRIORITY_ENGLISH.values()),
        "location": enum(config.locations),
        "status": const("received"),
    }, title="spaceship order", description="A lot taken in (lot.received)")


def dispatch_payload(config: Config) -> Schema:
    options = config.formats.spaceship
    return strict({
        "timestamp": UTC_INSTANT,
        "event_type": const("order_dispatched"),
        "order_id": described(TEXT, "the lot code"),
        "destination": enum(options.destinations),
        "carrier": enum(options.carriers),
        "items": _items(config),
        "dispatch_id": described(UUID, "the lot.completed event's id"),
        "customer": nullable(TEXT),
        "quantity": {"type": "integer", "minimum": 1},
        "priority": enum(PRIORITY_ENGLISH.values()),
        "location": enum(config.locations),
        "lead_time_s": nullable(SECONDS),
        "rework_count": nullable(COUNT),
        "status": const("dispatched"),
    }, title="spaceship dispatch", description="A lot finished (lot.completed)")


def mqtt_messages(config: Config, target: MqttTarget) -> list[TopicMessages]:
    template = TopicTemplate(FORMAT, target.topic_template or wire.MQTT_TOPIC_TEMPLATE, wire.PLACEHOLDERS)
    prefix = topic_prefix(FORMAT, config.formats.spaceship.topic_prefix)
    location = parameter("the plant (location), as a topic level", map(level, config.locations))
    staged = {stage.machine_type for stage in config.route}
    found: list[TopicMessages] = []
    for mtype, model in machine_types(config).items():
        short = [s.id.removeprefix(f"{s.location}-") for s in config.machine_slots if s.machine_type == mtype]
        variable: dict[str, Parameter] = {
            "location": location,
            "machine": parameter("the machine id without its location", map(level, short)),
            "machine_id": parameter("the machine id", map(level, machine_ids(config, mtype)))}
        kind = wire.KIND_TOPICS.get(model.kind, wire.OTHER_TOPIC)
        address, parameters = topic_address(template, {"prefix": prefix, "kind": kind,
                                                       "machine_type": level(mtype)}, variable)
        messages = []
        if mtype in staged:  # a machine that serves no stage works no lots: it only has samples
            messages.append(Message(f"spaceship.cycle.{mtype}", f"Cycle of {mtype}",
                                    f"A {mtype} machine's completed cycle",
                                    telemetry_payload(config, mtype, cycle=True), records=("cycle",)))
        if config.sample_interval_of(mtype) > 0:
            messages.append(Message(f"spaceship.sample.{mtype}", f"Sample of {mtype}",
                                    f"A {mtype} machine's periodic sample",
                                    telemetry_payload(config, mtype, cycle=False), records=("sample",)))
        if messages:
            found.append(TopicMessages(address, parameters, tuple(messages), f"{kind} telemetry"))
    no_machine = {"prefix": prefix, "machine": "", "machine_id": "", "machine_type": ""}
    for kind, message in (
            ("orders", Message("spaceship.order", "Order placed", "A lot taken in", order_payload(config),
                               records=("lot_event",))),
            ("dispatch", Message("spaceship.dispatch", "Order dispatched", "A lot finished", dispatch_payload(config),
                                 records=("lot_event",)))):
        address, parameters = topic_address(template, {**no_machine, "kind": kind}, {"location": location})
        found.append(TopicMessages(address, parameters, (message,), f"{kind} of the lots"))
    return found
