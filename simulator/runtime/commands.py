"""Runtime commands: one JSON schema and one processor for every entrance (HTTP, MQTT command topic).

A command is a JSON object::

    {"command": "block", "machine_id": "Italia-fresa_cnc-01", "reason": "jam", "duration_s": 600}
    {"command": "repair", "machine_id": "Italia-fresa_cnc-01"}
    {"command": "anomaly", "machine_id": "Vietnam-tornio-02", "type": "bearing_fault", "severity": 1.5,
     "duration_s": 900}
    {"command": "clear_anomaly", "machine_id": "Vietnam-tornio-02"}
    {"command": "pause"}    {"command": "resume"}    {"command": "speed", "speed": 3600}  ("max" too)
    {"cmd": "bearing_fault", "value": true}     (the plant-wide switch; also "energy_spike";
                                                 optional machine_id, severity, duration_s)

``cmd`` is accepted for ``command``, ``anomaly_type`` for ``type`` and ``duration_seconds`` for
``duration_s``.  Optional fields: ``reason`` (default "manual"), ``duration_s`` (default: until
repaired or cleared), ``severity`` (default 1); ``clear_anomaly`` takes an optional ``type`` (clear
only that one).  Unknown fields are rejected, so a typo does not pass unnoticed.

Bounds (:mod:`simulator.limits`): ``duration_s`` more than 0 and at most ten years of simulated
seconds; ``severity`` more than 0 and at most 5; ``speed`` "max" or 0.001..1,000,000; text fields
(``machine_id``, ``reason``, ``type``) 1..200 characters without control characters (ANSI escapes
and the like are refused, not passed on to logs and telemetry).

:class:`CommandProcessor` validates a command (raw bytes or an already decoded mapping), applies it
between two steps of the model through the driver, counts it and returns a small JSON-able result.
A malformed or inapplicable command raises :class:`CommandRejected` (``reason`` code, ``detail``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from simulator.config_schema import parse_speed
from simulator.errors import CommandRejected
from simulator.limits import MAX_DURATION_S, MAX_SEVERITY, MAX_TEXT_CHARS, control_characters
from simulator.model import control, inputs
from simulator.runtime.driver import Driver
from simulator.runtime.gate import InputGate, JournalRefused
from simulator.runtime.metrics import IoMetrics
from simulator.runtime.waits import wait_for

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_COMMAND_BYTES = 65_536
JSON_WHITESPACE = b" \t\n\r"  # what JSON allows around a value (bytes.strip() takes more)
PLANT_WIDE = control.PLANT_WIDE_ANOMALIES
# command -> (required fields, optional fields)
FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "block": (frozenset({"machine_id"}), frozenset({"reason", "duration_s"})),
    "repair": (frozenset({"machine_id"}), frozenset()),
    "anomaly": (frozenset({"machine_id", "type"}), frozenset({"severity", "duration_s"})),
    "clear_anomaly": (frozenset({"machine_id"}), frozenset({"type"})),
    "pause": (frozenset(), frozenset()),
    "resume": (frozenset(), frozenset()),
    "speed": (frozenset({"speed"}), frozenset()),
    **{name: (frozenset({"value"}), frozenset({"machine_id", "severity", "duration_s"})) for name in PLANT_WIDE},
}
COMMANDS = tuple(FIELDS)
ALIASES = {"cmd": "command", "anomaly_type": "type", "duration_seconds": "duration_s"}


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command."""

    name: str  # one of COMMANDS
    machine_id: str | None = None
    reason: str = "manual"
    duration_s: float | None = None
    anomaly: str | None = None  # "anomaly": the type to inject; "clear_anomaly": only this type
    severity: float = 1.0
    speed: float | None = None  # "speed": simulated seconds per wall second; None = as fast as possible
    value: bool = True  # the plant-wide switch: on or off


