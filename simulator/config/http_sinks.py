"""HTTP sinks (``http_sinks``): POST batches of messages in a wire format to an HTTP API (the
MokaMetrics API push, the Virtual Smart Factory's cloud ``/ingest``); see
:mod:`simulator.adapters.delivery.http_sink`."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from simulator.config.common import Strict
from simulator.config.delivery import DeliveryFaults, Spool
from simulator.config.mqtt import RECORD_KINDS, FormatName, MqttQueue, MqttReconnect, RecordKind


class HttpAuth(Strict):
    """none | api-key (the value in ``header``) | bearer (``Authorization: Bearer <value>``); the
    value comes from the environment variable ``value_env`` or the file ``value_file``, never from
    the config itself, and is never logged."""

    method: Literal["none", "api-key", "bearer"] = "none"
    header: Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")] = "X-API-Key"
    value_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")] | None = None
    value_file: Annotated[str, Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _source(self) -> HttpAuth:
        given = (self.value_env is not None) + (self.value_file is not None)
        if self.method == "none" and given:
            raise ValueError("value_env and value_file need method api-key or bearer")
        if self.method != "none" and given != 1:
            raise ValueError(f"method {self.method} needs exactly one of value_env, value_file")
        return self


class HttpTls(Strict):
    verify: bool = True  # certificate and host name verification
    ca_file: str | None = None  # default: the system trust store
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> HttpTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class HttpBatch(Strict):
    max_records: Annotated[int, Field(ge=1, le=100_000)] = 500  # messages per request
    # body bytes per request (a bigger message goes alone)
    max_bytes: Annotated[int, Field(ge=1024, le=64 << 20)] = 1 << 20
    linger_ms: Annotated[int, Field(ge=0, le=60_000)] = 200  # wait this long for a fuller batch


_HEADER_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")]
_HEADER_VALUE = Annotated[str, Field(pattern=r"^[\t\x20-\x7e]{0,1000}$")]


class HttpSink(Strict):
    """POST the records, in a wire format, to an HTTP API."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,100}$")]
    enabled: bool = True
    url: Annotated[str, Field(pattern=r"^https?://[^\s]{1,2000}$")]
    path: Annotated[str, Field(pattern=r"^(/[^\s]{0,1000})?$")] = ""  # appended to url (a base URL + /ingest)
    format: FormatName = "coffeemek"
    topic_template: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    records: Annotated[tuple[RecordKind, ...], Field(min_length=1)] = RECORD_KINDS
    # json-array: a JSON array of messages per request; ndjson: one message per line; json: one message per request
    body: Literal["json-array", "ndjson", "json"] = "json-array"
    envelope: bool = False  # true: each message as {"topic", "key", "payload"} instead of the payload alone
    headers: Annotated[dict[_HEADER_NAME, _HEADER_VALUE], Field(max_length=50)] = Field(default_factory=dict)
    auth: HttpAuth = HttpAuth()
    tls: HttpTls = HttpTls()
    timeout_s: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] = 10.0  # per request
    retry: MqttReconnect = MqttReconnect()  # backoff after a failed request: initial_s, max_s, jitter
    batch: HttpBatch = HttpBatch()
    queue: MqttQueue = MqttQueue()
    spool: Spool | None = None
    faults: DeliveryFaults = DeliveryFaults()
    uplink: bool = True  # false: a network_outage without a target leaves this one alone

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + self.path if self.path else self.url

    @model_validator(mode="after")
    def _consistent(self) -> HttpSink:
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - reading it checks it (0..65535)
        except ValueError as exc:
            raise ValueError(f"url {self.url!r} is not a valid URL ({exc})") from exc
        if not parts.hostname:
            raise ValueError(f"url {self.url!r} names no host")
        if self.retry.max_s < self.retry.initial_s:
            raise ValueError("retry.max_s must be >= retry.initial_s")
        if self.format == "sparkplug":  # its births and deaths live in an MQTT session
            raise ValueError("format sparkplug is for MQTT targets only; allowed here: coffeemek, spaceship, enms, uns")
        reserved = {h.lower() for h in self.headers} & {"content-type", "content-length", "authorization",
                                                          "host", self.auth.header.lower()}
        if reserved:
            raise ValueError(f"headers must not set {', '.join(sorted(reserved))} (the sink sets them)")
        return self
