"""The configuration schema: typed, frozen pydantic models with cross-field checks.

Loading, environment overrides and error formatting live in :mod:`simulator.config`.
Units are in the names (``_s``, ``_h``, ``_ms``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from functools import cached_property
from typing import Annotated, Literal

import pytz
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import machines
from simulator.limits import EARLIEST_START, LATEST_START, MAX_SPEED, MIN_SPEED

PRIORITIES = ("alta", "normale", "bassa")
PRIORITY_ALIASES = {"alta": "alta", "high": "alta", "normale": "normale", "normal": "normale",
                    "bassa": "bassa", "low": "bassa"}
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


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
    """Normal, truncated at 0 (negative draws are redrawn)."""

    distribution: Literal["normal"]
    mean: NonNegFloat
    std: NonNegFloat

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
BOUNDED = (Constant, Uniform, Triangular)


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


class Disruptions(Strict):
    block_probability: Probability = 0.0
    block_reasons: Annotated[tuple[BlockReason, ...], Field(min_length=1)] = (
        BlockReason(reason="inceppamento"),
    )
    repair_time: Distribution = Uniform(distribution="uniform", low=300, high=1800)
    failures: Failures | None = None
    maintenance: Maintenance | None = None


class DisruptionOverrides(Strict):
    """Per-stage overrides; unset fields inherit the plant-wide ``disruptions``."""

    block_probability: Probability | None = None
    block_reasons: Annotated[tuple[BlockReason, ...], Field(min_length=1)] | None = None
    repair_time: Distribution | None = None
    failures: Failures | None = None
    maintenance: Maintenance | None = None


# --- route ---------------------------------------------------------------------------------
class Quality(Strict):
    rework_probability: Probability = 0.0
    scrap_probability: Probability = 0.0
    rework_stage: str | None = None  # default: the stage before this one
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


class Arrivals(Strict):
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
    def _range(self) -> Arrivals:
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


class Simulation(Strict):
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 42
    start: dt.datetime = dt.datetime(2025, 6, 25, 6, 0, tzinfo=dt.UTC)
    speed: Literal["max"] | Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)] = 60.0
    # a run recovered from the journal in paced mode: catch up the time the service was down (as if
    # the plant had kept running), or skip it
    after_downtime: Literal["catch_up", "skip"] = "catch_up"
    priority_processing: bool = True

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


TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,200}$")]
_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9.:\-]+\]?:\d{1,5}$")


class Topics(Strict):
    orders: TopicName = "coffeemek.orders.new_lots"
    telemetry_prefix: TopicName = "coffeemek.telemetry"
    events: TopicName = "coffeemek.events.production_status"
    dead_letter: TopicName = "coffeemek.orders.dead_letter"
    journal: TopicName = "coffeemek.plants.journal"  # the plants' inputs, keyed by plant
    snapshots: TopicName = "coffeemek.plants.snapshots"  # the runs' model state, keyed by run id


class TopicCreation(Strict):
    enabled: bool = True  # create missing topics at start; false = fail clearly when one is missing
    partitions: Annotated[int, Field(ge=1, le=10_000)] = 3
    replication_factor: Annotated[int, Field(ge=1, le=100)] = 1


class Producer(Strict):
    acks: Literal["all", "1", "0"] = "all"
    linger_ms: Annotated[int, Field(ge=0, le=60_000)] = 20
    max_batch_size: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 262_144
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    request_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 30_000
    max_in_flight_messages: Annotated[int, Field(ge=100, le=10_000_000)] = 50_000
    # the producer's max_request_size: no single message is sent larger (dead letters are cut to fit)
    max_request_bytes: Annotated[int, Field(ge=64 * 1024, le=64 * 1024 * 1024)] = 1_048_576

    @field_validator("acks", mode="before")
    @classmethod
    def _acks_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Consumer(Strict):
    group_id: Annotated[str, Field(min_length=1)] = "factorysim"
    max_in_flight_orders: Annotated[int, Field(ge=1, le=10_000_000)] = 5_000
    max_order_bytes: Annotated[int, Field(ge=64, le=16 * 1024 * 1024)] = 64 * 1024
    dedup_window_s: NonNegFloat = 86_400.0  # completed lot codes stay known for this long (wall seconds)
    session_timeout_ms: Annotated[int, Field(ge=1000, le=3_600_000)] = 6_000
    # per-partition fetch size of the orders consumer (at least 2 x max_order_bytes is used); keep it
    # at least the orders topic's max.message.bytes: a record the broker does not return whole is
    # dead-lettered as unreadable
    max_partition_fetch_bytes: Annotated[int, Field(ge=64 * 1024, le=256 * 1024 * 1024)] = 2 * 1024 * 1024


class Security(Strict):
    """Kafka transport security.  Passwords come from an environment variable or a file, never
    from the config itself, and are never logged."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: str | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password_env: str | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Security:
        sasl = self.protocol.startswith("SASL")
        if sasl:
            if self.sasl_mechanism is None:
                raise ValueError("protocol SASL_* needs sasl_mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
            if not self.sasl_username:
                raise ValueError("protocol SASL_* needs sasl_username")
            if (self.sasl_password_env is None) == (self.sasl_password_file is None):
                raise ValueError("protocol SASL_* needs exactly one of sasl_password_env, sasl_password_file")
        elif self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism needs protocol SASL_PLAINTEXT or SASL_SSL (got {self.protocol})")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self


class EmbeddedKafka(Strict):
    """The bundled broker of ``bootstrap_servers: embedded`` (adapters/embedded_broker.py)."""

    storage: Literal["persistent", "memory"] = "persistent"  # memory: nothing survives the broker's stop
    # None: $STATE_DIRECTORY/kafka (systemd), else $XDG_DATA_HOME/factorysim/kafka, else ~/.local/share/factorysim/kafka
    data_dir: Annotated[str, Field(min_length=1)] | None = None
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # its Kafka listener on 127.0.0.1; 0 = a free port


class Snapshots(Strict):
    """How often the service writes the model's state to ``kafka.topics.snapshots``: a restart
    replays only the journal after the newest snapshot (and one is written at every stop)."""

    enabled: bool = True
    every_inputs: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = 10_000  # journaled inputs since the last
    every_s: Annotated[float, Field(ge=1, le=7 * 86_400, allow_inf_nan=False)] | None = 60.0  # wall seconds

    @model_validator(mode="after")
    def _some_interval(self) -> Snapshots:
        if self.enabled and self.every_inputs is None and self.every_s is None:
            raise ValueError("give every_inputs or every_s (or both), or set enabled: false")
        return self


class Kafka(Strict):
    bootstrap_servers: str = "embedded"
    embedded: EmbeddedKafka = EmbeddedKafka()
    topics: Topics = Topics()
    topic_creation: TopicCreation = TopicCreation()
    producer: Producer = Producer()
    consumer: Consumer = Consumer()
    snapshots: Snapshots = Snapshots()
    security: Security = Security()
    client_id: Annotated[str, Field(min_length=1)] = "factorysim"
    # how long a start (the service's, the bridge's) waits for an unreachable cluster before it fails
    startup_timeout_s: Annotated[float, Field(ge=0.1, le=86_400)] = 60.0

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        value = value.strip()
        if value == "embedded":
            return value
        servers = [s.strip() for s in value.split(",")]
        bad = [s for s in servers if not _HOST_PORT.match(s) or not 0 < int(s.rsplit(":", 1)[1]) < 65536]
        if not value or bad:
            raise ValueError(f"must be 'embedded' or a comma-separated list of host:port, got {value!r}")
        return ",".join(servers)


class Http(Strict):
    host: str = "0.0.0.0"  # noqa: S104 - a service's health endpoint listens on all interfaces by default
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # bearer token for the mutating endpoints (commands); read-only endpoints stay open.  Without
    # one, a token is generated at start (see adapters/http_token.py) unless open_controls is true.
    token_env: str | None = None
    token_file: str | None = None
    generated_token_file: str | None = None  # where a generated token is written (default: see README)
    open_controls: bool = False  # true: commands need no token (trusted networks only)

    @model_validator(mode="after")
    def _one_token_source(self) -> Http:
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("give token_env or token_file, not both")
        if self.open_controls and (self.token_env is not None or self.token_file is not None):
            raise ValueError("open_controls: true opens the commands to everyone; it excludes token_env and "
                             "token_file")
        return self


# --- wire formats and MQTT -----------------------------------------------------------------
FORMATS = ("coffeemek", "spaceship", "enms", "uns")
RecordKind = Literal["cycle", "sample", "lot_event"]
RECORD_KINDS: tuple[RecordKind, ...] = ("cycle", "sample", "lot_event")
TopicTemplate = Annotated[str, Field(min_length=1, max_length=500)]
_SLUG = Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,100}$")]