def decode(payload: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> dict[str, Any]:
    """The command object of ``payload`` (JSON bytes or text, or a decoded mapping)."""
    if isinstance(payload, Mapping):
        return dict(payload)
    raw = payload.encode() if isinstance(payload, str) else bytes(payload)
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandRejected("oversized", f"a command has at most {MAX_COMMAND_BYTES} bytes (got {len(raw)})")
    if not raw.strip(JSON_WHITESPACE):
        raise CommandRejected("empty", "the command is empty")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandRejected("not_json", f"the command is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CommandRejected("not_object", f"a command is a JSON object, not {type(data).__name__}")
    return data


def command_name(data: Mapping[str, Any]) -> str:
    """The command's name (``command`` or ``cmd``), checked against :data:`COMMANDS`."""
    given = [data[key] for key in ("command", "cmd") if key in data]
    if not given:
        raise CommandRejected("missing_field", f"a command needs 'command' (one of {', '.join(COMMANDS)})")
    bad = [name for name in given if not isinstance(name, str) or name not in FIELDS]
    if bad:
        raise CommandRejected("unknown_command", f"unknown command {_shown(bad[0])}; known: {', '.join(COMMANDS)}")
    if len(set(given)) > 1:
        raise CommandRejected("invalid_field", "'command' and 'cmd' name different commands")
    name: str = given[0]
    return name


def parse_command(payload: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Command:
    """Validate ``payload`` into a :class:`Command`; raises CommandRejected."""
    data = decode(payload)
    name = command_name(data)
    fields: dict[str, Any] = {}
    for key, value in data.items():
        canonical = ALIASES.get(key, key)
        if canonical == "command":
            continue
        if canonical in fields:
            raise CommandRejected("invalid_field", f"{canonical!r} is given twice (as {key!r} too)")
        fields[canonical] = value
    required, optional = FIELDS[name]
    unknown = sorted(set(fields) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional)) or "none"
        raise CommandRejected("unknown_field", f"{name} takes no {', '.join(map(repr, unknown))}; fields: {allowed}")
    missing = sorted(key for key in required if fields.get(key) is None)  # null is no value
    if missing:
        raise CommandRejected("missing_field", f"{name} needs {', '.join(map(repr, missing))}")
    severity = _number(fields, "severity")
    if severity is not None and not 0 < severity <= MAX_SEVERITY:
        raise CommandRejected("invalid_severity", f"'severity' must be more than 0 and at most {MAX_SEVERITY:g} "
                                                  f"(got {severity!r})")
    duration_s = _number(fields, "duration_s")
    if duration_s is not None and not 0 < duration_s <= MAX_DURATION_S:
        raise CommandRejected("invalid_duration", f"'duration_s' must be more than 0 and at most {MAX_DURATION_S:.0f} "
                                                  f"simulated seconds (ten years; got {duration_s!r})")
    return Command(
        name=name,
        machine_id=_text(fields, "machine_id"),
        reason=_text(fields, "reason") or "manual",
        duration_s=duration_s,
        anomaly=_text(fields, "type") or (name if name in PLANT_WIDE else None),
        severity=1.0 if severity is None else severity,
        speed=_speed(fields),
        value=_flag(fields, "value"),
    )


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    """A text field: 1..MAX_TEXT_CHARS characters, none of them a control character (they would
    reach logs, telemetry and terminals as they are)."""
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_CHARS:
        raise CommandRejected("invalid_field",
                              f"{key!r} must be a non-empty string of at most {MAX_TEXT_CHARS} characters")
    controls = control_characters(value)
    if controls:
        raise CommandRejected("invalid_field", f"{key!r} must not contain control characters "
                                               f"(found {', '.join(sorted(set(controls))[:5])})")
    return value


def _number(fields: Mapping[str, Any], key: str) -> float | None:
    value = fields.get(key)
    if value is None:
        return None
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer beyond any float
            number = float(value)
    if not math.isfinite(number):
        raise CommandRejected("invalid_field", f"{key!r} must be a finite number (got {_shown(value)})")
    return number


def _shown(value: Any) -> str:
    """``value`` for a message: its repr, cut to 60 characters."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "a huge integer"
    return text if len(text) <= 60 else text[:57] + "..."


def _speed(fields: Mapping[str, Any]) -> float | None:
    if "speed" not in fields:
        return None
    try:
        return parse_speed(fields["speed"])
    except ValueError as exc:
        raise CommandRejected("invalid_field", f"'speed' {exc}") from exc


def _flag(fields: Mapping[str, Any], key: str) -> bool:
    value = fields.get(key, True)
    if not isinstance(value, bool):
        raise CommandRejected("invalid_field", f"{key!r} must be true or false (got {value!r})")
    return value


class CommandProcessor:
    """Applies commands: block, repair and anomalies as model inputs through ``inputs`` (default:
    an input gate on ``driver``), pause, resume and speed on the ``driver`` itself; one per service,
    shared by the entrances (``source`` names the entrance in counters and logs)."""

    def __init__(self, driver: Driver, metrics: IoMetrics | None = None, *, timeout_s: float = 10.0,
                 inputs: InputGate | None = None, refusal: Callable[[bool], str | None] | None = None) -> None:
        """``refusal(is_input)``: why the service takes no command (or no model input) now, or None."""
        self.driver = driver
        self.inputs = inputs or InputGate(driver)
        self.refusal = refusal
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def execute(self, payload: bytes | bytearray | memoryview | str | Mapping[str, Any],
                      source: str = "mqtt") -> dict[str, Any]:
        """Validate and apply ``payload``; returns the result, raises CommandRejected."""
        name = "invalid"  # the counter's label while the command's name is unknown
        try:
            data = decode(payload)
            name = command_name(data)
            command = parse_command(data)
            result = {"command": command.name, **await self.apply(command)}
        except CommandRejected as exc:
            self.rejected(source, name, exc)
            raise
        self._count(source, name, "accepted")
        log.info("%s command %s applied: %s", source, name, result)
        return result

    def rejected(self, source: str, name: str, exc: CommandRejected) -> None:
        """Count and log a rejected command (also for an entrance that rejects it before ``execute``)."""
        self._count(source, name, "rejected")
        log.warning("%s command %s rejected: %s (%s)", source, name, exc.reason, exc.detail)

    async def apply(self, command: Command) -> dict[str, Any]:
        """Apply a validated command."""
        driver = self.driver
        name, machine_id = command.name, command.machine_id
        why = self.refusal(name not in ("pause", "resume", "speed")) if self.refusal is not None else None
        if why is not None:
            raise CommandRejected("unavailable", why)
        if name == "pause":
            driver.pause()
            return {"paused": True, "sim_time_s": round(driver.sim.now, 3)}
        if name == "resume":
            driver.resume()
            return {"paused": False, "held_by": sorted(driver.held), "sim_time_s": round(driver.sim.now, 3)}
        if name == "speed":
            driver.set_speed(command.speed)
            return {"speed": "max" if command.speed is None else command.speed}
        if name in PLANT_WIDE:
            return await self._plant_wide(command)
        assert machine_id is not None
        if name == "block":
            return await self._one(inputs.Block(machine_id, command.reason, command.duration_s))
        if name == "repair":
            return await self._one(inputs.Repair(machine_id))
        if name == "anomaly":
            assert command.anomaly is not None
            return await self._one(inputs.SetAnomaly(machine_id, command.anomaly, command.severity,
                                                     command.duration_s))
        return await self._one(inputs.ClearAnomaly(machine_id, command.anomaly))

    async def _plant_wide(self, command: Command) -> dict[str, Any]:
        """The plant-wide switch: one input per plant, or the one machine's anomaly input."""
        assert command.anomaly is not None
        anomaly, on, machine_id = command.anomaly, command.value, command.machine_id
        if anomaly not in PLANT_WIDE:
            raise CommandRejected("unknown_anomaly", f"plant-wide anomalies are {', '.join(PLANT_WIDE)} "
                                                     f"(got {anomaly!r})")
        changed: list[str] = []
        if machine_id is not None:
            item: inputs.Input = (inputs.SetAnomaly(machine_id, anomaly, command.severity, command.duration_s) if on
                                  else inputs.ClearAnomaly(machine_id, anomaly))
            result = await self._one(item)
            if on or result["cleared"] is not None:
                changed.append(machine_id)
        else:
            for result in await self._all([inputs.PlantAnomaly(plant, anomaly, on, command.severity,
                                                               command.duration_s)
                                           for plant in self.inputs.plants]):
                changed += result["machines"]
        return {"anomaly": anomaly, "value": on, "machines": sorted(changed)}

    async def _one(self, item: inputs.Input) -> dict[str, Any]:
        (result,) = await self._all([item])
        return result

    async def _all(self, items: list[inputs.Input]) -> list[dict[str, Any]]:
        """Apply ``items`` between two steps of the model; the first refusal is raised (the items
        of one command belong together: all apply, or the first that cannot says why)."""
        try:
            results = await wait_for(self.inputs.submit(items), self.timeout_s)
        except TimeoutError as exc:
            raise CommandRejected("unavailable", f"the simulation did not take the command within "
                                                 f"{self.timeout_s:g} s (is it stopping?)") from exc
        views: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, JournalRefused):
                raise CommandRejected("unavailable", str(result))
            if isinstance(result, Exception):
                raise result
            assert isinstance(result, dict)
            views.append(result)
        return views

    def _count(self, source: str, name: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.commands.labels(source, name, outcome).inc()
