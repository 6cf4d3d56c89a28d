"""Load the configuration once: YAML file + environment variables + command-line overrides,
validated.

Precedence, the last one wins: the file < the global variables (:data:`ENV_OVERRIDES`) < the
profile's own variables (its ``environment:`` block, see :mod:`simulator.config.environment`) <
``FACTORYSIM__SECTION__KEY`` < command-line flags.  A profile's variable is more specific than a
global one (``MQTT_HOST`` sets one target, ``MQTT_BROKER`` every target); ``FACTORYSIM__…`` names
the key itself and so wins over any alias.

Every problem is reported with where the bad value came from (see :mod:`simulator.config.origins`):
``config.yaml line 12: <key.path>: <what is wrong> (got <value>)``, ``FACTORYSIM_SPEED=abc
(simulation.speed): …`` or ``--speed abc (simulation.speed): …``; the CLI prints them and exits with
code 2.  See :data:`ENV_OVERRIDES` and the README's config reference.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from simulator.config import origins as config_origins
from simulator.config.common import CrossFieldError
from simulator.config.environment import EnvironmentAliases, convert, unknown_key
from simulator.config.origins import KeyPath, Origins, Override
from simulator.config.plant import DISTRIBUTIONS, Distribution
from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.formats.registry import check_topic_template
from simulator.formats.uns import machine_lines

DEFAULT_PATH = "config.yaml"

# Environment variable -> config key path.  Values are parsed as YAML scalars.
ENV_OVERRIDES: Mapping[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
    "FACTORYSIM_EMBEDDED_DATA_DIR": "kafka.embedded.data_dir",
    "HEALTH_CHECK_PORT": "http.port",
    "FACTORYSIM_HTTP_HOST": "http.host",
    "FACTORYSIM_SPEED": "simulation.speed",
    "FACTORYSIM_SEED": "simulation.seed",
    "FACTORYSIM_START": "simulation.start",
    "FACTORYSIM_INSTANCE_ID": "kafka.scale_out.instance_id",
    "MQTT_BROKER": "mqtt.targets.*.host",  # every MQTT target (the usual case: one)
    "MQTT_PORT": "mqtt.targets.*.port",
}
# Any other key: FACTORYSIM__SECTION__KEY=value (double underscores between path parts).
GENERIC_PREFIX = "FACTORYSIM__"
# Read before the file, so no profile can give them another meaning.
CONFIG_PATH_VARIABLES = ("CONFIG_PATH", "MESSAGE_CONFIG_PATH")
_ALIASES: TypeAdapter[EnvironmentAliases] = TypeAdapter(EnvironmentAliases)

__all__ = ["CONFIG_PATH_VARIABLES", "DEFAULT_PATH", "ENV_OVERRIDES", "GENERIC_PREFIX", "config_path", "load",
           "parse"]

# Explicit overrides: key path -> value (set by the program, no origin to report), or Override
# objects that carry their origin (a command-line flag).
Overrides = Mapping[str, Any] | Iterable[Override]


def config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--config`` wins, then ``CONFIG_PATH``, then ``MESSAGE_CONFIG_PATH`` (the SpaceShip
    simulator's name for it), then ./config.yaml."""
    env = os.environ if environ is None else environ
    return Path(explicit or next((env[v] for v in CONFIG_PATH_VARIABLES if env.get(v)), DEFAULT_PATH))


def load(path: str | Path, environ: Mapping[str, str] | None = None, overrides: Overrides | None = None) -> Config:
    """Read, override and validate a config file; raise ConfigError naming every bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file ({exc.strerror or exc})"]) from exc
    try:
        data, origins = config_origins.load_yaml(text, path)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"])
    return parse(data, environ=os.environ if environ is None else environ, overrides=overrides, origins=origins)


def parse(data: dict[str, Any], environ: Mapping[str, str] | None = None, overrides: Overrides | None = None,
          origins: Origins | None = None) -> Config:
    """Validate a config mapping after applying environment and explicit overrides; ``origins``
    says where the mapping's values came from (:func:`load` passes the file's lines)."""
    data = _deep_copy(data)
    origins = origins.copy() if origins is not None else Origins()
    environ = environ or {}
    problems: list[str] = []
    aliases = _profile_aliases(data, origins, problems)
    if problems:
        raise ConfigError(problems)
    generic = _generic_overrides(environ, problems)
    for override in [*_global_overrides(environ), *_alias_overrides(aliases, environ, problems), *generic,
                     *_explicit(overrides)]:
        paths = _set_path(data, override.key_path, override.value)
        for path in paths:
            origins.set(path, override.origin)
        if not paths and override in generic and override.origin is not None:
            # a list element that does not exist (FACTORYSIM__MQTT__TARGETS__AOI__HOST): say so
            reason = unknown_key(Config, data, override.key_path) or "no such list element"
            problems.append(override.origin.describe(override.key_path, f"names no config key: {reason}"))
    if problems:
        raise ConfigError(problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_lines(origins, _describe(exc))) from exc
    _check_topic_templates(config, origins)
    _check_uns_lines(config, origins)
    config.remember_origins(origins)
    return config


def _lines(origins: Origins, problems: Iterable[tuple[str, str]]) -> list[str]:
    # pydantic may report a union member's errors several times; keep the first of each.
    return list(dict.fromkeys(origins.describe(key, message) for key, message in problems))


def _check_topic_templates(config: Config, origins: Origins) -> None:
    """MQTT topic templates need their format's placeholders (known only to the formats)."""
    problems = []
    for index, target in enumerate(config.mqtt.targets):
        if target.topic_template is not None:
            try:
                check_topic_template(target.format, target.topic_template)
            except ValueError as exc:
                problems.append(origins.describe(f"mqtt.targets.{target.name}.topic_template", str(exc),
                                                 located=f"mqtt.targets[{index}].topic_template"))
    if problems:
        raise ConfigError(problems)


