"""What a contract describes: messages (payload, headers, key) and the topics they travel on.

A format's contract module turns a configuration into :class:`Message` objects (one per kind of
message it makes) and, for an MQTT target, :class:`TopicMessages` (a topic with its placeholders
and what is published there).  :mod:`simulator.contracts.asyncapi` assembles them into a document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from simulator.config.mqtt import RecordKind
from simulator.contracts.schema import Schema
from simulator.formats.common import TopicTemplate

Parameter = dict[str, Any]
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Message:
    """One kind of message.  ``name`` is unique in a document (letters, digits, ``.``, ``-``, ``_``)."""

    name: str
    title: str
    summary: str
    # None: bytes the contract does not describe (a dead letter's original value); a string: a schema in
    # ``payload_format`` (e.g. a protobuf definition)
    payload: Schema | str | None
    content_type: str = "application/json"
    headers: Schema | None = None  # an object schema of the Kafka headers (MQTT messages carry none)
    key: Schema | None = None  # the Kafka key's schema (as UTF-8 text)
    records: tuple[RecordKind, ...] = ()  # the model records it comes from: what an MQTT target's ``records`` selects
    retain: bool = False  # an MQTT message the broker keeps as the topic's last value
    # the payload schema's format when it is not JSON Schema, e.g. "application/vnd.google.protobuf;version=3"
    payload_format: str | None = None

    @property
    def json_payload(self) -> Schema | None:
        """The payload's JSON Schema (None: the payload has none)."""
        return self.payload if isinstance(self.payload, dict) and self.payload_format is None else None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"message name {self.name!r}: only letters, digits, '.', '-' and '_'")


@dataclass(frozen=True)
class TopicMessages:
    """An MQTT topic (``{name}`` for each placeholder left to the message) and its messages."""

    address: str
    parameters: Mapping[str, Parameter]  # placeholder -> what it stands for
    messages: tuple[Message, ...]
    description: str = ""
    action: str = "send"  # "receive": factorysim subscribes (a protocol's own command topics)
    qos: int | None = None  # None: the target's qos


def parameter(description: str, values: Iterable[str] = ()) -> Parameter:
    """An AsyncAPI parameter object: what a placeholder stands for, with a few example values."""
    found: Parameter = {"description": description}
    shown = examples(values)
    if shown:
        found["examples"] = shown
    return found


def topic_address(template: TopicTemplate, known: Mapping[str, str],
                  variable: Mapping[str, Parameter]) -> tuple[str, dict[str, Parameter]]:
    """The address of a topic template: ``known`` placeholders filled in (with the text the format
    puts there), the ``variable`` ones (placeholder -> description) kept as ``{name}``; levels that
    come out empty are dropped, as the format drops them.  Returns (address, its parameters)."""
    values = dict(known)
    values.update({name: "{" + name + "}" for name in variable})
    address = template.render(values)
    parameters = {name: text for name, text in variable.items() if "{" + name + "}" in address}
    return address, parameters


def examples(values: Iterable[str], limit: int = 8) -> list[str]:
    return list(dict.fromkeys(values))[:limit]
