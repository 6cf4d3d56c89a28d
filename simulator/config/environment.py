"""A profile's own environment variables: ``environment:`` maps each variable to the config keys it
sets, so that the variables of the system a profile replaces keep working.

    environment:
      MQTT_TOPIC_PREFIX: formats.spaceship.topic_prefix
      TELEMETRY_INTERVAL_MS: {key: telemetry.sample_interval_s, convert: milliseconds}
      AIO_ENABLED: [mqtt.targets.aio.enabled, {key: mqtt.targets.local.enabled, convert: not}]

A key path is dotted; in a list an element is picked by its ``name`` (``mqtt.targets.aio``), its
position (``route.0``) or ``*`` (every element).  Without ``convert`` the value is read as a YAML
scalar, as every variable is; a conversion reads the text itself (see :data:`CONVERSIONS`).  The
loader (:mod:`simulator.config.loader`) checks that every key path names a key of the file when
the file is loaded, whether the variable is set or not, and applies the variables that are set.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, Field

from simulator.config.common import Strict

VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f"}

Conversion = Literal["milliseconds", "hour", "not", "lowercase", "present"]


def _milliseconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"must be a number of milliseconds (got {raw!r})")
    return value / 1000


def _hour(raw: str) -> str:
    text = raw.strip()
    if text.isdigit() and int(text) <= 24:
        return f"{int(text) % 24:02d}:00"
    clock = _CLOCK.match(text)
    if clock is None:
        raise ValueError(f"must be a whole hour from 0 to 24 or a local time HH:MM (got {raw!r})")
    return f"{int(clock[1]):02d}:{clock[2]}"


def _not(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return False
    if word in _FALSE:
        return True
    raise ValueError(f"must be true or false (got {raw!r})")


def _lowercase(raw: str) -> str:
    return raw.strip().lower()


def _present(raw: str) -> bool:
    return bool(raw.strip())


# convert: name -> what it does with the variable's text (a ValueError says what is allowed)
CONVERSIONS: Mapping[str, Callable[[str], Any]] = {
    "milliseconds": _milliseconds,  # a number of milliseconds -> seconds (TELEMETRY_INTERVAL_MS=2000 -> 2.0)
    "hour": _hour,  # a whole hour -> "HH:00" (SHIFT_1_START=6 -> "06:00"); 24 is midnight; HH:MM as it is
    "not": _not,  # a boolean, negated (switch one target on and another off with one variable)
    "lowercase": _lowercase,  # K8S-SAT -> k8s-sat
    "present": _present,  # any text -> true, empty -> false (a URL given switches its sink on)
}


class AliasTarget(Strict):
    """One config key a variable sets, and how its text becomes the key's value."""

    key: Annotated[str, Field(min_length=1, max_length=500)]
    convert: Conversion | None = None


def _targets(value: Any) -> Any:
    """``key``, ``{key, convert}`` or a list of them -> a list of ``{key, convert}``."""
    items = value if isinstance(value, list | tuple) else [value]
    return [{"key": item} if isinstance(item, str) else item for item in items]


Targets = Annotated[tuple[AliasTarget, ...], BeforeValidator(_targets), Field(min_length=1)]
Variable = Annotated[str, Field(pattern=VARIABLE.pattern, max_length=200)]
EnvironmentAliases = dict[Variable, Targets]


def convert(conversion: str | None, raw: str, scalar: Callable[[str], Any]) -> Any:
    """The value a variable's text ``raw`` gives its key (``scalar`` reads it without a conversion)."""
    return scalar(raw) if conversion is None else CONVERSIONS[conversion](raw)


# --- do the key paths name keys of the config? --------------------------------------------------------
def unknown_key(root: type[BaseModel], data: Any, key_path: str) -> str | None:
    """Why ``key_path`` names no key of the config ``data`` (validated by ``root``), or None when it
    does.  Fields must exist in the schema; map entries (locations, machine types, calendars) and
    list elements must exist in ``data``, since a variable that sets a misspelt one would create it."""
    annotation: Any = root
    node: Any = data
    walked: list[str] = []
    for part in key_path.split("."):
        where = ".".join(walked) or "the top level"
        annotation = _unwrap(annotation)
        models = _models(annotation)
        if models:
            fields = [m.model_fields[part] for m in models if part in m.model_fields]
            if not fields:
                allowed = sorted({name for m in models for name in m.model_fields})
                return f"{where} has no key {part!r}; allowed: {', '.join(allowed)}"
            annotation = fields[0].annotation
            node = node.get(part) if isinstance(node, dict) else None
        elif get_origin(annotation) in (dict, Mapping):
            entries = node if isinstance(node, dict) else {}
            key = next((k for k in entries if isinstance(k, str) and k.casefold() == part.casefold()), None)
            if key is None:
                return f"{where} has no entry {part!r}; it has: {', '.join(map(str, entries)) or 'none'}"
            annotation, node = get_args(annotation)[1], entries[key]
        elif get_origin(annotation) in (tuple, list, Sequence):
            elements = node if isinstance(node, list) else []
            chosen = _element(elements, part)
            if isinstance(chosen, str):
                return f"{where} {chosen}"
            annotation, node = get_args(annotation)[0], chosen
        else:
            return f"{where} is a single value; it has no key {part!r}"
        walked.append(part)
    return None


def _element(elements: list[Any], part: str) -> Any:
    """The element ``part`` picks (the first one for ``*``), or what is wrong as text."""
    if not elements:
        return "is an empty list"
    if part == "*":
        return elements[0]
    if part.isdigit():
        if int(part) < len(elements):
            return elements[int(part)]
        return f"has {len(elements)} element{'' if len(elements) == 1 else 's'}; no [{part}]"
    named = next((e for e in elements if isinstance(e, dict) and str(e.get("name", "")).casefold() == part.casefold()),
                 None)
    if named is None:
        names = [str(e["name"]) for e in elements if isinstance(e, dict) and "name" in e]
        return f"has no element named {part!r}; names: {', '.join(names) or 'none'}"
    return named


def _unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] -> X; Optional[X] -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The model classes ``annotation`` is (one) or may be (a union's members)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _models(_unwrap(a))]
    return []
