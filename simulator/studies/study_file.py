"""The study file (YAML): a base config, scenarios as sets of overrides, how long and how often to
run each one, which KPIs to compare, and an optional what-if search.  README "Studies" documents
every key.

Loading checks everything that can be checked before a run, and reports every problem at once,
each naming the study file, its line, the scenario and the key:

    studies/x.yaml line 14 (scenario '4 lathes'): locations.Vietnam.machines.tornoi: names no config
    key: locations.Vietnam.machines has no entry 'tornoi'; it has: fresa_cnc, tornio, …; did you mean tornio?

Overrides are dotted key paths applied with the config loader's explicit overrides (the same
rules as ``FACTORYSIM__…``: each part matches an existing key case-insensitively, a list element
is picked by its name or position); the study file's line is their origin, so a bad value is
reported there.  Environment variables do not change a study: the study file and its base file
say everything (a study gives the same answer in any shell).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from simulator.config import origins as config_origins
from simulator.config.environment import unknown_key
from simulator.config.loader import parse
from simulator.config.origins import Origin, Origins, Override
from simulator.config.schema import Config
from simulator.durations import parse_duration
from simulator.errors import ConfigError
from simulator.studies.search import MAX_UTILIZATION, Target, parse_target

DEFAULT_KPIS = ("throughput_per_hour", "lead_time_s.mean", "lead_time_s.p95", "wip.mean")
DEFAULT_REPLICATIONS = 10


class InvalidStudy(ConfigError):
    """The study file cannot be run; one line per problem (exit code 2)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:
            Exception.__init__(self, f"invalid study: {problems[0]}")
        else:
            Exception.__init__(self, "invalid study:\n" + "\n".join(f"  {p}" for p in problems))


# --- the file's model ----------------------------------------------------------------------------
def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as 30d or 8h (got {value!r})")
    return parse_duration(value)


def _warm_up(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return _duration(value)


def _share(value: Any) -> Any:
    """``5%`` → 0.05; a number as it is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"must be a percentage such as 5% or a share such as 0.05 (got {value!r})") from None


def _target(text: str) -> str:
    parse_target(text)
    return text


Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
KeyPath = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^\S+$")]
PoolKey = Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+$")]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrecisionSpec(Closed):
    """Replicate until the 95 % half-width of ``kpi`` is within ``relative`` of its mean."""

    kpi: KeyPath
    relative: Annotated[float, BeforeValidator(_share), Field(gt=0, lt=1, allow_inf_nan=False)]
    max_replications: Annotated[int, Field(ge=2, le=10_000)] = 60


class ScenarioSpec(Closed):
    name: Name
    overrides: dict[KeyPath, Any] = Field(default_factory=dict)


class SearchSpec(Closed):
    scenario: Name | None = None  # default: the first scenario
    pools: Annotated[dict[PoolKey, tuple[Annotated[int, Field(ge=1, le=10_000)],
                                         Annotated[int, Field(ge=1, le=10_000)]]], Field(min_length=1)]
    targets: Annotated[list[Annotated[str, AfterValidator(_target)]], Field(min_length=1)]
    judge: Literal["confident", "mean"] = "confident"


class StudySpec(Closed):
    name: Name
    base: Name
    overrides: dict[KeyPath, Any] = Field(default_factory=dict)
    replications: Annotated[int, Field(ge=1, le=10_000)] | None = None
    precision: PrecisionSpec | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    until: Duration | None = None
    lots: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    warm_up: Annotated[Literal["auto"] | Annotated[float, Field(ge=0, allow_inf_nan=False)],
                       BeforeValidator(_warm_up)] = 0.0
    jobs: Annotated[int, Field(ge=1, le=1024)] | None = None
    kpis: Annotated[list[KeyPath], Field(min_length=1)] = Field(default_factory=lambda: list(DEFAULT_KPIS))
    common_random_numbers: bool = True
    scenarios: Annotated[list[ScenarioSpec], Field(min_length=1)]
    search: SearchSpec | None = None

    @model_validator(mode="after")
    def _together(self) -> StudySpec:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if (self.until is None) == (self.lots is None):
            problems.append((("until",), "give exactly one of until (a simulated duration, for a steady-state "
                                      "study) and lots (a lot count, for a terminating one)"))
        if self.replications is not None and self.precision is not None:
            problems.append((("precision",), "give replications or precision, not both"))
        if self.warm_up == "auto" and self.until is None:
            problems.append((("warm_up",), "auto needs until (a steady-state study runs for a length, not a lot "
                                        "count)"))
        if isinstance(self.warm_up, float) and self.until is not None and self.warm_up >= self.until:
            problems.append((("warm_up",), f"must be shorter than until ({self.until:g} s), got {self.warm_up:g} s"))
        names = [s.name for s in self.scenarios]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append((("scenarios", index, "name"), f"{name!r} names two scenarios; names must differ"))
        if self.search is not None:
            if self.search.scenario is not None and self.search.scenario not in names:
                problems.append((("search", "scenario"), f"no scenario named {self.search.scenario!r}; scenarios: "
                                                    f"{', '.join(names)}"))
            for pool, (low, high) in self.search.pools.items():
                if low > high:
                    problems.append((("search", "pools", pool), f"the lower bound {low} is above the upper bound "
                                                             f"{high}"))
            if self.search.judge == "confident" and self.replications == 1:
                problems.append((("search", "judge"), "confident needs at least 2 replications (a confidence "
                                                 "interval); give more, or judge: mean"))
        if problems:
            raise _Problems(problems)
        return self

    @property
    def replication_count(self) -> int | None:
        """The fixed replication count, None in precision mode."""
        if self.precision is not None:
            return None
        return self.replications if self.replications is not None else DEFAULT_REPLICATIONS


class _Problems(ValueError):
    """Problems that relate keys to each other: (where, what is wrong) each."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_key_text(at)}: {m}" for at, m in problems))


