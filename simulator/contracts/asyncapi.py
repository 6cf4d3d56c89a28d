"""The AsyncAPI 3.0 document of a configuration: every Kafka topic and MQTT topic the service
(or the bridge) reads or writes, with each message's payload schema, headers and key.

Servers: the Kafka cluster (``kafka.bootstrap_servers``; the embedded broker on 127.0.0.1 with its
port as a variable) and each enabled MQTT target's broker.  Channels: the orders topic (received),
the cycle telemetry of each stage, the samples of each sampled machine type, the lot events and
the dead letters (sent), the journal and snapshot topics (the service's own state: described, not
a contract), and per MQTT target the topics of its format (placeholders the message fills in are
channel parameters), its availability topic and its command topic.  Operations say which way
each channel goes, from factorysim's side; Kafka bindings give topics, partitions, keys and the
consumer group, MQTT bindings QoS and retain.

Payloads are written in the AsyncAPI document's default schema format (JSON Schema draft-07 and
up): the schemas use no keyword that draft-07 and draft 2020-12 read differently, so they are the
same schemas :func:`simulator.contracts.catalogue.schema_files` publishes as draft 2020-12 files.
The document depends on the configuration only (no host name, process id or start time), so
``factorysim asyncapi`` and ``GET /asyncapi.json`` answer the same for the same configuration.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from simulator import package_version
from simulator.config.kafka import Kafka
from simulator.config.mqtt import MqttTarget
from simulator.config.schema import Config
from simulator.contracts import coffeemek
from simulator.contracts.commands import command_message
from simulator.contracts.dead_letters import dead_letter_message
from simulator.contracts.model import Message, Parameter, TopicMessages
from simulator.contracts.orders import order_message
from simulator.contracts.registry import LAST_WILLS, MQTT_CONTRACTS
from simulator.contracts.schema import enum

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
MQTT_BINDING = "0.2.0"
KAFKA_SERVER = "kafka"
AVAILABILITY = ("online", "offline")  # simulator.adapters.mqtt_session: ONLINE, OFFLINE
_ID = re.compile(r"[^A-Za-z0-9_.-]+")
SASL_SCHEMES = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}


def _channel_id(*parts: str) -> str:
    return ".".join(_ID.sub("_", part).strip("_") for part in parts if part)


class _Document:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.servers: dict[str, Any] = {}
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.security: dict[str, Any] = {}
        self.uncovered: list[str] = []  # formats of targets without a contract: their topics are not described

    # -- pieces -------------------------------------------------------------------------------------
    def _message(self, protocol: str, message: Message) -> str:
        """The component message of ``message`` on ``protocol`` (added once); its key."""
        key = f"{protocol}.{message.name}"
        if key in self.messages:
            return key
        body: dict[str, Any] = {"name": message.name, "title": message.title, "summary": message.summary,
                                "contentType": message.content_type}
        if message.payload_format is not None:  # a payload described in another schema language
            body["payload"] = {"schemaFormat": message.payload_format, "schema": copy.deepcopy(message.payload)}
        elif message.payload is not None:
            body["payload"] = copy.deepcopy(message.payload)
        if protocol == "kafka":
            if message.headers is not None:
                body["headers"] = copy.deepcopy(message.headers)
            binding: dict[str, Any] = {"bindingVersion": KAFKA_BINDING}
            if message.key is not None:
                binding["key"] = copy.deepcopy(message.key)
            body["bindings"] = {"kafka": binding}
        else:
            text = 0 if message.content_type == "application/octet-stream" else 1
            body["bindings"] = {"mqtt": {"contentType": message.content_type, "payloadFormatIndicator": text,
                                         "bindingVersion": MQTT_BINDING}}
        self.messages[key] = body
        return key

    def _channel(self, channel_id: str, address: str, description: str, messages: list[Message], protocol: str,
                 servers: list[str], action: str, *, parameters: dict[str, Parameter] | None = None,
                 channel_bindings: dict[str, Any] | None = None, operation_bindings: dict[str, Any] | None = None,
                 extensions: dict[str, Any] | None = None) -> None:
        refs = {message.name: {"$ref": f"#/components/messages/{self._message(protocol, message)}"}
                for message in messages}
        channel: dict[str, Any] = {"address": address, "description": description, "messages": refs,
                                   "servers": [{"$ref": f"#/servers/{server}"} for server in servers]}
        if parameters:
            channel["parameters"] = copy.deepcopy(parameters)
        if channel_bindings:
            channel["bindings"] = channel_bindings
        if extensions:
            channel.update(extensions)
        self.channels[channel_id] = channel
        operation: dict[str, Any] = {
            "action": action, "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"factorysim {'sends to' if action == 'send' else 'receives from'} {address}",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in refs]}
        if operation_bindings:
            operation["bindings"] = operation_bindings
        self.operations[f"{action}.{channel_id}"] = operation

    # -- Kafka ----------------------------------------------------------------------------------------
    def kafka(self) -> None:
        kafka = self.config.kafka
        servers = self._kafka_servers(kafka)
        topics = kafka.topics
        creation = kafka.topic_creation

        def bindings(topic: str, partitions: int | None = None) -> dict[str, Any]:
            """``partitions``: the topic's own count (the plant inbox: one per plant), else the config's."""
            binding: dict[str, Any] = {"topic": topic, "bindingVersion": KAFKA_BINDING}
            if creation.enabled:
                binding.update(partitions=partitions or creation.partitions, replicas=creation.replication_factor)
            return {"kafka": binding}

        consumer = {"kafka": {"groupId": enum([kafka.consumer.group_id]),
                              "clientId": enum([kafka.client_id]), "bindingVersion": KAFKA_BINDING}}
        self._channel(_channel_id("kafka", topics.orders), topics.orders,
                      "Production orders (kafka.topics.orders), either dialect; a refused one goes to the dead "
                      "letters", [order_message(self.config)], "kafka", servers, "receive",
                      channel_bindings=bindings(topics.orders), operation_bindings=consumer)
        for topic, description, messages in coffeemek.kafka_topics(self.config):
            self._channel(_channel_id("kafka", topic), topic, description, messages, "kafka", servers, "send",
                          channel_bindings=bindings(topic))
        self._channel(_channel_id("kafka", topics.dead_letter), topics.dead_letter,
                      "Refused orders (kafka.topics.dead_letter): the original record, with why and where it came from",
                      [dead_letter_message()], "kafka", servers, "send", channel_bindings=bindings(topics.dead_letter))
        for topic, what in ((topics.journal, "the plants' inputs (orders admitted, commands), keyed by plant: the "
                                             "service's crash-safety log"),
                            (topics.snapshots, "the runs' model state, keyed by run id")):
            self._channel(_channel_id("kafka", topic), topic,
                          f"Internal: {what}. Written and read back by the service itself; its format is versioned "
                          "with the service and is not a contract for other consumers", [], "kafka", servers, "send",
                          channel_bindings=bindings(topic), extensions={"x-factorysim-internal": True})
        if kafka.scale_out.enabled:
            self._channel(_channel_id("kafka", topics.plant_inbox), topics.plant_inbox,
                          "Internal: orders and commands routed to the partition of the plant they are for "
                          "(kafka.scale_out)", [], "kafka", servers, "send",
                          channel_bindings=bindings(topics.plant_inbox, len(self.config.locations)),
                          extensions={"x-factorysim-internal": True})

    def _kafka_servers(self, kafka: Kafka) -> list[str]:
        security = kafka.security
        protocol = "kafka-secure" if security.protocol in ("SSL", "SASL_SSL") else "kafka"
        common: dict[str, Any] = {"protocol": protocol, "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING}}}
        requirements = []
        if security.sasl_mechanism is not None:
            name = f"kafka-sasl-{security.sasl_mechanism.lower()}"
            self.security[name] = {"type": SASL_SCHEMES[security.sasl_mechanism],
                                   "description": f"SASL {security.sasl_mechanism} (kafka.security)"}
            requirements.append({"$ref": f"#/components/securitySchemes/{name}"})
        if security.ssl_certfile is not None:
            self.security["kafka-tls-client"] = {"type": "X509", "description": "a client certificate "
                                                                                 "(kafka.security.ssl_certfile)"}
            requirements.append({"$ref": "#/components/securitySchemes/kafka-tls-client"})
        if requirements:
            common["security"] = requirements
        if kafka.bootstrap_servers == "embedded":
            port = kafka.embedded.port
            variable: dict[str, Any] = {"description": "the embedded broker's port: kafka.embedded.port"
                                        + ("" if port else " (0: a free port chosen at start; the service's "
                                                           "/health shows it as kafka.broker)")}
            if port:
                variable["default"] = str(port)
            self.servers[KAFKA_SERVER] = {"host": "127.0.0.1:{port}", **common, "variables": {"port": variable},
                                          "description": "The embedded Kafka-compatible broker "
                                                         "(kafka.bootstrap_servers: embedded)"}
            return [KAFKA_SERVER]
        names = []
        for n, host in enumerate(kafka.bootstrap_servers.split(",")):
            name = KAFKA_SERVER if n == 0 else f"{KAFKA_SERVER}-{n + 1}"
            self.servers[name] = {"host": host, **copy.deepcopy(common),
                                  "description": "A bootstrap server of the Kafka cluster (kafka.bootstrap_servers)"}
            names.append(name)
        return names

    # -- MQTT -----------------------------------------------------------------------------------------
    def mqtt(self, target: MqttTarget) -> None:
        server = f"mqtt-{target.name}"
        own_will = LAST_WILLS.get(target.format)
        availability = None if target.availability_topic is None or own_will is not None else \
            target.availability_topic.replace("{name}", target.name)
        binding: dict[str, Any] = {"cleanSession": True, "keepAlive": target.keepalive_s,
                                   "bindingVersion": MQTT_BINDING}
        if own_will is not None:
            binding["lastWill"] = own_will(self.config, target)
        elif availability is not None:
            binding["lastWill"] = {"topic": availability, "qos": 1, "message": "offline", "retain": True}
        self.servers[server] = {
            "host": f"{target.host}:{target.port}", "protocol": "secure-mqtt" if target.tls.enabled else "mqtt",
            "protocolVersion": target.protocol, "bindings": {"mqtt": binding},
            "description": f"MQTT target {target.name!r} (mqtt.targets): format {target.format}, records "
                           f"{', '.join(target.records)}; client id {target.client_id!r}"}
        wanted = set(target.records)
        grouped: dict[str, TopicMessages] = {}
        contract = MQTT_CONTRACTS.get(target.format)
        if contract is None:  # (the tests keep this from happening: every format has a contract)
            self.uncovered.append(target.format)
        for topic in contract(self.config, target) if contract is not None else ():
            messages = tuple(m for m in topic.messages if wanted & set(m.records) or topic.action == "receive")
            if not messages:
                continue
            known = grouped.get(topic.address)
            if known is None:
                grouped[topic.address] = TopicMessages(topic.address, dict(topic.parameters), messages,
                                                       topic.description, topic.action, topic.qos)
            else:
                names = {m.name for m in known.messages}
                grouped[topic.address] = TopicMessages(
                    topic.address, {**topic.parameters, **known.parameters},
                    known.messages + tuple(m for m in messages if m.name not in names),
                    f"{known.description}; {topic.description}", known.action, known.qos)
        for address, topic in grouped.items():
            retain = target.retain or any(m.retain for m in topic.messages)
            self._channel(_channel_id(target.name, address), address,
                          f"{target.format}: {topic.description}", list(topic.messages), "mqtt", [server],
                          topic.action, parameters=dict(topic.parameters),
                          operation_bindings={"mqtt": {"qos": target.qos if topic.qos is None else topic.qos,
                                                       "retain": retain, "bindingVersion": MQTT_BINDING}})
        if availability is not None:
            message = Message("availability", "Availability", "online once connected; offline on a clean stop (then "
                              "cleared) and as the Last Will", enum(AVAILABILITY), content_type="text/plain",
                              records=())
            parameters = {}
            if "{client_id}" in availability:
                parameters["client_id"] = {"description": f"the client id: {target.client_id}"}
            self._channel(_channel_id(target.name, "availability"), availability,
                          "Whether factorysim is connected (retained)", [message], "mqtt", [server], "send",
                          parameters=parameters,
                          operation_bindings={"mqtt": {"qos": 1, "retain": True, "bindingVersion": MQTT_BINDING}})
        if target.command_topic is not None:
            self._channel(_channel_id(target.name, "commands"), target.command_topic,
                          "Runtime commands (mqtt.targets[].command_topic): the same JSON as the HTTP API's",
                          [command_message()], "mqtt", [server], "receive",
                          operation_bindings={"mqtt": {"qos": 1, "bindingVersion": MQTT_BINDING}})

    def document(self) -> dict[str, Any]:
        components: dict[str, Any] = {"messages": self.messages}
        if self.security:
            components["securitySchemes"] = self.security
        info: dict[str, Any] = {
            "title": "factorysim", "version": package_version(),
            "description": "The messages a factorysim service (and its MQTT bridge) sends and receives with this "
                           "configuration: orders in, telemetry, lot events and dead letters out on Kafka, and the "
                           "topics of each MQTT target's wire format."}
        if self.uncovered:
            info["x-factorysim-formats-without-contract"] = sorted(set(self.uncovered))
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "info": info,
            "defaultContentType": "application/json",
            "servers": self.servers,
            "channels": self.channels,
            "operations": self.operations,
            "components": components,
        }


def document(config: Config) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``config`` (a new dict each call)."""
    built = _Document(config)
    built.kafka()
    for target in config.mqtt.enabled_targets:
        built.mqtt(target)
    return built.document()
