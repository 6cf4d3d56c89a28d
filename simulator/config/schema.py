"""The root of the configuration: the plant (:mod:`simulator.config.plant`), the connections
(:mod:`simulator.config.kafka`, :mod:`simulator.config.mqtt`, :mod:`simulator.config.http_sinks`,
:mod:`simulator.config.http`), the
statistics log (:mod:`simulator.config.logs`) and a profile's own environment variables
(:mod:`simulator.config.environment`).

Loading, environment overrides and error formatting live in :mod:`simulator.config.loader`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Literal

from pydantic import Field, model_validator

from simulator.config.environment import EnvironmentAliases
from simulator.config.http import Http
from simulator.config.http_sinks import HttpSink
from simulator.config.kafka import Kafka
from simulator.config.logs import Logging
from simulator.config.mqtt import FormatOptions, Mqtt, MqttTarget
from simulator.config.opcua import OpcUa
from simulator.config.origins import Origins
from simulator.config.plant import PlantSettings
from simulator.errors import ConfigError

_ORIGINS = "value_origins"  # (in the instance's __dict__, beside the fields)


class Config(PlantSettings):
    """The whole configuration: the plant's settings and the connections."""

    format: Literal["coffeemek"] = "coffeemek"  # the Kafka wire format
    formats: FormatOptions = FormatOptions()  # options of the MQTT formats
    kafka: Kafka = Kafka()
    mqtt: Mqtt = Mqtt()
    http_sinks: tuple[HttpSink, ...] = ()  # POST the records to HTTP APIs
    http: Http = Http()
    opcua: OpcUa = OpcUa()  # the OPC UA server (off by default)
    logging: Logging = Logging()
    # the profile's own variables -> config keys (applied by the loader)
    environment: EnvironmentAliases = Field(default_factory=dict)

    @property
    def delivery_targets(self) -> tuple[MqttTarget | HttpSink, ...]:
        """The enabled MQTT targets and HTTP sinks: where records go besides Kafka."""
        return (*self.mqtt.enabled_targets, *(s for s in self.http_sinks if s.enabled))

    @model_validator(mode="after")
    def _delivery_names(self) -> Config:
        """Commands name targets and sinks alike; two spools in one file would take each other's messages."""
        names = [t.name for t in self.mqtt.targets] + [s.name for s in self.http_sinks]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"{dup!r} names two of mqtt.targets and http_sinks; each needs its own name")
        targets: tuple[MqttTarget | HttpSink, ...] = (*self.mqtt.targets, *self.http_sinks)
        paths = [t.spool.path for t in targets if t.spool is not None]
        shared = next((p for p in paths if paths.count(p) > 1 and "{name}" not in p), None)
        if shared is not None:
            raise ValueError(f"spool.path {shared!r} is given to two targets; put {{name}} in it or give each "
                             "its own file")
        return self

    def remember_origins(self, origins: Origins) -> None:
        """Where each value came from (the loader's); kept beside the fields, not one of them: two
        configs with the same values are equal wherever the values came from."""
        object.__setattr__(self, _ORIGINS, origins)

    def locate(self, error: ConfigError) -> ConfigError:
        """``error`` — found after loading, by a program or an adapter ("kafka.security: cannot load
        TLS files …") — with where each bad value came from (file and line, variable, flag), as the
        loader's own errors say it."""
        origins: Origins | None = self.__dict__.get(_ORIGINS)
        if origins is None:
            return error
        named = {f"mqtt.targets.{t.name}": f"mqtt.targets[{i}]" for i, t in enumerate(self.mqtt.targets)}
        problems = [origins.locate(problem, named) for problem in error.problems]
        return error if problems == error.problems else ConfigError(problems)

    @contextmanager
    def errors_located(self) -> Iterator[None]:
        """A ConfigError raised inside says where the bad values came from (:meth:`locate`)."""
        try:
            yield
        except ConfigError as exc:
            located = self.locate(exc)
            if located is exc:
                raise
            raise located from exc.__cause__

    @cached_property
    def model_fingerprint(self) -> str:
        """SHA-256 of what decides a plant's behaviour and its Kafka output: the whole config but
        the connections (kafka, mqtt, http, http_sinks, opcua) and the MQTT formats' options (formats),
        logging, the variables' names (environment: their values are in the keys they set) and the
        run's own settings (seed, start, speed).  A journal written under one fingerprint cannot be
        replayed under another: an option added to what the fingerprint leaves out keeps the journals
        of older versions readable."""
        data = self.model_dump(mode="json", exclude={"kafka": True, "mqtt": True, "http": True, "http_sinks": True,
                                                     "opcua": True, "formats": True,
                                                     "logging": True,
                                                     "environment": True,
                                                     "simulation": {"seed", "start", "speed", "after_downtime"}})
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