class SpaceshipOptions(Strict):
    topic_prefix: TopicTemplate = "factory"


class EnmsOptions(Strict):
    topic_prefix: TopicTemplate = "factory"
    site: _SLUG | None = None  # default: the location name, lower case


class UnsOptions(Strict):
    tenant: _SLUG = "acme"
    plant: _SLUG = "plant-01"


class FormatOptions(Strict):
    spaceship: SpaceshipOptions = SpaceshipOptions()
    enms: EnmsOptions = EnmsOptions()
    uns: UnsOptions = UnsOptions()


class MqttTls(Strict):
    enabled: bool = False
    ca_file: str | None = None  # default: the system trust store
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True  # certificate and host name verification
    server_hostname: str | None = None  # name to verify (default: host)

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttAuth(Strict):
    """none | password (username + password from env or file) | k8s-sat (Azure IoT Operations:
    MQTT 5 enhanced authentication, method K8S-SAT, data = the token file, re-read on every
    connect because the token rotates)."""

    method: Literal["none", "password", "k8s-sat"] = "none"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    token_file: str = "/var/run/secrets/tokens/broker-sat"  # noqa: S105 - a path, not a secret

    @model_validator(mode="after")
    def _consistent(self) -> MqttAuth:
        if self.method == "password":
            if not self.username:
                raise ValueError("method password needs username")
            if (self.password_env is None) == (self.password_file is None):
                raise ValueError("method password needs exactly one of password_env, password_file")
        return self


