"""The plant: everything the model reads off the configuration.

Distributions, disruptions, quality, the route's stages, shift calendars, climate, locations,
machine type settings, telemetry, generated arrivals, the run's simulation settings, the order
priorities, and :class:`PlantSettings`, which holds them with their cross-field checks and names
every machine (``machine_slots``, from :mod:`simulator.config.machine_ids`).  The model
(``simulator/model/``, ``machines/``) imports from this module only; the root
:class:`simulator.config.schema.Config` extends ``PlantSettings`` with the connections.
Units are in the names (``_s``, ``_h``, ``_ms``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Annotated, Literal, get_args

import pytz
from pydantic import Field, field_validator, model_validator

import machines
from simulator.config.common import CrossFieldError, NonNegFloat, PositiveFloat, Probability, Strict
from simulator.config.machine_ids import ID_PLACEHOLDERS, STATION_PLACEHOLDERS, MachineSlot, check_template, plant_slots
from simulator.durations import parse_duration
from simulator.limits import EARLIEST_START, LATEST_START, MAX_SPEED, MIN_SPEED

# The order priorities, highest first: a lot's rank is its position here.  Orders and flags may
# also name one in English.
PRIORITIES = ("alta", "normale", "bassa")
DEFAULT_PRIORITY = "normale"  # of an order that names none
MAX_WARM_UP_S = 7 * 86400.0  # simulation.warm_up at most (also what "auto" gives at most)
PRIORITY_RANK: Mapping[str, int] = {priority: rank for rank, priority in enumerate(PRIORITIES)}
PRIORITY_ENGLISH: Mapping[str, str] = dict(zip(PRIORITIES, ("high", "normal", "low"), strict=True))
# every accepted name (Italian, then English, per priority) -> the priority
PRIORITY_ALIASES: Mapping[str, str] = {name: priority for priority in PRIORITIES
                                       for name in (priority, PRIORITY_ENGLISH[priority])}
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
IdTemplate = Annotated[str, Field(min_length=1, max_length=200)]  # see simulator.config.machine_ids


# --- distributions -------------------------------------------------------------------------
class Constant(Strict):
    distribution: Literal["constant"]
    value: NonNegFloat

    @property
    def mean(self) -> float:
        return self.value

    @property
    def minimum(self) -> float:
        return self.value


class Uniform(Strict):
    distribution: Literal["uniform"]
    low: NonNegFloat
    high: NonNegFloat

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def minimum(self) -> float:
        return self.low


class Triangular(Strict):
    distribution: Literal["triangular"]
    low: NonNegFloat
    mode: NonNegFloat
    high: NonNegFloat

    @model_validator(mode="after")
    def _ordered(self) -> Triangular:
        if not self.low <= self.mode <= self.high:
            raise ValueError(f"need low <= mode <= high, got {self.low}, {self.mode}, {self.high}")
        return self

    @property
    def mean(self) -> float:
        return (self.low + self.mode + self.high) / 3

    @property
    def minimum(self) -> float:
        return self.low


class Normal(Strict):
    """Normal, truncated at 0 (negative draws are redrawn): ``mean`` and ``std`` are the untruncated
    normal's; :attr:`actual_mean` is the mean of the times drawn."""

    distribution: Literal["normal"]
    mean: NonNegFloat
    std: NonNegFloat

    @property
    def actual_mean(self) -> float:
        """The mean of the normal truncated at 0: mean + std × φ(a) / (1 − Φ(a)), a = −mean / std."""
        if self.std == 0:
            return self.mean
        a = -self.mean / self.std
        density = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        above = 0.5 * math.erfc(a / math.sqrt(2))  # 1 − Φ(a)
        return self.mean + self.std * density / above

    @property
    def minimum(self) -> float:
        return 0.0


class Lognormal(Strict):
    """Lognormal given by the mean and standard deviation of the times themselves."""

    distribution: Literal["lognormal"]
    mean: PositiveFloat
    std: NonNegFloat

    @property
    def minimum(self) -> float:
        return 0.0


class Exponential(Strict):
    distribution: Literal["exponential"]
    mean: PositiveFloat

    @property
    def minimum(self) -> float:
        return 0.0


