"""Checking real messages against an AsyncAPI document as a consumer would: find the channel whose
address matches the topic, then the one message of that channel whose payload (and headers, and
key) the message satisfies, with the draft 2020-12 validator and format checking."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import orjson

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS)


def problems(schema: dict[str, Any], instance: Any) -> list[str]:
    """Why ``instance`` fails ``schema`` (empty: it validates)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            for e in validator(schema).iter_errors(instance)]


def address_pattern(address: str) -> re.Pattern[str]:
    """A channel address with ``{parameter}`` expressions as a regular expression of its topics."""
    parts = re.split(r"(\{[A-Za-z0-9_]+\})", address)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


@dataclass
class Checked:
    """Messages checked per component message, and the failures."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def ok(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1


class Contract:
    """An AsyncAPI document's channels of one server (``servers``: its server ids)."""

    def __init__(self, document: dict[str, Any], servers: Iterable[str]) -> None:
        wanted = {f"#/servers/{s}" for s in servers}
        self.document = document
        self.channels = [(address_pattern(c["address"]), c) for c in document["channels"].values()
                         if {s["$ref"] for s in c["servers"]} & wanted]
        self.validators: dict[str, tuple[Any, Any, Any]] = {}
        for key, message in document["components"]["messages"].items():
            self.validators[key] = tuple(  # type: ignore[assignment]
                None if schema is None else validator(schema)
                for schema in (message.get("payload"), message.get("headers"),
                               message.get("bindings", {}).get("kafka", {}).get("key")))

    def channel(self, topic: str) -> dict[str, Any] | None:
        """The one channel whose address matches ``topic`` (None: none or several)."""
        channels = [c for pattern, c in self.channels if pattern.match(topic)]
        return channels[0] if len(channels) == 1 else None

    def match(self, topic: str, value: Any, headers: Sequence[tuple[str, bytes]] = (),
              key: bytes | None = None) -> tuple[str | None, str]:
        """(the component message ``value`` on ``topic`` is, or None; why not)."""
        channel = self.channel(topic)
        if channel is None:
            return None, f"{topic}: not exactly one channel matches"
        header_map = {name: data.decode() for name, data in headers}
        matched = []
        for ref in channel["messages"].values():
            name = ref["$ref"].rsplit("/", 1)[1]
            body, head, key_schema = self.validators[name]
            if body is not None and not body.is_valid(value):
                continue
            if head is not None and not head.is_valid(header_map):
                continue
            if key_schema is not None and key is not None and not key_schema.is_valid(key.decode()):
                continue
            matched.append(name)
        if len(matched) == 1:
            return matched[0], ""
        reasons = []
        for ref in channel["messages"].values():
            message = self.document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            if message.get("payload") is not None:
                reasons += [f"{message['name']}: {p}" for p in problems(message["payload"], value)[:3]]
            if message.get("headers") is not None:
                reasons += [f"{message['name']} headers: {p}" for p in problems(message["headers"], header_map)[:3]]
        return None, f"{topic}: matches {matched or 'no message'}: {value!r:.300} {reasons[:6]}"

    def check(self, checked: Checked, topic: str, payload: bytes, headers: Sequence[tuple[str, bytes]] = (),
              key: bytes | None = None, *, json: bool = True) -> None:
        """Record which message ``payload`` on ``topic`` is, or why it is none."""
        value = orjson.loads(payload) if json else payload.decode()
        name, why = self.match(topic, value, headers, key)
        if name is None:
            checked.failures.append(why)
        else:
            checked.ok(name)
