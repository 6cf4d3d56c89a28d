"""Dead letters (:mod:`simulator.adapters.dead_letters`): the original record's key, value and
headers, with the headers that say why and where it came from, and what was cut.

The value is the original one (or a prefix of it): whatever bytes were sent, so it has no schema;
the headers do.  The original headers are kept under their own names (never one starting with
``dlq.``); any ``dlq.`` header but those listed here fails the schema.
"""

from __future__ import annotations

from simulator.adapters.dead_letters import MAX_DETAIL_BYTES, MAX_KEY_BYTES
from simulator.contracts.model import Message
from simulator.contracts.schema import Schema, const

DECIMAL: Schema = {"type": "string", "pattern": r"^\d+$"}
TRUE = const("true")
ORIGINAL_HEADER = r"^(?!dlq\.)"


def headers() -> Schema:
    """The headers of a dead letter (UTF-8 text values)."""
    origin: dict[str, Schema] = {
        "dlq.reason": {"type": "string", "pattern": r"^[a-z_]+$",
                       "description": "reason code, e.g. not_json, missing_field, unknown_location, duplicate_lot, "
                                      "unreadable"},
        "dlq.detail": {"type": "string", "description": f"what is wrong, at most {MAX_DETAIL_BYTES} bytes"},
        "dlq.topic": {"type": "string", "description": "the topic the record was read from"},
        "dlq.partition": DECIMAL,
        "dlq.offset": DECIMAL,
    }
    notes: dict[str, Schema] = {
        "dlq.truncated": {**TRUE, "description": "the value is a prefix of the original"},
        "dlq.original_size": {**DECIMAL, "description": "bytes of the original value"},
        "dlq.original_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                                "description": "SHA-256 of the original value (hex)"},
        "dlq.key_truncated": {**TRUE, "description": "the key is a prefix of the original"},
        "dlq.original_key_size": {**DECIMAL, "description": "bytes of the original key"},
        "dlq.headers_dropped": {**DECIMAL, "description": "original headers left out"},
    }
    return {
        "type": "object",
        "description": "Kafka record headers: the original record's (not starting with 'dlq.'), then these",
        "properties": {**origin, **notes},
        "required": list(origin),
        "patternProperties": {ORIGINAL_HEADER: {"type": "string", "description": "an original header"}},
        "additionalProperties": False,
    }


def dead_letter_message() -> Message:
    return Message("dead_letter", "Dead letter", "An order the service refused, with why and where it came from",
                   None, content_type="application/octet-stream", headers=headers(),
                   key={"type": "string", "description": f"the original key (cut to {MAX_KEY_BYTES:,} bytes when the "
                                                         "letter does not fit as it is)"})