Distribution = Annotated[
    Constant | Uniform | Triangular | Normal | Lognormal | Exponential,
    Field(discriminator="distribution"),
]
DISTRIBUTIONS = ("constant", "uniform", "triangular", "normal", "lognormal", "exponential")


def mean_of(d: Constant | Uniform | Triangular | Normal | Lognormal | Exponential) -> float:
    """The mean of the times ``d`` draws (a normal's truncated at 0)."""
    return d.actual_mean if isinstance(d, Normal) else d.mean


def ideal_cycle_time(stage: Stage) -> Callable[[int], float]:
    """The ideal cycle time of a lot of so many pieces at ``stage`` (see
    :meth:`PlantSettings.ideal_cycle_time_of`), with its constants worked out once."""
    if stage.ideal_cycle_time_s is not None:
        configured = stage.ideal_cycle_time_s
        return lambda quantity: configured
    if stage.processing_time is not None:
        per_lot = mean_of(stage.processing_time)
        return lambda quantity: per_lot
    assert stage.per_unit_time is not None
    setup = mean_of(stage.setup_time) if stage.setup_time is not None else 0.0
    per_unit = mean_of(stage.per_unit_time)
    return lambda quantity: setup + per_unit * quantity


# --- disruptions ---------------------------------------------------------------------------
class BlockReason(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    weight: PositiveFloat = 1.0


class Failures(Strict):
    """Time-based failures: exponential time between failures, repair time distribution."""

    mtbf_h: PositiveFloat
    repair_time: Distribution
    on_interrupt: Literal["resume", "restart"] = "resume"
    reason: Annotated[str, Field(min_length=1)] = "guasto"


class Maintenance(Strict):
    every_cycles: Annotated[int, Field(gt=0)] | None = None
    every_hours: PositiveFloat | None = None
    duration: Distribution

    @model_validator(mode="after")
    def _one_trigger(self) -> Maintenance:
        if self.every_cycles is None and self.every_hours is None:
            raise ValueError("set every_cycles or every_hours (or both)")
        return self


class Anomalies(Strict):
    """Random anomalies: now and then a machine starts showing an anomaly of its type (see
    ``MachineType.anomalies``, plus the plant-wide ones) for a drawn duration, as if one had been
    injected by a command.  ``probability_per_day`` (or ``_per_hour``) is the chance that a machine
    without an anomaly starts one within a day (an hour): the time to the next one is exponential
    with rate -ln(1 - p) per day, counted from the end of the last one."""

    probability_per_day: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] | None = None
    probability_per_hour: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] | None = None
    duration: Distribution = Uniform(distribution="uniform", low=300, high=1800)
    severity: Distribution = Constant(distribution="constant", value=1.0)
    types: Annotated[tuple[str, ...], Field(min_length=1)] | None = None  # default: every type the machine knows

    @model_validator(mode="after")
    def _one_rate(self) -> Anomalies:
        if (self.probability_per_day is None) == (self.probability_per_hour is None):
            raise ValueError("set probability_per_day or probability_per_hour (one of them), a chance from 0 to "
                             "below 1")
        return self

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            known = machines.anomaly_names()
            bad = [name for name in value if name not in known]
            if bad:
                raise ValueError(f"unknown anomaly type {bad[0]!r}; allowed: {', '.join(sorted(known))}")
        return value

    @property
    def rate_per_s(self) -> float:
        """Onsets per simulated second of a machine without an anomaly (0: never)."""
        if self.probability_per_day is not None:
            probability, period_s = self.probability_per_day, 86400.0
        else:
            assert self.probability_per_hour is not None
            probability, period_s = self.probability_per_hour, 3600.0
        return -math.log1p(-probability) / period_s


class Disruptions(Strict):
    block_probability: Probability = 0.0
    block_reasons: Annotated[tuple[BlockReason, ...], Field(min_length=1)] = (
        BlockReason(reason="inceppamento"),
    )
    repair_time: Distribution = Uniform(distribution="uniform", low=300, high=1800)
    failures: Failures | None = None
    maintenance: Maintenance | None = None
    anomalies: Anomalies | None = None


