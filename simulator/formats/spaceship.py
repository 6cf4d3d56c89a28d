"""The ``spaceship`` MQTT format: the SpaceShip factory's topics and JSON fields.

Topics (default template ``{prefix}/{kind}``; ``prefix`` = ``formats.spaceship.topic_prefix``):
machine telemetry by machine kind -> ``cnc``, ``3dprinter`` (3d_printer), ``welding``,
``painting``, ``testing`` (test_rig), any other kind -> ``telemetry``; ``lot.received`` ->
``orders``; ``lot.completed`` -> ``dispatch``.  Other lot events, scrapped lots included, produce
nothing.  Placeholders: {prefix} {kind} {location} {machine}
(the id without the location) {machine_id} {machine_type}; order and dispatch messages have no
machine, so those levels drop out.

Telemetry (cycle records and samples), key = machine id:
``timestamp`` (UTC), ``machine_id``, ``station_id`` (the machine's pool, ``{location}-{type}``),
``status`` (running | idle | maintenance | faulted: a blocked machine is faulted; a machine off
shift is idle, with ``off_shift`` true), ``off_shift``, ``location``, ``machine_type``,
``order_id`` (the lot on the machine, or null), ``alarm`` (text or null), ``anomaly``, the
machine's signals under their own names (units in the names), ``good_count`` and ``bad_count``
(pieces) and ``oee`` {availability, performance, quality, oee} (ratios) from its counters.
Cycle records add ``cycle_time`` (seconds, blocked time included) and ``quality`` (good | rework |
scrap, from the test outcome; a stage without a test counts its pieces good).  3D printers add
``progress``: the fraction of the job done, 1.0 on a cycle record and null on samples (a sample
does not say how far its cycle is).  Testing rigs' cycle records add ``test_result`` (pass | fail)
and ``issues_found`` (test measurements outside their acceptance bands).

Orders (key = lot code): ``timestamp, order_id`` (the lot code) ``, customer, quantity, priority``
(high | normal | low) ``, location, status`` ("received").  Dispatch: ``timestamp, dispatch_id``
(the lot.completed event's id) ``, order_id, customer, quantity, priority, location, lead_time_s,
rework_count, status`` ("dispatched").
"""

from __future__ import annotations

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
HIDDEN_SIGNALS = frozenset({"progress_pct"})  # a printer's progress goes out as ``progress``
HEADERS = (("content_type", CONTENT_TYPE),)


class SpaceshipFormat:
    name = "spaceship"

    def __init__(self, config: Config, seed: int, run_id: str = "", *, topic_template: str | None = None) -> None:
        self.template = TopicTemplate(self.name, topic_template or MQTT_TOPIC_TEMPLATE, PLACEHOLDERS)
        self.prefix = topic_prefix(self.name, config.formats.spaceship.topic_prefix)
        self.times = Timestamps(config.simulation.start,
                                {name: loc.timezone for name, loc in config.locations.items()})
        self.event_id = EventIds(seed, run_id)
        self.machines = MachineIndex(config)
        self._topics: dict[tuple[str, str], str] = {}

    def encode(self, record: Record) -> list[WireMessage]:
        if isinstance(record, LotEvent):
            return self._business(record)
        return [self._telemetry(record)]

    # -- telemetry ------------------------------------------------------------------------------
    def _telemetry(self, r: CycleTelemetry | MachineSample) -> WireMessage:
        info = self.machines.info(r.machine_id, r.location, r.machine_type)
        kind = info.model.kind
        body: dict[str, Any] = {
            "timestamp": self.times.utc(r.sim_time),
            "machine_id": r.machine_id,
            "station_id": f"{r.location}-{r.machine_type}",
            "status": STATUS[r.state],
            "off_shift": r.state == MachineState.OFF_SHIFT,
            "location": r.location,
            "machine_type": r.machine_type,
            "order_id": r.lot_code,
            "alarm": r.alarms or None,
            "anomaly": r.anomaly,
        }
        for name, value in r.signals.items():
            if name not in HIDDEN_SIGNALS:
                body[name] = value
        if isinstance(r, CycleTelemetry):
            body["cycle_time"] = wire_seconds(r.cycle_time_s)
            body["quality"] = QUALITY[r.test_outcome]
            if kind == "test_rig":
                body["test_result"] = "pass" if r.test_outcome in (None, "pass") else "fail"
                body["issues_found"] = issues_found(r.signals)
        if kind == "3d_printer":  # a sample does not say how far the job is
            body["progress"] = 1.0 if isinstance(r, CycleTelemetry) else None
        counters = r.counters
        body["good_count"] = None if counters is None else counters.good_pieces
        body["bad_count"] = None if counters is None else counters.bad_pieces
        body["oee"] = None if counters is None else dict(
            zip(("availability", "performance", "quality", "oee"), oee_figures(counters), strict=True))
        topic = self._topic(KIND_TOPICS.get(kind, OTHER_TOPIC), r.location, r.machine_id, info.short,
                            r.machine_type)
        return WireMessage(topic, r.machine_id.encode(), HEADERS, orjson.dumps(body))

    # -- orders and dispatch --------------------------------------------------------------------
    def _business(self, r: LotEvent) -> list[WireMessage]:
        if r.lot_code is None:
            return []
        if r.event_type == "lot.received":
            body: dict[str, Any] = {
                "timestamp": self.times.utc(r.sim_time),
                "order_id": r.lot_code,
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
                "dispatch_id": self.event_id(r.location, r.seq),
                "order_id": r.lot_code,
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
        return [WireMessage(topic, r.lot_code.encode(), HEADERS, orjson.dumps(body))]

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