# --- the loaded study -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    overrides: dict[str, Any]
    config: Config


@dataclass(frozen=True)
class Study:
    """A study file, checked: every scenario's config built, the search's targets parsed."""

    path: Path
    spec: StudySpec
    base: Path
    seed: int
    scenarios: list[Scenario]
    targets: list[Target] = field(default_factory=list)
    search_scenario: Scenario | None = None
    search_pools: dict[str, tuple[int, int]] = field(default_factory=dict)  # Location.type, as the config spells it
    _base_data: dict[str, Any] = field(default_factory=dict, repr=False)
    _base_origins: Origins = field(default_factory=Origins, repr=False)
    _overrides: dict[str, list[Override]] = field(default_factory=dict, repr=False)

    @property
    def until_s(self) -> float | None:
        return self.spec.until

    @property
    def lots(self) -> int | None:
        return self.spec.lots

    def with_machines(self, scenario: Scenario, machines: Mapping[str, int]) -> Config:
        """``scenario``'s config with the machine counts of some pools (``Location.type`` -> n)."""
        origin = Origin(f"{self.path} (search)")
        extra = [Override(f"locations.{pool.partition('.')[0]}.machines.{pool.partition('.')[2]}", count, origin)
                 for pool, count in machines.items()]
        return parse(self._base_data, environ={}, overrides=[*self._overrides[scenario.name], *extra],
                     origins=self._base_origins)