class MqttQueue(Strict):
    capacity: Annotated[int, Field(ge=1, le=10_000_000)] = 50_000
    overflow: Literal["block", "drop-oldest", "drop-newest"] = "block"


class MqttReconnect(Strict):
    initial_s: PositiveFloat = 0.5
    max_s: PositiveFloat = 30.0
    jitter: Probability = 0.5  # each delay is drawn from [(1 - jitter) × d, d]


class MqttTarget(Strict):
    name: _SLUG
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    protocol: Literal["3.1.1", "5"] = "5"
    tls: MqttTls = MqttTls()
    auth: MqttAuth = MqttAuth()
    # placeholders: {name} {hostname} {pid} {instance}; the default is unique per process
    client_id: Annotated[str, Field(min_length=1, max_length=200)] = "factorysim-{name}-{hostname}-{pid}"
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    qos: Literal[0, 1, 2] = 1
    retain: bool = False  # retain every message (the format retains status messages anyway)
    format: Literal["coffeemek", "spaceship", "enms", "uns"] = "coffeemek"
    topic_template: TopicTemplate | None = None  # default: the format's own
    records: Annotated[tuple[RecordKind, ...], Field(min_length=1)] = RECORD_KINDS
    queue: MqttQueue = MqttQueue()
    reconnect: MqttReconnect = MqttReconnect()
    max_in_flight: Annotated[int, Field(ge=1, le=65_535)] = 1000  # unacknowledged QoS 1/2 messages
    availability_topic: TopicTemplate | None = "factorysim/{client_id}/availability"
    command_topic: TopicTemplate | None = None  # JSON commands (block, repair, anomaly, pause, …)

    @model_validator(mode="after")
    def _sat_needs_v5(self) -> MqttTarget:
        if self.auth.method == "k8s-sat" and self.protocol != "5":
            raise ValueError("auth method k8s-sat needs protocol \"5\" (MQTT 5 enhanced authentication)")
        if self.reconnect.max_s < self.reconnect.initial_s:
            raise ValueError("reconnect.max_s must be >= reconnect.initial_s")
        return self


