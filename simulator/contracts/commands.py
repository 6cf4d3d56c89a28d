"""Runtime commands as an MQTT command topic takes them: the whole JSON object, its name included.

Built from the HTTP API's description of the same commands
(:func:`simulator.adapters.openapi.request_body_schema`, itself made from
:data:`simulator.command_schema.FIELDS` and ``ALIASES``): one schema per command, with the
command's name (``command``, or ``cmd``) added and the OpenAPI document's shared schemas written
in place, so that the result stands on its own.
"""

from __future__ import annotations

import copy
from typing import Any

from simulator.adapters import openapi
from simulator.command_schema import COMMANDS, MAX_COMMAND_BYTES
from simulator.contracts.model import Message
from simulator.contracts.schema import Schema, const

_REFERENCE = "#/components/schemas/"


def _inline(node: Any, shared: dict[str, Any]) -> Any:
    """``node`` with every reference to the OpenAPI document's shared schemas replaced by the schema."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REFERENCE):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(copy.deepcopy(shared[ref.removeprefix(_REFERENCE)]), shared), **_inline(rest, shared)}
        return {key: _inline(value, shared) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, shared) for value in node]
    return node


def command_payload(command: str, shared: dict[str, Any] | None = None) -> Schema:
    """The object of ``command`` on a command topic (the machine id in the body)."""
    shared = shared if shared is not None else openapi.document()["components"]["schemas"]
    body: Schema = _inline(openapi.request_body_schema(command, path="/"), shared)
    name = const(command)
    body["properties"] = {"command": name, "cmd": {**name, "description": "another name of 'command'"},
                          **body["properties"]}
    body.setdefault("allOf", []).append({"anyOf": [{"required": ["command"]}, {"required": ["cmd"]}]})
    body["title"] = f"command {command}"
    return body


def command_message() -> Message:
    shared = openapi.document()["components"]["schemas"]
    schema = {"oneOf": [command_payload(command, shared) for command in COMMANDS],
              "description": f"A runtime command, at most {MAX_COMMAND_BYTES:,} bytes of JSON; the same commands "
                             "and fields as the HTTP API (see GET /openapi.json)"}
    return Message("command", "Runtime command", "Block, repair, anomaly, pause, resume, speed and the plant-wide "
                   "and delivery switches", schema)