def _check_uns_lines(config: Config, origins: Origins) -> None:
    """``formats.uns.lines`` must name the plant's machines (known only once the plant is)."""
    try:
        machine_lines(config)
    except ValueError as exc:
        raise ConfigError([origins.describe("formats.uns.lines", str(exc))]) from None


def _explicit(overrides: Overrides | None) -> list[Override]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [Override(key_path, value) for key_path, value in overrides.items()]
    return list(overrides)


def _global_overrides(environ: Mapping[str, str]) -> list[Override]:
    return [Override(key_path, _scalar(environ[var]), config_origins.env(var, environ[var]))
            for var, key_path in ENV_OVERRIDES.items() if var in environ]


def _generic_overrides(environ: Mapping[str, str], problems: list[str]) -> list[Override]:
    found: list[Override] = []
    for var, raw in environ.items():
        if var.startswith(GENERIC_PREFIX):
            parts = [p.lower() for p in var[len(GENERIC_PREFIX):].split("__") if p]
            if not parts:
                problems.append(f"{var}: environment override names no key (use FACTORYSIM__SECTION__KEY)")
                continue
            found.append(Override(".".join(parts), _scalar(raw), config_origins.env(var, raw)))
    return found


def _profile_aliases(data: dict[str, Any], origins: Origins, problems: list[str]) -> EnvironmentAliases:
    """The file's ``environment:`` block, checked: every variable has a name of its own and every key
    path names a key of the file (a problem names the variable where the file declares it)."""
    raw = data.get("environment")
    if raw is None:
        return {}
    try:
        aliases = _ALIASES.validate_python(raw)
    except ValidationError as exc:
        problems.extend(_lines(origins, [(_join("environment", _single_target(raw, key)), message)
                                         for key, message in _describe(exc)]))
        return {}
    for var, targets in aliases.items():
        where = f"environment.{var}"
        if var in ENV_OVERRIDES or var in CONFIG_PATH_VARIABLES or var.startswith(GENERIC_PREFIX):
            meaning = ENV_OVERRIDES.get(var, "the config file" if var in CONFIG_PATH_VARIABLES else "a key")
            problems.append(origins.describe(where, f"{var} already sets {meaning} in every config; a profile "
                                                    f"cannot give it another meaning"))
        for target in targets:
            reason = unknown_key(Config, data, target.key)
            if reason is not None:
                problems.append(origins.describe(where, f"{target.key} names no config key: {reason}"))
    return aliases


def _single_target(raw: Any, key: str) -> str:
    """``VAR[0].convert`` -> ``VAR.convert`` when the file gives VAR one target, not a list (the
    validator made a list of it): the error then finds the line of ``convert``."""
    var, bracket, rest = key.partition("[0]")
    if bracket and isinstance(raw, dict) and not isinstance(raw.get(var), list):
        return var + rest
    return key


def _alias_overrides(aliases: EnvironmentAliases, environ: Mapping[str, str], problems: list[str]) -> list[Override]:
    found: list[Override] = []
    for var, targets in aliases.items():
        if var not in environ:
            continue
        raw = environ[var]
        origin = config_origins.env(var, raw)
        refused: set[str | None] = set()  # a value one conversion refuses is reported once, at its first key
        for target in targets:
            try:
                value = convert(target.convert, raw, _scalar)
            except ValueError as exc:
                if target.convert not in refused:
                    problems.append(origin.describe(target.key, str(exc)))
                    refused.add(target.convert)
                continue
            found.append(Override(target.key, value, origin))
    return found