def load_study(path: str | Path) -> Study:
    """Read and check a study file; InvalidStudy lists every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidStudy([f"{path}: cannot read the study file ({exc.strerror or exc})"]) from exc
    try:
        raw, lines = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise InvalidStudy([f"{path}: not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise InvalidStudy([f"{path}: the top level must be a mapping of keys (name, base, scenarios, …), got "
                            f"{type(raw).__name__}"])
    where = _Where(path, lines, raw)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidStudy(where.validation(exc)) from exc
    return _build(path, spec, where)


def _build(path: Path, spec: StudySpec, where: _Where) -> Study:
    base = Path(os.path.normpath(path.parent / spec.base))  # relative to the study file
    try:
        base_text = base.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidStudy([where.describe(("base",), "base", f"cannot read the base config {base} "
                                                              f"({exc.strerror or exc})")]) from exc
    try:
        base_data, base_origins = config_origins.load_yaml(base_text, base)
    except yaml.YAMLError as exc:
        raise InvalidStudy([f"{base}: not valid YAML: {exc}"]) from exc
    if not isinstance(base_data, dict):
        raise InvalidStudy([f"{base}: the top level must be a mapping of sections"])
    try:
        base_config = parse(base_data, environ={}, origins=base_origins)
    except ConfigError as exc:
        raise InvalidStudy([f"the base config is invalid: {p}" for p in exc.problems]) from exc

    problems: list[str] = []
    common = _overrides(where, ("overrides",), "study overrides", spec.overrides, base_data, problems)
    scenarios: list[Scenario] = []
    by_name: dict[str, list[Override]] = {}
    for index, scenario in enumerate(spec.scenarios):
        label = f"scenario {scenario.name!r}"
        own = _overrides(where, ("scenarios", index, "overrides"), label, scenario.overrides, base_data, problems,
                         before=common)
        by_name[scenario.name] = [*common, *own]
        try:
            config = parse(base_data, environ={}, overrides=by_name[scenario.name], origins=base_origins)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        scenarios.append(Scenario(scenario.name, dict(scenario.overrides), config))
    built = {s.name: s for s in scenarios}
    first = built.get(spec.scenarios[0].name)
    paths = report_paths(first.config if first is not None else base_config)
    for index, kpi in enumerate(spec.kpis):
        problems += _kpi_problem(where, ("kpis", index), f"kpis[{index}]", kpi, paths)
    if spec.precision is not None:
        problems += _kpi_problem(where, ("precision", "kpi"), "precision.kpi", spec.precision.kpi, paths)
    targets: list[Target] = []
    search_scenario: Scenario | None = None
    search_pools: dict[str, tuple[int, int]] = {}
    if spec.search is not None:
        wanted = spec.search.scenario or spec.scenarios[0].name
        search_scenario = built.get(wanted)
        config = search_scenario.config if search_scenario is not None else base_config
        search_paths = paths if search_scenario is first else report_paths(config)
        for index, text in enumerate(spec.search.targets):
            target = parse_target(text)
            targets.append(target)
            if target.path != MAX_UTILIZATION:
                problems += _kpi_problem(where, ("search", "targets", index), f"search.targets[{index}]",
                                         target.path, search_paths, extra=(MAX_UTILIZATION,))
        for pool, bounds in spec.search.pools.items():
            problem = _pool_problem(pool, config)
            if problem is None and canonical_pool(pool, config) in search_pools:
                problem = f"names the pool {canonical_pool(pool, config)} a second time"
            if problem is not None:
                problems.append(where.describe(("search", "pools", pool), f"search.pools.{pool}", problem))
            else:
                search_pools[canonical_pool(pool, config)] = bounds
    if problems:
        raise InvalidStudy(list(dict.fromkeys(problems)))
    seed = spec.seed if spec.seed is not None else base_config.simulation.seed
    return Study(path, spec, base, seed, scenarios, targets, search_scenario, search_pools, base_data, base_origins,
                 by_name)


def canonical_pool(pool: str, config: Config) -> str:
    """``vietnam.TORNIO`` → ``Vietnam.tornio`` (location names and aliases, case-insensitively)."""
    location, _, machine_type = pool.partition(".")
    name = config.location_of(location) or location
    machines = config.locations[name].machines if name in config.locations else {}
    found = next((t for t in machines if t.casefold() == machine_type.casefold()), machine_type)
    return f"{name}.{found}"


def _pool_problem(pool: str, config: Config) -> str | None:
    location, _, machine_type = pool.partition(".")
    name = config.location_of(location)
    if name is None:
        return _unknown(f"unknown location {location!r}", location, list(config.locations))
    machines = config.locations[name].machines
    if not any(t.casefold() == machine_type.casefold() for t in machines):
        return _unknown(f"{name} has no machine type {machine_type!r}", machine_type, list(machines))
    return None


def _unknown(what: str, typed: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(typed, allowed, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{what}; allowed: {', '.join(allowed)}{hint}"


def _kpi_problem(where: _Where, at: tuple[str | int, ...], key: str, path: str, paths: Sequence[str],
                 extra: Sequence[str] = ()) -> list[str]:
    if path in paths:
        return []
    close = difflib.get_close_matches(path, [*paths, *extra], n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else \
        "a KPI is the dotted path of a number in the run report, e.g. lead_time_s.p95, throughput_per_hour, " \
        "pools.<location>.<machine type>.utilization"
    return [where.describe(at, key, f"{path!r} is no KPI of the report; {hint}")]


def report_paths(config: Config) -> list[str]:
    """Every KPI path of a run report of ``config`` (the numeric leaves replications summarise)."""
    from simulator.studies.replications import kpi_names

    return kpi_names(config)


# --- overrides ------------------------------------------------------------------------------------
def _overrides(where: _Where, at: tuple[str | int, ...], label: str, values: Mapping[str, Any],
               base_data: dict[str, Any], problems: list[str], before: Sequence[Override] = ()) -> list[Override]:
    """The overrides of one block, each with its line of the study file as origin; a key that
    names no config key is a problem (with the allowed keys and the closest match)."""
    data = _with(base_data, before)
    found: list[Override] = []
    for key, value in values.items():
        origin = Origin(f"{where.line_text((*at, key))} ({label})", in_file=True)
        reason = unknown_key(Config, data, key)
        if reason is not None:
            problems.append(origin.describe(key, f"names no config key: {reason}{_closest(reason)}"))
            continue
        found.append(Override(key, value, origin))
    return found


_MISSING_PART = re.compile(r"no (?:key|entry|element named) '(?P<part>[^']*)'")
_LISTED = re.compile(r"(?:allowed|it has|names): (?P<names>.+)$")


def _closest(reason: str) -> str:
    """``; did you mean tornio?`` from ``unknown_key``'s reason, when a listed name is close."""
    missing, listed = _MISSING_PART.search(reason), _LISTED.search(reason)
    if missing is None or listed is None:
        return ""
    close = difflib.get_close_matches(missing["part"], [n.strip() for n in listed["names"].split(",")], n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _with(data: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """``data`` with earlier overrides' mappings in place, so that a later key may name an entry an
    earlier override created (``locations.X.machines: {…}`` then ``locations.X.machines.new: 2``)."""
    if not overrides:
        return data
    result: dict[str, Any] = _copy(data)
    for override in overrides:
        node: Any = result
        parts = override.key_path.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict):
                break
            key = next((k for k in node if isinstance(k, str) and k.casefold() == part.casefold()), part)
            node = node.setdefault(key, {})
        else:
            if isinstance(node, dict):
                node[parts[-1]] = override.value
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --- where in the study file -----------------------------------------------------------------------
def _load_yaml(text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """The document and the line of every key and list element (keys as written: dotted override
    keys stay one part)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        lines: dict[tuple[str | int, ...], int] = {}
        if node is not None:
            _record(loader, node, (), lines)
    finally:
        loader.dispose()
    return data, lines


def _record(loader: yaml.SafeLoader, node: yaml.Node, at: tuple[str | int, ...],
            lines: dict[tuple[str | int, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                here = (*at, str(loader.construct_object(key_node)))
                lines[here] = key_node.start_mark.line + 1
                _record(loader, value_node, here, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            here = (*at, index)
            lines[here] = item.start_mark.line + 1
            _record(loader, item, here, lines)


@dataclass(frozen=True)
class _Where:
    """Lines of the study file, and the scenario a key path is in."""

    path: Path
    lines: dict[tuple[str | int, ...], int]
    raw: dict[str, Any]

    def line_text(self, at: tuple[str | int, ...]) -> str:
        for n in range(len(at), 0, -1):
            line = self.lines.get(at[:n])
            if line is not None:
                return f"{self.path} line {line}"
        return str(self.path)

    def describe(self, at: tuple[str | int, ...], key: str, message: str) -> str:
        scenario = self._scenario(at)
        label = f" ({scenario})" if scenario else ""
        return f"{self.line_text(at)}{label}: {key}: {message}"

    def _scenario(self, at: tuple[str | int, ...]) -> str | None:
        if len(at) >= 2 and at[0] == "scenarios" and isinstance(at[1], int):
            scenarios = self.raw.get("scenarios")
            if isinstance(scenarios, list) and at[1] < len(scenarios) and isinstance(scenarios[at[1]], dict):
                name = scenarios[at[1]].get("name")
                if isinstance(name, str):
                    return f"scenario {name!r}"
            return f"scenario {at[1] + 1}"
        return None

    def validation(self, exc: ValidationError) -> list[str]:
        problems: list[str] = []
        for err in exc.errors(include_url=False):
            error = (err.get("ctx") or {}).get("error")
            if isinstance(error, _Problems):
                problems.extend(self.describe(at, _key_text(at), message) for at, message in error.problems)
                continue
            at = tuple(p for p in err["loc"]
                       if not (isinstance(p, str) and (p == "[key]" or p.startswith(("function-", "literal[")))))
            problems.append(self.describe(at, _key_text(at), _message(err, at)))
        return list(dict.fromkeys(problems))


def _key_text(at: tuple[str | int, ...]) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_MODELS: dict[str, type[BaseModel]] = {"": StudySpec, "precision": PrecisionSpec, "scenarios": ScenarioSpec,
                                       "search": SearchSpec}


def _message(err: Any, at: tuple[str | int, ...]) -> str:
    kind, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        named = [p for p in at[:-1] if isinstance(p, str)]
        model = _MODELS.get(named[0] if named else "", StudySpec)
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(str(at[-1]), allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
    if kind == "string_pattern_mismatch" and at[:2] == ("search", "pools"):
        return "a pool is LOCATION.MACHINE_TYPE, e.g. Vietnam.tornio"
    if kind == "string_pattern_mismatch":
        return "must be a dotted key path without spaces"
    messages = {"greater_than_equal": "must be >= {ge}", "greater_than": "must be > {gt}",
                "less_than_equal": "must be <= {le}", "less_than": "must be < {lt}",
                "int_parsing": "must be a whole number", "int_type": "must be a whole number",
                "int_from_float": "must be a whole number", "float_parsing": "must be a number",
                "float_type": "must be a number", "bool_parsing": "must be true or false",
                "bool_type": "must be true or false", "string_type": "must be a string",
                "list_type": "must be a list", "tuple_type": "must be a list [lower, upper]",
                "dict_type": "must be a mapping of keys to values", "model_type": "must be a mapping of keys to values",
                "literal_error": "must be one of: {expected}", "too_short": "must not be empty",
                "too_long": "must be a list [lower, upper]", "string_too_short": "must not be empty"}
    if kind in messages:
        try:
            message = messages[kind].format(**ctx)
        except (KeyError, IndexError):
            message = str(err["msg"])
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
    if isinstance(got, dict | list | tuple) or repr(got) in message:
        return message
    return f"{message} (got {got!r})"