class DisruptionOverrides(Strict):
    """Per-stage overrides; unset fields inherit the plant-wide ``disruptions``."""

    block_probability: Probability | None = None
    block_reasons: Annotated[tuple[BlockReason, ...], Field(min_length=1)] | None = None
    repair_time: Distribution | None = None
    failures: Failures | None = None
    maintenance: Maintenance | None = None
    anomalies: Anomalies | None = None


# --- route ---------------------------------------------------------------------------------
class Quality(Strict):
    rework_probability: Probability = 0.0
    scrap_probability: Probability = 0.0
    rework_stage: str | None = None  # an earlier stage or this one; default: the stage before this one
    max_reworks: Annotated[int, Field(ge=0)] = 2

    @model_validator(mode="after")
    def _sum(self) -> Quality:
        if self.rework_probability + self.scrap_probability > 1:
            raise ValueError("rework_probability + scrap_probability must not exceed 1")
        return self


class Stage(Strict):
    name: Annotated[str, Field(pattern=_NAME.pattern)]
    machine_type: str
    processing_time: Distribution | None = None
    setup_time: Distribution | None = None
    per_unit_time: Distribution | None = None
    ideal_cycle_time_s: PositiveFloat | None = None
    quality: Quality | None = None
    disruptions: DisruptionOverrides = DisruptionOverrides()

    @field_validator("machine_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in machines.names():
            raise ValueError(f"unknown machine type {value!r}; allowed: {', '.join(sorted(machines.names()))}")
        return value

    @model_validator(mode="after")
    def _time_mode(self) -> Stage:
        per_lot = self.processing_time is not None
        per_unit = self.per_unit_time is not None
        if per_lot == per_unit:
            raise ValueError(
                "give either processing_time (per lot) or per_unit_time (+ optional setup_time), not both"
                if per_lot
                else "missing processing time: give processing_time, or per_unit_time (+ optional setup_time)"
            )
        if per_lot and self.setup_time is not None:
            raise ValueError("setup_time only goes with per_unit_time")
        return self


# --- shifts --------------------------------------------------------------------------------
class Shift(Strict):
    name: str
    start: str  # HH:MM local time
    end: str  # HH:MM local time; end <= start means it ends the next day
    capacity: Probability = 1.0  # fraction of each pool's machines that work

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"not a local time HH:MM: {value!r}")
        return value


class ShiftCalendar(Strict):
    shifts: Annotated[tuple[Shift, ...], Field(min_length=1)]
    days: tuple[Weekday, ...] = WEEKDAYS
    weekend_factor: Probability = 1.0
    holidays: tuple[dt.date, ...] = ()
    holiday_factor: Probability = 0.0


# --- plant ---------------------------------------------------------------------------------
class Climate(Strict):
    """Outdoor temperature through the year and the day, in plant-local time.

    The seasonal offset is ``summer_offset_c`` in June-August, ``winter_offset_c`` in
    December-February, interpolated in between; the daily swing peaks at 15:00 local time."""

    mean_outdoor_c: float = 12.0
    summer_offset_c: float = 15.0
    winter_offset_c: float = -10.0
    daily_swing_c: NonNegFloat = 4.0


class Location(Strict):
    aliases: tuple[str, ...] = ()
    timezone: str
    machines: dict[str, Annotated[int, Field(ge=0, le=10_000)]]
    shift_calendar: str | None = None
    ambient_c: float = 22.0  # indoor temperature around the machines
    climate: Climate | None = None  # outdoor temperature model; None = outdoor equals ambient_c
    machine_id_template: IdTemplate | None = None  # the ids of its machines (types without their own)

    @field_validator("machine_id_template")
    @classmethod
    def _id_template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value, ID_PLACEHOLDERS)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if value not in pytz.all_timezones_set:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Rome")
        return value


