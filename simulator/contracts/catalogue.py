"""Every message's schema as a JSON Schema (draft 2020-12) file of its own, for consumers that
validate without reading an AsyncAPI document.

Files for a configuration: ``<message>.json`` (the payload) and ``<message>.headers.json`` (its
Kafka headers, where it has any), for the Kafka messages, the runtime commands and the messages of
every MQTT format (as a target of that format with its default topics would publish them, whether
or not the configuration has one).  A payload in another schema language (``Message.payload_format``)
has no file here; the AsyncAPI document carries it.
"""

from __future__ import annotations

from typing import Any

import orjson

from simulator.config.mqtt import MqttTarget
from simulator.config.schema import Config
from simulator.contracts import coffeemek
from simulator.contracts.commands import command_message
from simulator.contracts.dead_letters import dead_letter_message
from simulator.contracts.model import Message
from simulator.contracts.orders import order_message
from simulator.contracts.registry import MQTT_CONTRACTS
from simulator.contracts.schema import Schema, standalone


def messages(config: Config) -> list[Message]:
    """Every message of ``config``'s Kafka topics and of each MQTT format, each once."""
    found: dict[str, Message] = {}
    kafka = [order_message(config), *(m for _, _, ms in coffeemek.kafka_topics(config) for m in ms),
             dead_letter_message(), command_message()]
    targets = {name: MqttTarget.model_validate({"name": name, "host": "localhost", "format": name})
               for name in MQTT_CONTRACTS}
    mqtt = [m for name, contract in MQTT_CONTRACTS.items() for topic in contract(config, targets[name])
            for m in topic.messages]
    for message in (*kafka, *mqtt):
        found.setdefault(message.name, message)
    return list(found.values())


def schema_files(config: Config) -> dict[str, Schema]:
    """File name -> its schema."""
    files: dict[str, Schema] = {}
    for message in messages(config):
        if message.json_payload is not None:
            files[f"{message.name}.json"] = standalone(message.json_payload, message.name)
        if message.headers is not None:
            files[f"{message.name}.headers.json"] = standalone(message.headers, f"{message.name}.headers")
    return files


def dumps(document: Any) -> bytes:
    """A document as the files and the command line write it: indented JSON, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
