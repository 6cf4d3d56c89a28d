"""The root of the configuration: the plant (:mod:`simulator.config.plant`) and the connections
(:mod:`simulator.config.kafka`, :mod:`simulator.config.mqtt`, :mod:`simulator.config.http`).

Loading, environment overrides and error formatting live in :mod:`simulator.config.loader`.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Literal

from simulator.config.http import Http
from simulator.config.kafka import Kafka
from simulator.config.mqtt import FormatOptions, Mqtt
from simulator.config.plant import PlantSettings


class Config(PlantSettings):
    """The whole configuration: the plant's settings and the connections."""

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