class MachineTypeSettings(Strict):
    model: str | None = None  # a machines registry name; default: the type name itself
    sample_interval_s: NonNegFloat | None = None
    # "route": works lots of the route stages that use it; "continuous": a utility (compressor,
    # HVAC, …) that runs whenever its location's shift calendar allows, loaded by the shift factor
    duty: Literal["route", "continuous"] = "route"
    # names (see simulator.config.machine_ids): {code}, and the templates of machine and station ids
    id_code: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}$")] | None = None
    machine_id_template: IdTemplate | None = None
    station_id_template: IdTemplate | None = None

    @field_validator("machine_id_template")
    @classmethod
    def _id_template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value, ID_PLACEHOLDERS)

    @field_validator("station_id_template")
    @classmethod
    def _station_template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value, STATION_PLACEHOLDERS)

    @field_validator("model")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in machines.names():
            raise ValueError(f"unknown machine model {value!r}; allowed: {', '.join(sorted(machines.names()))}")
        return value


class Telemetry(Strict):
    cycle_records: bool = True  # one record per completed stage cycle
    sample_interval_s: NonNegFloat = 0.0  # periodic machine samples; 0 = off
    lot_events: bool = True


class ArrivalSettings(Strict):
    """Generated orders (offline runs and the demo)."""

    rate_per_hour: PositiveFloat = 2.0
    process: Literal["poisson", "fixed"] = "poisson"
    location_mix: dict[str, PositiveFloat] | None = None  # default: equal weights
    priority_mix: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {"alta": 0.1, "normale": 0.8, "bassa": 0.1}
    )
    quantity_min: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    quantity_max: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    customers: Annotated[tuple[str, ...], Field(min_length=1)] = (
        "Bar Centrale", "Caffè Roma", "Hotel Aurora", "Ristorante Da Mario", "Torrefazione Nord",
    )
    in_service: bool = False  # also generate these orders inside `factorysim run` (no order feed needed)

    @field_validator("priority_mix")
    @classmethod
    def _priorities(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k in value if k not in PRIORITY_ALIASES]
        if bad:
            raise ValueError(f"unknown priority {bad[0]!r}; allowed: {', '.join(PRIORITY_ALIASES)}")
        return {PRIORITY_ALIASES[k]: w for k, w in value.items()}

    @model_validator(mode="after")
    def _range(self) -> ArrivalSettings:
        if self.quantity_max < self.quantity_min:
            raise ValueError("quantity_max must be >= quantity_min")
        return self


def parse_speed(value: object) -> float | None:
    """A speed setting: simulated seconds per wall second, or None for "max" (as fast as possible).
    Numbers may come as text; anything else raises ValueError."""
    if isinstance(value, str) and value.strip().lower() == "max":
        return None
    number: float | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # not a number, or an integer beyond any float
            number = None
    if number is None or not math.isfinite(number) or not MIN_SPEED <= number <= MAX_SPEED:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(f"must be 'max' or a number of simulated seconds per wall second from {MIN_SPEED:g} to "
                         f"{MAX_SPEED:,.0f} (got {shown})")
    return number


class SimulationSettings(Strict):
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 42
    start: dt.datetime = dt.datetime(2025, 6, 25, 6, 0, tzinfo=dt.UTC)
    speed: Literal["max"] | Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)] = 60.0
    # a run recovered from the journal in paced mode: catch up the time the service was down (as if
    # the plant had kept running), or skip it
    after_downtime: Literal["catch_up", "skip"] = "catch_up"
    priority_processing: bool = True
    # a new run of the service first simulates this long (simulated seconds, a duration such as
    # "2h", or "auto") as fast as it can, publishing nothing, so that it goes live with a busy plant
    warm_up: Literal["auto"] | Annotated[float, Field(ge=0, le=MAX_WARM_UP_S, allow_inf_nan=False)] = 0.0

    @field_validator("warm_up", mode="before")
    @classmethod
    def _warm_up(cls, value: object) -> object:
        if value == "auto" or not isinstance(value, str):
            return value
        return parse_duration(value)  # "2h", "90m" (a ValueError names the units)

    @field_validator("speed", mode="before")
    @classmethod
    def _speed(cls, value: object) -> object:
        speed = parse_speed(value)
        return "max" if speed is None else speed

    @field_validator("start")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2025-06-25T06:00:00Z")
        if not EARLIEST_START <= value < LATEST_START:
            raise ValueError(f"start must be from {EARLIEST_START:%Y-%m-%d} to before {LATEST_START:%Y-%m-%d} "
                             f"(got {value.isoformat()})")
        return value.astimezone(dt.UTC)


