"""The MQTT formats' contracts by format name.

Each contract module names its ``FORMAT`` and has ``mqtt_messages(config, target)``: the topics a
target of that format publishes to and the messages on each.  A new format contributes its
channels by adding its module to :data:`MODULES`; the tests check that every format a target can
speak (:data:`simulator.config.mqtt.FORMATS`) has one.  A format whose payloads are not JSON (protobuf,
say) gives its messages a ``payload_format`` and the schema in that language as ``payload``.  A format
whose session sets a Last Will of its own has ``last_will(config, target)`` (the server binding's
``lastWill``); its targets have no availability topic.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from simulator.config.mqtt import FORMATS, MqttTarget
from simulator.config.schema import Config
from simulator.contracts import coffeemek, enms, spaceship, sparkplug, uns
from simulator.contracts.model import TopicMessages

MqttContract = Callable[[Config, MqttTarget], list[TopicMessages]]
MODULES: tuple[ModuleType, ...] = (coffeemek, spaceship, enms, uns, sparkplug)
MQTT_CONTRACTS: dict[str, MqttContract] = {module.FORMAT: module.mqtt_messages for module in MODULES}
# formats with a Last Will of their own (Sparkplug's NDEATH), in place of the availability topic
LAST_WILLS: dict[str, Callable[[Config, MqttTarget], dict[str, Any]]] = {
    module.FORMAT: module.last_will for module in MODULES if hasattr(module, "last_will")}


def missing_contracts() -> list[str]:
    """The formats a target can speak that have no contract (none, as long as the registry is complete)."""
    return [name for name in FORMATS if name not in MQTT_CONTRACTS]
