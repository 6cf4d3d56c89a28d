"""The runtime commands' schema, shared by every entrance (HTTP, MQTT command topic) and the API description.

A command is a JSON object::

    {"command": "block", "machine_id": "Italia-fresa_cnc-01", "reason": "jam", "duration_s": 600}
    {"command": "repair", "machine_id": "Italia-fresa_cnc-01"}
    {"command": "anomaly", "machine_id": "Vietnam-tornio-02", "type": "bearing_fault", "severity": 1.5,
     "duration_s": 900}
    {"command": "clear_anomaly", "machine_id": "Vietnam-tornio-02"}
    {"command": "pause"}    {"command": "resume"}    {"command": "speed", "speed": 3600}  ("max" too)
    {"cmd": "bearing_fault", "value": true}     (the plant-wide switch; also "energy_spike";
                                                 optional machine_id, severity, duration_s)
    {"cmd": "network_outage", "value": true, "target": "cloud", "duration_s": 30}
                                                (a target's link down: records wait, then backfill;
                                                 optional target (default: every uplink target) and
                                                 duration_s in wall seconds)
    {"command": "delivery_faults", "target": "cloud", "duplicate": 0.01, "delay": {"fraction": 0.05}}
                                                (a target's delivery faults, replaced as a whole;
                                                 the fields of DeliveryFaults; none: all off)

``cmd`` is accepted for ``command``, ``anomaly_type`` for ``type`` and ``duration_seconds`` for
``duration_s``.  Optional fields: ``reason`` (default "manual"), ``duration_s`` (default: until
repaired or cleared), ``severity`` (default 1); ``clear_anomaly`` takes an optional ``type`` (clear
only that one).  Unknown fields are rejected, so a typo does not pass unnoticed.

Bounds (:mod:`simulator.limits`): ``duration_s`` more than 0 and at most ten years of simulated
seconds; ``severity`` more than 0 and at most 5; ``speed`` "max" or 0.001..1,000,000; text fields
(``machine_id``, ``reason``, ``type``) 1..200 characters without control characters (ANSI escapes
and the like are refused, not passed on to logs and telemetry).

:func:`parse_command` validates a command (raw bytes or an already decoded mapping) into a
:class:`Command`; :class:`simulator.runtime.commands.CommandProcessor` applies it (the commands of
:data:`DELIVERY_COMMANDS`: :class:`simulator.programs.delivery_commands.ServiceCommands`).  A
malformed command raises :class:`CommandRejected` (``reason`` code, ``detail``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from simulator.config.delivery import DeliveryFaults
from simulator.config.plant import parse_speed
from simulator.errors import CommandRejected
from simulator.limits import MAX_DURATION_S, MAX_SEVERITY, MAX_TEXT_CHARS, control_characters
from simulator.model import control

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
    "network_outage": (frozenset({"value"}), frozenset({"target", "duration_s"})),
    "delivery_faults": (frozenset(), frozenset({"target", *DeliveryFaults.model_fields})),
}
# Commands about the delivery to the MQTT targets and HTTP sinks, not about the model: applied by the
# service's targets (simulator.programs.delivery_commands), never journaled
DELIVERY_COMMANDS = frozenset({"network_outage", "delivery_faults"})
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
    target: str | None = None  # network_outage, delivery_faults: the MQTT target or HTTP sink (None: all)
    faults: DeliveryFaults | None = None  # delivery_faults


def decode_command(payload: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> dict[str, Any]:
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
    data = decode_command(payload)
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
        target=_text(fields, "target"),
        faults=_faults(fields) if name == "delivery_faults" else None,
    )


def _faults(fields: Mapping[str, Any]) -> DeliveryFaults:
    """The delivery faults a ``delivery_faults`` command sets (validated as the config's ``faults``)."""
    try:
        return DeliveryFaults.model_validate({k: v for k, v in fields.items() if k != "target" and v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'faults'}: {e['msg']}" for e in exc.errors()[:5])
        raise CommandRejected("invalid_field", problems) from exc


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
        raise CommandRejected("invalid_field", f"{key!r} must be true or false (got {_shown(value)})")
    return value