class PlantSettings(Strict):
    """The settings the model runs on, checked against each other."""

    simulation: SimulationSettings = SimulationSettings()
    locations: Annotated[dict[str, Location], Field(min_length=1)]
    route: Annotated[tuple[Stage, ...], Field(min_length=1)]
    disruptions: Disruptions = Disruptions()
    shift_calendars: dict[str, ShiftCalendar] = Field(default_factory=dict)
    machine_types: dict[str, MachineTypeSettings] = Field(default_factory=dict)
    telemetry: Telemetry = Telemetry()
    arrivals: ArrivalSettings = ArrivalSettings()

    @model_validator(mode="after")
    def _cross_checks(self) -> PlantSettings:
        problems: list[tuple[str, str]] = []
        names = [s.name for s in self.route]
        seen: set[str] = set()
        for i, stage in enumerate(self.route):
            if stage.name in seen:
                problems.append((f"route[{i}].name", f"duplicate stage name {stage.name!r}"))
            seen.add(stage.name)
            if stage.quality and stage.quality.rework_stage is not None:
                if stage.quality.rework_stage not in names[:i + 1]:
                    problems.append((
                        f"route[{i}].quality.rework_stage",
                        f"{stage.quality.rework_stage!r} is neither an earlier stage nor this one; allowed: "
                        f"{', '.join(names[:i + 1])}",
                    ))
            elif stage.quality and i == 0 and stage.quality.rework_probability > 0:
                problems.append((f"route[{i}].quality.rework_stage",
                                 f"the first stage has no earlier stage to rework at; name this one "
                                 f"({stage.name!r}) to work a reworked lot here again"))
        aliases: dict[str, str] = {}
        for loc_name, loc in self.locations.items():
            for alias in (loc_name, *loc.aliases):
                key = alias.casefold()
                if key in aliases and aliases[key] != loc_name:
                    problems.append((f"locations.{loc_name}.aliases",
                                     f"{alias!r} already names location {aliases[key]!r}"))
                aliases[key] = loc_name
            for i, stage in enumerate(self.route):
                if loc.machines.get(stage.machine_type, 0) < 1:
                    problems.append((
                        f"locations.{loc_name}.machines.{stage.machine_type}",
                        f"route stage {names[i]!r} needs at least 1 {stage.machine_type} machine at "
                        f"every location (got {loc.machines.get(stage.machine_type, 0)})",
                    ))
            for mtype in loc.machines:
                if mtype not in machines.names() and mtype not in self.machine_types:
                    problems.append((f"locations.{loc_name}.machines.{mtype}",
                                     f"unknown machine type; allowed: {', '.join(sorted(machines.names()))}"))
            if loc.shift_calendar is not None and loc.shift_calendar not in self.shift_calendars:
                problems.append((f"locations.{loc_name}.shift_calendar",
                                 f"unknown calendar {loc.shift_calendar!r}; allowed: "
                                 f"{', '.join(self.shift_calendars) or '(none defined in shift_calendars)'}"))
        if self.arrivals.location_mix is not None:
            for name in self.arrivals.location_mix:
                if name.casefold() not in aliases:
                    problems.append((f"arrivals.location_mix.{name}",
                                     f"unknown location; allowed: {', '.join(self.locations)}"))
        for name, settings in self.machine_types.items():
            if settings.model is None and name not in machines.names():
                problems.append((f"machine_types.{name}.model",
                                 f"{name!r} is not a known machine model, so name one; allowed: "
                                 f"{', '.join(sorted(machines.names()))}"))
        for i, stage in enumerate(self.route):
            type_settings = self.machine_types.get(stage.machine_type)
            if type_settings is not None and type_settings.duty == "continuous":
                problems.append((f"route[{i}].machine_type",
                                 f"{stage.machine_type!r} has machine_types.{stage.machine_type}.duty: continuous "
                                 f"(a utility that works no lots); route stages need duty: route"))
        problems += self._slots()[1]
        if problems:
            raise CrossFieldError(problems)
        return self

    def _slots(self) -> tuple[list[MachineSlot], list[tuple[str, str]]]:
        types = self.machine_types
        return plant_slots({name: loc.machines for name, loc in self.locations.items()},
                           {name: loc.machine_id_template for name, loc in self.locations.items()},
                           {name: t.machine_id_template for name, t in types.items()},
                           {name: t.id_code for name, t in types.items()},
                           {name: t.station_id_template for name, t in types.items()})

    # -- derived lookups ----------------------------------------------------------------------
    def location_of(self, name: str) -> str | None:
        """The canonical location name for a name or alias (case-insensitive)."""
        return self.location_names.get(name.casefold())

    @cached_property
    def location_names(self) -> dict[str, str]:
        """Every location name and alias, casefolded -> the canonical name (the first one wins)."""
        names: dict[str, str] = {}
        for loc_name, loc in self.locations.items():
            for alias in (loc_name, *loc.aliases):
                names.setdefault(alias.casefold(), loc_name)
        return names

    @cached_property
    def machine_slots(self) -> tuple[MachineSlot, ...]:
        """Every machine of the plant with its id and station, locations and types in config order
        (the one place that names machines: see :mod:`simulator.config.machine_ids`)."""
        return tuple(self._slots()[0])

    def model_of(self, machine_type: str) -> str:
        settings = self.machine_types.get(machine_type)
        return settings.model if settings and settings.model else machine_type

    def sample_interval_of(self, machine_type: str) -> float:
        settings = self.machine_types.get(machine_type)
        if settings and settings.sample_interval_s is not None:
            return settings.sample_interval_s
        return self.telemetry.sample_interval_s

    def disruptions_of(self, stage: Stage) -> Disruptions:
        over = stage.disruptions
        base = self.disruptions
        return Disruptions(
            block_probability=base.block_probability if over.block_probability is None
            else over.block_probability,
            block_reasons=over.block_reasons or base.block_reasons,
            repair_time=over.repair_time or base.repair_time,
            failures=over.failures or base.failures,
            maintenance=over.maintenance or base.maintenance,
            anomalies=over.anomalies or base.anomalies,
        )

    @cached_property
    def warm_up_s(self) -> float:
        """``simulation.warm_up`` in simulated seconds.  ``auto``: twice the mean time a lot of mean
        quantity spends being processed along the route, plus one mean gap between generated
        orders, in whole minutes (at most :data:`MAX_WARM_UP_S`): long enough that the first lots
        have been through every stage and the queues have formed."""
        warm_up = self.simulation.warm_up
        if warm_up != "auto":
            return float(warm_up)
        arrivals = self.arrivals
        quantity = (arrivals.quantity_min + arrivals.quantity_max) / 2
        route_s = 0.0
        for stage in self.route:
            if stage.processing_time is not None:
                route_s += stage.processing_time.mean
            else:
                assert stage.per_unit_time is not None
                setup = stage.setup_time.mean if stage.setup_time is not None else 0.0
                route_s += setup + stage.per_unit_time.mean * quantity
        auto = 2 * route_s + 3600.0 / arrivals.rate_per_hour
        return min(math.ceil(auto / 60.0) * 60.0, MAX_WARM_UP_S)

    def ideal_cycle_time_of(self, stage: Stage, quantity: int) -> float:
        """The ideal cycle time of a lot of ``quantity`` pieces at a stage (OEE performance): the
        configured ``ideal_cycle_time_s``, else the mean processing time (:func:`mean_of`; setup +
        per unit × quantity).  With the mean, a machine working at its planned pace has a
        performance of 1 on average; the minimum of a spread distribution would put it near 50 %."""
        return ideal_cycle_time(stage)(quantity)

    @staticmethod
    def mean_process_time_of(stage: Stage, quantity: float) -> float:
        """The mean processing time of a lot of ``quantity`` pieces at ``stage``."""
        if stage.processing_time is not None:
            return mean_of(stage.processing_time)
        assert stage.per_unit_time is not None
        setup = mean_of(stage.setup_time) if stage.setup_time is not None else 0.0
        return setup + mean_of(stage.per_unit_time) * quantity
