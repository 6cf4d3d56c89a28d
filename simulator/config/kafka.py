"""The Kafka connection: topics and their creation, producer, consumer, transport security, the
embedded broker and the model snapshots' schedule."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from simulator.config.common import CrossFieldError, NonNegFloat, Strict

TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,200}$")]
_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9.:\-]+\]?:\d{1,5}$")


class Topics(Strict):
    orders: TopicName = "coffeemek.orders.new_lots"
    telemetry_prefix: TopicName = "coffeemek.telemetry"
    events: TopicName = "coffeemek.events.production_status"
    dead_letter: TopicName = "coffeemek.orders.dead_letter"
    journal: TopicName = "coffeemek.plants.journal"  # the plants' inputs, keyed by plant
    snapshots: TopicName = "coffeemek.plants.snapshots"  # the runs' model state, keyed by run id
    plant_inbox: TopicName = "coffeemek.plants.inbox"  # orders and commands routed to their plant (scale_out)


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
    # the Kafka timestamp of a telemetry or lot-event record: "send" (when it is produced) or
    # "event" (its instant in the simulated calendar, as in its payload)
    timestamps: Literal["send", "event"] = "send"

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


class ScaleOut(Strict):
    """Several ``factorysim run`` instances sharing the plants (see README, "Running several
    instances"): each plant is owned by one instance at a time, through the assignment of its
    partition of ``topics.plant_inbox`` in the consumer group ``group_id``."""

    enabled: bool = False
    group_id: Annotated[str, Field(min_length=1)] | None = None  # default: consumer.group_id + ".plants"
    instance_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # default: the host name
    # a member that does not rejoin within this long after a rebalance began (its hand-over: last
    # snapshots and commits) is left out of the group
    rebalance_timeout_ms: Annotated[int, Field(ge=1000, le=3_600_000)] = 30_000
    heartbeat_interval_ms: Annotated[int, Field(ge=100, le=60_000)] = 1_000
    # this instance's HTTP base URL as others reach it (default: http://<host name>:<http.port>)
    advertised_url: Annotated[str, Field(pattern=r"^https?://[\x21-\x7e]+$", max_length=500)] | None = None


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
    scale_out: ScaleOut = ScaleOut()
    security: Security = Security()
    client_id: Annotated[str, Field(min_length=1)] = "factorysim"
    # how long a start (the service's, the bridge's) waits for an unreachable cluster before it fails
    startup_timeout_s: Annotated[float, Field(ge=0.1, le=86_400)] = 60.0

    @model_validator(mode="after")
    def _shared_broker(self) -> Kafka:
        if self.scale_out.enabled and self.bootstrap_servers == "embedded":
            raise CrossFieldError([("scale_out.enabled", "instances share the plants through one Kafka "
                                    "cluster; the embedded broker is each instance's own: set "
                                    "kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS) to the cluster")])
        return self

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