class MqttBridge(Strict):
    """The standalone bridge (`factorysim bridge`): Kafka topics -> the MQTT targets."""

    group_id: Annotated[str, Field(min_length=1)] = "factorysim-mqtt-bridge"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8081
    commit_interval_s: PositiveFloat = 1.0


class Mqtt(Strict):
    targets: tuple[MqttTarget, ...] = ()
    bridge: MqttBridge = MqttBridge()

    @model_validator(mode="after")
    def _unique_names(self) -> Mqtt:
        names = [t.name for t in self.targets]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"duplicate target name {dup!r}; each target needs its own name")
        return self


class Config(Strict):
    simulation: Simulation = Simulation()
    locations: Annotated[dict[str, Location], Field(min_length=1)]
    route: Annotated[tuple[Stage, ...], Field(min_length=1)]
    disruptions: Disruptions = Disruptions()
    shift_calendars: dict[str, ShiftCalendar] = Field(default_factory=dict)
    machine_types: dict[str, MachineTypeSettings] = Field(default_factory=dict)
    telemetry: Telemetry = Telemetry()
    arrivals: Arrivals = Arrivals()
    format: Literal["coffeemek"] = "coffeemek"  # the Kafka wire format
    formats: FormatOptions = FormatOptions()  # options of the MQTT formats
    kafka: Kafka = Kafka()
    mqtt: Mqtt = Mqtt()
    http: Http = Http()

    @cached_property
    def model_fingerprint(self) -> str:
        """SHA-256 of what decides a plant's behaviour and its Kafka output: the whole config but
        the connections (kafka, mqtt, http) and the run's own settings (seed, start, speed).  A
        journal written under one fingerprint cannot be replayed under another."""
        data = self.model_dump(mode="json", exclude={"kafka": True, "mqtt": True, "http": True,
                                                     "simulation": {"seed", "start", "speed", "after_downtime"}})
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems: list[tuple[str, str]] = []
        names = [s.name for s in self.route]
        seen: set[str] = set()
        for i, stage in enumerate(self.route):
            if stage.name in seen:
                problems.append((f"route[{i}].name", f"duplicate stage name {stage.name!r}"))
            seen.add(stage.name)
            if stage.quality and stage.quality.rework_stage is not None:
                if stage.quality.rework_stage not in names[:i]:
                    problems.append((
                        f"route[{i}].quality.rework_stage",
                        f"{stage.quality.rework_stage!r} is not an earlier stage; allowed: "
                        f"{', '.join(names[:i]) or '(none: this is the first stage)'}",
                    ))
            elif stage.quality and i == 0 and stage.quality.rework_probability > 0:
                problems.append((f"route[{i}].quality.rework_stage",
                                 "the first stage has no earlier stage to rework at"))
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
        if problems:
            raise CrossFieldError(problems)
        return self

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
        )

    def ideal_cycle_time_of(self, stage: Stage, quantity: int) -> float:
        """The ideal cycle time of a lot at a stage: configured, or the distribution's minimum
        (bounded distributions), or its mean (unbounded ones)."""
        if stage.ideal_cycle_time_s is not None:
            return stage.ideal_cycle_time_s

        def floor(d: Constant | Uniform | Triangular | Normal | Lognormal | Exponential) -> float:
            return d.minimum if isinstance(d, BOUNDED) else d.mean

        if stage.processing_time is not None:
            return floor(stage.processing_time)
        setup = floor(stage.setup_time) if stage.setup_time is not None else 0.0
        assert stage.per_unit_time is not None
        return setup + floor(stage.per_unit_time) * quantity


class CrossFieldError(ValueError):
    """Several cross-field problems, each with its own key path."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))

