"""MQTT: the targets (broker, TLS, authentication, queue, reconnection, format and topics), the
standalone bridge, and the options of the wire formats the targets speak."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from simulator.config.common import PositiveFloat, Probability, Strict
from simulator.config.delivery import DeliveryFaults, OverflowPolicy, Spool

# the wire formats an MQTT target can speak (simulator/formats/registry.py builds them)
FormatName = Literal["coffeemek", "spaceship", "enms", "uns", "sparkplug"]
FORMATS: tuple[FormatName, ...] = get_args(FormatName)
RecordKind = Literal["cycle", "sample", "lot_event"]
RECORD_KINDS: tuple[RecordKind, ...] = get_args(RecordKind)
TopicTemplateText = Annotated[str, Field(min_length=1, max_length=500)]
_SLUG = Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,100}$")]


_LABEL = Annotated[str, Field(min_length=1, max_length=100)]
_LABELS = Annotated[tuple[_LABEL, ...], Field(min_length=1)]
_COLOR = Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")]


class SpaceshipOptions(Strict):
    """The spaceship topics, and the names the format gives to what the plant works on: each lot's
    product, part, assembly, colour, destination and carrier are chosen from these lists, the same
    for the same run seed and lot (see :mod:`simulator.formats.spaceship`)."""

    topic_prefix: TopicTemplateText = "factory"
    # product type -> the id prefix of a tested unit (target_id "Spaceship-42")
    products: Annotated[dict[_LABEL, _SLUG], Field(min_length=1)] = Field(default_factory=lambda: {
        "FullSpaceship": "Spaceship", "ShuttleCraft": "Shuttle", "CargoPod": "CargoPod",
        "SparePartKit": "SparePartKit"})
    cnc_part_types: _LABELS = ("HullPanel", "EngineMount", "BulkheadRing", "LandingStrut", "ThrusterBracket")
    printer_part_types: _LABELS = ("GearboxCasing", "FuelInjector", "SensorHousing", "CableConduit",
                                   "HeatShieldTile")
    assembly_types: _LABELS = ("FrameAssembly", "HullSection", "EngineAssembly", "CockpitModule")
    colors: Annotated[tuple[_COLOR, ...], Field(min_length=1)] = ("#FFD700", "#C0C0C0", "#1E3A8A", "#F5F5F5",
                                                                  "#B22222")
    destinations: _LABELS = ("Moon Base Alpha", "Mars Colony One", "Europa Research Station", "Titan Outpost",
                             "Ceres Mining Depot")
    carriers: _LABELS = ("Orbital Express", "Lunar Freight Lines", "Deep Space Couriers", "Starlift Logistics")


class EnmsOptions(Strict):
    topic_prefix: TopicTemplateText = "factory"
    site: _SLUG | None = None  # default: the location name, lower case


class UnsOptions(Strict):
    tenant: _SLUG = "acme"
    plant: _SLUG = "plant-01"
    state_as: Literal["text", "code"] = "text"  # the state metric: its name, or 0 run / 1 stop / 2 fault
    # line -> its machines (ids, or ids without the location); a machine not named: its location
    lines: dict[_SLUG, tuple[Annotated[str, Field(min_length=1, max_length=200)], ...]] = Field(default_factory=dict)


class SparkplugOptions(Strict):
    """Sparkplug B (``format: sparkplug``): every such MQTT target is one edge node of ``group_id``,
    each machine one of its devices (see :mod:`simulator.formats.sparkplug`)."""

    group_id: _SLUG = "factorysim"
    edge_node_id: _SLUG | None = None  # default: the location's name when the config has one, else "factorysim"
    naming: Literal["folders", "flat"] = "folders"  # "Signals/spindle_temp_c", or "spindle_temp_c"


class FormatOptions(Strict):
    spaceship: SpaceshipOptions = SpaceshipOptions()
    enms: EnmsOptions = EnmsOptions()
    uns: UnsOptions = UnsOptions()
    sparkplug: SparkplugOptions = SparkplugOptions()


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
    overflow: OverflowPolicy = "block"


class MqttReconnect(Strict):
    initial_s: PositiveFloat = 0.5
    max_s: PositiveFloat = 30.0
    jitter: Probability = 0.5  # each delay is drawn from [(1 - jitter) × d, d]


class MqttTarget(Strict):
    name: _SLUG
    enabled: bool = True  # false: the target is kept in the config but never connects
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
    format: FormatName = "coffeemek"
    topic_template: TopicTemplateText | None = None  # default: the format's own
    records: Annotated[tuple[RecordKind, ...], Field(min_length=1)] = RECORD_KINDS
    queue: MqttQueue = MqttQueue()
    reconnect: MqttReconnect = MqttReconnect()
    max_in_flight: Annotated[int, Field(ge=1, le=65_535)] = 1000  # unacknowledged QoS 1/2 messages
    availability_topic: TopicTemplateText | None = "factorysim/{client_id}/availability"
    command_topic: TopicTemplateText | None = None  # JSON commands (block, repair, anomaly, pause, …)
    spool: Spool | None = None  # the outgoing queue on disk instead of in memory (``queue`` then does not apply)
    faults: DeliveryFaults = DeliveryFaults()
    uplink: bool = True  # false: a network_outage without a target leaves this one alone (a broker on the edge)

    @model_validator(mode="after")
    def _sat_needs_v5(self) -> MqttTarget:
        if self.auth.method == "k8s-sat" and self.protocol != "5":
            raise ValueError("auth method k8s-sat needs protocol \"5\" (MQTT 5 enhanced authentication)")
        if self.reconnect.max_s < self.reconnect.initial_s:
            raise ValueError("reconnect.max_s must be >= reconnect.initial_s")
        if self.format == "sparkplug":
            if self.topic_template is not None:
                raise ValueError("format sparkplug takes no topic_template: Sparkplug fixes its topics "
                                 "(set formats.sparkplug.group_id and edge_node_id)")
            if self.retain:
                raise ValueError("format sparkplug publishes nothing retained (Sparkplug B forbids it); "
                                 "remove retain: true")
            if self.spool is not None:
                raise ValueError("format sparkplug keeps no spool: its births carry every metric's current value "
                                 "on each connection, so nothing is stored and forwarded")
        return self


class MqttBridge(Strict):
    """The standalone bridge (`factorysim bridge`): Kafka topics -> the MQTT targets."""

    group_id: Annotated[str, Field(min_length=1)] = "factorysim-mqtt-bridge"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8081
    commit_interval_s: PositiveFloat = 1.0


class Mqtt(Strict):
    targets: tuple[MqttTarget, ...] = ()
    bridge: MqttBridge = MqttBridge()

    @property
    def enabled_targets(self) -> tuple[MqttTarget, ...]:
        """The targets the service and the bridge publish to (a disabled one never connects)."""
        return tuple(t for t in self.targets if t.enabled)

    @model_validator(mode="after")
    def _unique_names(self) -> Mqtt:
        names = [t.name for t in self.targets]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"duplicate target name {dup!r}; each target needs its own name")
        return self