def _scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set_path(data: dict[str, Any] | list[Any], key_path: str, value: Any, at: KeyPath = ()) -> list[KeyPath]:
    """Set a dotted key; each part matches an existing key case-insensitively (so
    FACTORYSIM__LOCATIONS__VIETNAM__... reaches ``Vietnam``), else it is created.  In a list, a
    number picks an existing element (``mqtt.targets.0.host``), a name the element of that
    ``name`` (``mqtt.targets.aio.host``) and ``*`` every element.  Returns
    the paths whose whole content is now the override's (the key set, or the first one created)."""
    part, _, rest = key_path.partition(".")
    if isinstance(data, list):
        if part == "*":
            indices = list(range(len(data)))
        elif part.isdigit() and int(part) < len(data):
            indices = [int(part)]
        else:
            indices = [i for i, element in enumerate(data)
                       if isinstance(element, dict) and str(element.get("name", "")).casefold() == part.casefold()]
        if not indices:
            return []  # no such element: nothing to override
        return [path for i in indices if isinstance(data[i], dict | list) and rest
                for path in _set_path(data[i], rest, value, (*at, i))]
    key = _existing_key(data, part)
    here = (*at, key)
    if not rest:
        data[key] = value
        return [here]
    child = data.get(key)
    if isinstance(child, dict | list):
        return _set_path(child, rest, value, here)
    following = rest.partition(".")[0]
    if following == "*" or following.isdigit():
        return []  # a list element that does not exist: nothing to override
    data[key] = {}
    _set_path(data[key], rest, value, here)
    return [here]


def _existing_key(node: dict[str, Any], part: str) -> str:
    if part in node:
        return part
    folded = part.casefold()
    return next((k for k in node if isinstance(k, str) and k.casefold() == folded), part)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# --- error messages -------------------------------------------------------------------------
def _describe(exc: ValidationError) -> list[tuple[str, str]]:
    """(key path, what is wrong) per error."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        error = (err.get("ctx") or {}).get("error")
        loc = _loc_text(err["loc"])
        if isinstance(error, CrossFieldError):
            problems.extend((_join(loc, path), msg) for path, msg in error.problems)
            continue
        problems.append((loc, _message(err)))
    return problems


_FRIENDLY: Mapping[str, str] = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "datetime_parsing": "must be an ISO 8601 instant with a UTC offset, e.g. 2025-06-25T06:00:00Z",
    "datetime_from_date_parsing": "must be an ISO 8601 instant with a UTC offset, e.g. 2025-06-25T06:00:00Z",
    "datetime_type": "must be an ISO 8601 instant with a UTC offset, e.g. 2025-06-25T06:00:00Z",
    "string_pattern_mismatch": "must match the pattern {pattern}",
    "literal_error": "must be one of: {expected}",
}


def _message(err: Any) -> str:
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"][:-1])
        if not allowed:
            return "unknown key"
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"unknown distribution {got.get('distribution') if isinstance(got, dict) else got!r}; " \
               f"allowed: {', '.join(DISTRIBUTIONS)}"
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        msg = "must not be empty" if minimum == 1 else f"needs at least {minimum} entries"
    elif kind in _FRIENDLY:
        try:
            msg = _FRIENDLY[kind].format(**ctx)
        except (KeyError, IndexError):
            msg = str(err["msg"])
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
    if isinstance(got, dict | list | tuple) or repr(got) in msg:
        return msg
    return f"{msg} (got {got!r})"


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic's mark of a mapping's key (the key itself is the part before it)
        elif part in DISTRIBUTIONS or str(part).startswith(("function-", "literal[", "float", "int")):
            continue  # pydantic's union-member tags are not config keys
        else:
            out += f".{part}" if out else str(part)
    return out


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix else path


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at ``loc`` accepts, found by walking the schema."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            model = _inner(model)
            if isinstance(part, int):
                continue
        if part in DISTRIBUTIONS:
            model = _distribution_model(str(part))
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            model = _inner(model)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _inner(field.annotation)
    return sorted(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _distribution_model(tag: str) -> type[BaseModel]:
    union = get_args(Distribution)[0]
    members: tuple[type[BaseModel], ...] = get_args(union)
    return next(m for m in members if get_args(m.model_fields["distribution"].annotation) == (tag,))


def _inner(annotation: Any) -> Any:
    """Unwrap Optional/tuple/dict/Annotated to the model class inside, if there is one."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None) and a is not Ellipsis]
        metadata = getattr(annotation, "__origin__", None)
        if metadata is None and not args:
            return annotation
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
        annotation = args[-1] if args else metadata
    return annotation
