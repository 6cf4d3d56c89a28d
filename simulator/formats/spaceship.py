"""The ``spaceship`` MQTT format: the SpaceShip factory's topics and JSON fields.

Topics (default template ``{prefix}/{kind}``; ``prefix`` = ``formats.spaceship.topic_prefix``):
machine telemetry by machine kind -> ``cnc``, ``3dprinter`` (3d_printer), ``welding``,
``painting``, ``testing`` (test_rig), any other kind -> ``telemetry``; ``lot.received`` ->
``orders``; ``lot.completed`` -> ``dispatch``.  Other lot events, scrapped lots included, produce
nothing.  Placeholders: {prefix} {kind} {location} {machine}
(the id without the location) {machine_id} {machine_type}; order and dispatch messages have no
machine, so those levels drop out.

Telemetry (cycle records and samples), key = machine id.  Every message on a topic has the same
fields; what a message cannot know is null.  First the fields of the SpaceShip factory:

- all kinds: ``timestamp`` (UTC), ``machine_id``, ``station_id`` (``machine_types.<type>.
  station_id_template``), ``status`` (running | idle | maintenance | faulted: a blocked machine is
  faulted; a machine off shift is idle, with ``off_shift`` true);
- ``cnc``: ``part_type``, ``part_id``, ``cycle_time`` (seconds, blocked time included), ``quality``;
- ``3d_printer``: ``part_type``, ``part_id``, ``progress`` (0..1: how far the print is on a sample,
  1.0 on its cycle record, 0.0 without a job), ``quality``; and ``cycle_time``;
- ``welding``: ``assembly_id``, ``assembly_type``, ``last_cycle_time``, ``quality`` (an idle
  station keeps its last ``assembly_id``);
- ``painting``: ``part_id``, ``color`` (hex), ``cycle_time``, ``quality``;
- ``test_rig``: ``target_id``, ``target_type``, ``test_result`` (pass | fail), ``issues_found``
  (test measurements outside their acceptance bands; 0 until a test ends); and ``cycle_time``,
  ``quality``;
- other kinds: ``cycle_time``, ``quality``.

``quality`` (good | rework | scrap) is the stage's outcome on a cycle record (a stage without a
quality check counts its pieces good) and null on a sample; ``cycle_time`` and ``test_result`` are
null on a sample too.  The ids count the machine's cycles: ``part_id`` is the part type's initials
and the machine's cycle number (``HP-17``: the 17th cycle of that CNC; a sample shows the cycle in
progress), ``assembly_id`` ``A-<n>``, a painted ``part_id`` ``Frame-<n>``, ``target_id`` the
product's prefix (``formats.spaceship.products``) and ``-<n>``; all are null on a machine without
a lot.  Part, assembly and target types and the colour are the lot's: chosen from the lists of
``formats.spaceship`` by the run seed and the lot code, so a lot shows the same ones on every
message.

Then: ``off_shift``, ``location``, ``machine_type``, ``order_id`` (the lot on the machine, or null),
``alarm`` (text or null), ``anomaly``, the machine's signals under their own names (units in the
names; a printer's ``progress_pct`` goes out as ``progress``), ``good_count`` and ``bad_count``
(pieces) and ``oee`` {availability, performance, quality, oee} (ratios) from its counters.

Orders (key = lot code): ``timestamp, event_type`` ("order_placed") ``, order_id`` (the lot code)
``, items`` ([{product_type, quantity}]: the lot's product and quantity) ``, customer, quantity,
priority`` (high | normal | low) ``, location, status`` ("received").  Dispatch: ``timestamp,
event_type`` ("order_dispatched") ``, order_id, destination`` (chosen by the customer) ``, carrier``
(by the lot) ``, items, dispatch_id`` (the lot.completed event's id) ``, customer, quantity,
priority, location, lead_time_s, rework_count, status`` ("dispatched").
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from machines.base import MachineState
from machines.test_rig import FLOW_BAND, NOISE_MAX_DB, PRESSURE_BAND
from simulator.config.plant import PRIORITY_ENGLISH
from simulator.config.schema import Config
from simulator.formats import WireMessage
from simulator.formats.common import (
    CONTENT_TYPE,
    MachineIndex,
    TopicTemplate,
    level,
    oee_figures,
    topic_prefix,
    wire_seconds,
)
from simulator.formats.timestamps import EventIds, Timestamps
from simulator.model.records import CycleTelemetry, LotEvent, MachineSample, Record

MQTT_TOPIC_TEMPLATE = "{prefix}/{kind}"
PLACEHOLDERS = ("prefix", "kind", "location", "machine", "machine_id", "machine_type")
KIND_TOPICS = {"cnc": "cnc", "3d_printer": "3dprinter", "welding": "welding", "painting": "painting",
               "test_rig": "testing"}
OTHER_TOPIC = "telemetry"
STATUS = {"running": "running", "idle": "idle", "off_shift": "idle", "maintenance": "maintenance",
          "blocked": "faulted"}
QUALITY = {None: "good", "pass": "good", "rework": "rework", "scrap": "scrap"}
ASSEMBLY_PREFIX = "A"
PAINTED_PART = "Frame"
HEADERS = (("content_type", CONTENT_TYPE),)

Telemetry = CycleTelemetry | MachineSample
# (body, record, cycle number of its part or None, cycle_time, quality): adds a kind's own fields
KindFields = Callable[[dict[str, Any], Telemetry, "int | None", "float | None", "str | None"], None]
CACHED_LOTS = 4096  # names chosen per lot that a Choice keeps (a sample repeats its lot's for an hour)


def initials(name: str) -> str:
    """The id prefix of a part type: its capitals (``HullPanel`` -> ``HP``), else its first two
    characters in capitals."""
    return "".join(c for c in name if c.isupper()) or name[:2].upper()


class Choice:
    """One of ``options`` for a key (a lot code, a customer), the same for the same run seed, purpose
    and key: a name the format gives to what the plant works on, not a fresh draw per message."""

    __slots__ = ("cache", "options", "salt")

    def __init__(self, seed: int, purpose: str, options: Sequence[str]) -> None:
        self.salt = zlib.crc32(f"{seed}\x1f{purpose}\x1f".encode())  # (the CRC of the key continues it)
        self.options = tuple(options)
        self.cache: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        chosen = self.cache.get(key)
        if chosen is None:
            if len(self.cache) >= CACHED_LOTS:
                self.cache.clear()
            chosen = self.cache[key] = self.options[zlib.crc32(key.encode(), self.salt) % len(self.options)]
        return chosen


class SpaceshipFormat:
    name = "spaceship"

    def __init__(self, config: Config, seed: int, run_id: str = "", *, topic_template: str | None = None) -> None:
        options = config.formats.spaceship
        self.template = TopicTemplate(self.name, topic_template or MQTT_TOPIC_TEMPLATE, PLACEHOLDERS)
        self.prefix = topic_prefix(self.name, options.topic_prefix)
        self.times = Timestamps(config.simulation.start,
                                {name: loc.timezone for name, loc in config.locations.items()})
        self.event_id = EventIds(seed, run_id)
        self.machines = MachineIndex(config)
        self._topics: dict[tuple[str, str], str] = {}
        self.product = Choice(seed, "product", list(options.products))
        self.unit_prefix = dict(options.products)
        self.cnc_part = Choice(seed, "cnc_part", options.cnc_part_types)
        self.printer_part = Choice(seed, "printer_part", options.printer_part_types)
        self.assembly = Choice(seed, "assembly", options.assembly_types)
        self.color = Choice(seed, "color", options.colors)
        self.destination = Choice(seed, "destination", options.destinations)
        self.carrier = Choice(seed, "carrier", options.carriers)
        self.initials = {part: initials(part) for part in (*options.cnc_part_types, *options.printer_part_types)}
        self._kind_fields: dict[str, KindFields] = {
            "cnc": self._cnc_fields, "3d_printer": self._printer_fields, "welding": self._welding_fields,
            "painting": self._painting_fields, "test_rig": self._test_rig_fields}

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            return self._business(record)
        return [self._telemetry(record)]

    # -- telemetry ------------------------------------------------------------------------------
    def _telemetry(self, r: Telemetry) -> WireMessage:
        info = self.machines.info(r.machine_id, r.location, r.machine_type)
        kind = info.model.kind
        counters = r.counters
        cycle = isinstance(r, CycleTelemetry)
        # the machine's cycle number of the message's part: the cycle that ended, or the one in progress
        number = None if counters is None or r.lot_code is None else counters.cycles + (0 if cycle else 1)
        body: dict[str, Any] = {
            "timestamp": self.times.utc(r.sim_time),
            "machine_id": r.machine_id,
            "station_id": info.station,
            "status": STATUS[r.state],
        }
        if isinstance(r, CycleTelemetry):
            self._kind_fields.get(kind, _other_fields)(body, r, number, wire_seconds(r.cycle_time_s),
                                                       QUALITY[r.test_outcome])
        else:
            self._kind_fields.get(kind, _other_fields)(body, r, number, None, None)
        body["off_shift"] = r.state == MachineState.OFF_SHIFT
        body["location"] = r.location
        body["machine_type"] = r.machine_type
        body["order_id"] = r.lot_code
        body["alarm"] = r.alarms or None
        body["anomaly"] = r.anomaly
        body.update(r.signals)
        if kind == "3d_printer":
            body.pop("progress_pct", None)  # it went out as ``progress``
        if counters is None:
            body["good_count"] = body["bad_count"] = body["oee"] = None
        else:
            body["good_count"] = counters.good_pieces
            body["bad_count"] = counters.bad_pieces
            body["oee"] = dict(zip(("availability", "performance", "quality", "oee"), oee_figures(counters),
                                   strict=True))
        topic = self._topic(KIND_TOPICS.get(kind, OTHER_TOPIC), r.location, r.machine_id, info.short,
                            r.machine_type)
        return WireMessage(topic, r.machine_id.encode(), HEADERS, orjson.dumps(body))

    # -- the fields of each machine kind -----------------------------------------------------------
    def _cnc_fields(self, body: dict[str, Any], r: Telemetry, number: int | None, cycle_time: float | None,
                    quality: str | None) -> None:
        if number is None or r.lot_code is None:
            body["part_type"] = body["part_id"] = None
        else:
            part = body["part_type"] = self.cnc_part(r.lot_code)
            body["part_id"] = f"{self.initials[part]}-{number}"
        body["cycle_time"] = cycle_time
        body["quality"] = quality

    def _printer_fields(self, body: dict[str, Any], r: Telemetry, number: int | None, cycle_time: float | None,
                        quality: str | None) -> None:
        if number is None or r.lot_code is None:
            body["part_type"] = body["part_id"] = None
            body["progress"] = 1.0 if cycle_time is not None else 0.0
        else:
            part = body["part_type"] = self.printer_part(r.lot_code)
            body["part_id"] = f"{self.initials[part]}-{number}"
            percent = r.signals.get("progress_pct")
            body["progress"] = 1.0 if cycle_time is not None else \
                round(percent / 100.0, 4) if isinstance(percent, int | float) else 0.0
        body["quality"] = quality
        body["cycle_time"] = cycle_time

    def _welding_fields(self, body: dict[str, Any], r: Telemetry, number: int | None, cycle_time: float | None,
                        quality: str | None) -> None:
        if number is None or r.lot_code is None:
            done = 0 if r.counters is None else r.counters.cycles  # an idle station shows its last assembly
            body["assembly_id"] = f"{ASSEMBLY_PREFIX}-{done}" if done else None
            body["assembly_type"] = None
        else:
            body["assembly_id"] = f"{ASSEMBLY_PREFIX}-{number}"
            body["assembly_type"] = self.assembly(r.lot_code)
        body["last_cycle_time"] = cycle_time
        body["quality"] = quality

    def _painting_fields(self, body: dict[str, Any], r: Telemetry, number: int | None, cycle_time: float | None,
                         quality: str | None) -> None:
        if number is None or r.lot_code is None:
            body["part_id"] = body["color"] = None
        else:
            body["part_id"] = f"{PAINTED_PART}-{number}"
            body["color"] = self.color(r.lot_code)
        body["cycle_time"] = cycle_time
        body["quality"] = quality

    def _test_rig_fields(self, body: dict[str, Any], r: Telemetry, number: int | None, cycle_time: float | None,
                         quality: str | None) -> None:
        if number is None or r.lot_code is None:
            body["target_id"] = body["target_type"] = None
        else:
            product = body["target_type"] = self.product(r.lot_code)
            body["target_id"] = f"{self.unit_prefix[product]}-{number}"
        if isinstance(r, CycleTelemetry):
            body["test_result"] = "pass" if r.test_outcome in (None, "pass") else "fail"
            body["issues_found"] = issues_found(r.signals)
        else:
            body["test_result"] = None
            body["issues_found"] = 0
        body["cycle_time"] = cycle_time
        body["quality"] = quality

    # -- orders and dispatch --------------------------------------------------------------------
    def _business(self, r: LotEvent) -> list[WireMessage]:
        code = r.lot_code
        if code is None:
            return []
        if r.event_type == "lot.received":
            body: dict[str, Any] = {
                "timestamp": self.times.utc(r.sim_time),
                "event_type": "order_placed",
                "order_id": code,
                "items": [{"product_type": self.product(code), "quantity": r.quantity}],
                "customer": r.customer,
                "quantity": r.quantity,
                "priority": PRIORITY_ENGLISH.get(r.priority or "", r.priority),
                "location": r.location,
                "status": "received",
            }
            topic = self._topic("orders", r.location)
        elif r.event_type == "lot.completed":
            body = {
                "timestamp": self.times.utc(r.sim_time),
                "event_type": "order_dispatched",
                "order_id": code,
                "destination": self.destination(r.customer or code),
                "carrier": self.carrier(code),
                "items": [{"product_type": self.product(code), "quantity": r.quantity}],
                "dispatch_id": self.event_id(r.location, r.seq),
                "customer": r.customer,
                "quantity": r.quantity,
                "priority": PRIORITY_ENGLISH.get(r.priority or "", r.priority),
                "location": r.location,
                "lead_time_s": None if r.lead_time_s is None else wire_seconds(r.lead_time_s),
                "rework_count": r.rework_count,
                "status": "dispatched",
            }
            topic = self._topic("dispatch", r.location)
        else:
            return []
        return [WireMessage(topic, code.encode(), HEADERS, orjson.dumps(body))]

    def _topic(self, kind: str, location: str, machine_id: str = "", short: str = "", machine_type: str = "") -> str:
        key = (kind, machine_id or location)
        topic = self._topics.get(key)
        if topic is None:
            topic = self.template.render({
                "prefix": self.prefix, "kind": kind, "location": level(location), "machine": level(short),
                "machine_id": level(machine_id), "machine_type": level(machine_type),
            })
            self._topics[key] = topic
        return topic


def _other_fields(body: dict[str, Any], r: Telemetry, number: int | None, cycle_time: float | None,
                  quality: str | None) -> None:
    body["cycle_time"] = cycle_time
    body["quality"] = quality


def issues_found(signals: dict[str, Any]) -> int:
    """How many of a test's measurements lie outside their acceptance bands."""
    checks = (
        ("test_pressure_bar", lambda v: not PRESSURE_BAND[0] <= v <= PRESSURE_BAND[1]),
        ("flow_rate_l_min", lambda v: not FLOW_BAND[0] <= v <= FLOW_BAND[1]),
        ("noise_db", lambda v: v > NOISE_MAX_DB),
    )
    count = 0
    for name, out_of_band in checks:
        value = signals.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and out_of_band(float(value)):
            count += 1
    return count
