"""What the wire formats share: topic templates, the machine index, signal roles, OEE figures,
wire-precision seconds and the machine state an event leaves behind."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

import machines
from machines.base import MachineState, MachineType
from simulator.config.schema import Config
from simulator.model.records import LotEvent, MachineCounters

CONTENT_TYPE = b"application/json"
_TOPIC_FORBIDDEN = ("+", "#", "\x00")


# --- topic templates ---------------------------------------------------------------------------
class TopicTemplate:
    """A topic with named placeholders, validated once; rendered with one value per placeholder."""

    __slots__ = ("fields", "text")

    def __init__(self, format_name: str, text: str, allowed: tuple[str, ...]) -> None:
        allowed_text = ", ".join(f"{{{a}}}" for a in allowed)
        where = f"topic template {text!r} of format {format_name!r}"
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc} (use placeholders such as {allowed_text})") from None
        fields: list[str] = []
        for literal, field, spec, conversion in parts:
            if any(c in literal for c in _TOPIC_FORBIDDEN):
                raise ValueError(f"{where}: a topic to publish to must not contain '+', '#' or NUL")
            if field is None:
                continue
            if field not in allowed or spec or conversion:
                shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                raise ValueError(f"{where}: unknown placeholder {shown}; allowed: {allowed_text}")
            fields.append(field)
        if not "".join(p[0] for p in parts).strip("/") and not fields:
            raise ValueError(f"{where}: the topic is empty")
        self.text = text
        self.fields = frozenset(fields)

    def render(self, values: Mapping[str, str]) -> str:
        """The topic for ``values`` (a value for every allowed placeholder); empty levels dropped."""
        topic = self.text.format_map(values)
        if "//" in topic or topic[:1] == "/" or topic[-1:] == "/":
            topic = "/".join(part for part in topic.split("/") if part)
        return topic


def level(text: str) -> str:
    """``text`` made safe as one topic level (no separators or wildcards)."""
    return text.replace("/", "_").replace("+", "_").replace("#", "_")


def topic_prefix(format_name: str, prefix: str) -> str:
    if any(c in prefix for c in _TOPIC_FORBIDDEN):
        raise ValueError(f"topic prefix {prefix!r} of format {format_name!r} must not contain '+', '#' or NUL")
    return prefix.strip("/")


# --- machines ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MachineInfo:
    machine_id: str
    location: str
    machine_type: str  # the config's type name (e.g. ``fresa_cnc``)
    model: MachineType  # its signal model; ``model.kind`` is the registry kind (e.g. ``milling``)
    short: str  # the id without its location prefix (e.g. ``fresa_cnc-02``)
    continuous: bool  # a continuous-duty utility (runs whenever its shift allows, works no lots)
    station: str  # the station (line, cell) it stands in: ``machine_types.<type>.station_id_template``


class MachineIndex:
    """Every machine of the config by id (``config.machine_slots``); a machine the config does not
    know (a bridge reading another run) is taken for one of the default ids,
    ``{location}-{machine_type}-{nn}``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.models = {mtype: machines.get(config.model_of(mtype))
                       for loc in config.locations.values() for mtype in loc.machines}
        self._info: dict[str, MachineInfo] = {}
        for slot in config.machine_slots:
            self._info[slot.id] = self._new(slot.id, slot.location, slot.machine_type, slot.station)

    def all(self) -> list[MachineInfo]:
        """Every machine of the config, location by location."""
        return list(self._info.values())

    def info(self, machine_id: str, location: str, machine_type: str | None = None) -> MachineInfo:
        known = self._info.get(machine_id)
        if known is not None:
            return known
        info = self._info[machine_id] = self._new(machine_id, location, machine_type, None)
        return info

    def _new(self, machine_id: str, location: str, machine_type: str | None, station: str | None) -> MachineInfo:
        prefix = f"{location}-"
        short = machine_id[len(prefix):] if machine_id.startswith(prefix) else machine_id
        mtype = machine_type or short.rpartition("-")[0]
        model = self.models.get(mtype)
        if model is None:
            try:
                model = machines.get(self.config.model_of(mtype))
            except KeyError:
                raise ValueError(f"machine {machine_id!r}: unknown machine type {mtype!r} (not in the config)") \
                    from None
        settings = self.config.machine_types.get(mtype)
        return MachineInfo(machine_id, location, mtype, model, short,
                           settings is not None and settings.duty == "continuous",
                           station if station is not None else f"{location}-{mtype}")


@dataclass(frozen=True, slots=True)
class SignalRoles:
    """Which of a machine type's signals plays which environmental role (None: it has none)."""

    temperature: str | None  # the main temperature: the type's first ``*_temp_c`` signal
    pressure: str | None
    humidity: str | None
    vibration: str | None
    outdoor: str | None


def signal_roles(model: MachineType) -> SignalRoles:
    names = model.signal_names

    def first(test: str, *, suffix: bool = False) -> str | None:
        return next((n for n in names if (n.endswith(test) if suffix else n.startswith(test))
                     and not n.startswith("outdoor")), None)

    return SignalRoles(
        temperature=first("_temp_c", suffix=True),
        pressure=first("_bar", suffix=True),
        humidity=first("humidity"),
        vibration=first("vibration"),
        outdoor="outdoor_temp_c" if "outdoor_temp_c" in names else None,
    )


def oee_figures(counters: MachineCounters) -> tuple[float, float, float, float]:
    """(availability, performance, quality, oee) of ``counters``, as ratios to 4 decimals."""
    a, p, q = counters.availability, counters.performance, counters.quality
    return round(a, 4), round(p, 4), round(q, 4), round(a * p * q, 4)  # a * p * q is MachineCounters.oee


def wire_seconds(value: float) -> float:
    """A duration as the formats write it: seconds to the millisecond (like the timestamps)."""
    return round(float(value), 3)


# The state a machine is left in by an event about it.  After a cycle, a repair without a lot or
# maintenance a route machine goes back to its pool: ``idle`` unless a queued lot takes it at once
# (then a ``stage.started`` event follows at the same instant) or planned maintenance starts (then
# ``maintenance.started`` follows); a continuous-duty utility runs again.  (A machine sent off
# shift by its pool raises no event; samples show it.)
_EVENT_STATES = {
    "stage.started": MachineState.RUNNING,
    "stage.completed": MachineState.IDLE,
    "machine.blocked": MachineState.BLOCKED,
    "maintenance.started": MachineState.MAINTENANCE,
    "maintenance.completed": MachineState.IDLE,
}
MACHINE_EVENTS = frozenset({*_EVENT_STATES, "machine.repaired"})


def state_after(event: LotEvent, machine: MachineInfo) -> MachineState | None:
    """The state ``event`` leaves ``machine`` (the event's machine) in; None: not a machine event."""
    kind = event.event_type
    if kind == "machine.repaired":
        return MachineState.RUNNING if event.lot_code is not None or machine.continuous else MachineState.IDLE
    if kind == "maintenance.completed" and machine.continuous:
        return MachineState.RUNNING
    return _EVENT_STATES.get(kind)
