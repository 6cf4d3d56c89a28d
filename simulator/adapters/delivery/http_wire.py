"""What an HTTP sink's requests look like: the bodies a batch of messages becomes, the content
types, a ``Retry-After`` read as seconds, and URLs without the parts that may hold secrets."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from yarl import URL

from simulator.config.http_sinks import HttpSink
from simulator.formats import WireMessage

CONTENT_TYPES = {"json-array": "application/json", "json": "application/json", "ndjson": "application/x-ndjson"}
RETRY_AFTER_CAP_S = 3600.0  # a Retry-After further away than this is taken as this


def request_bodies(messages: Sequence[WireMessage], sink: HttpSink) -> list[tuple[int, bytes]]:
    """The request bodies ``messages`` become, in order, each with how many messages it carries."""
    elements = [_element(m, sink) for m in messages]
    if sink.body == "json":
        return [(1, e) for e in elements]
    array = sink.body == "json-array"
    batches: list[list[bytes]] = []
    size = 0
    for element in elements:  # each element costs a comma or a line break more
        if (not batches or len(batches[-1]) >= sink.batch.max_records
                or size + len(element) + 1 > sink.batch.max_bytes):
            batches.append([])
            size = 1 if array else 0  # the brackets, less the first element's comma
        batches[-1].append(element)
        size += len(element) + 1
    if array:
        return [(len(b), b"[" + b",".join(b) + b"]") for b in batches]
    return [(len(b), b"".join(e + b"\n" for e in b)) for b in batches]


def _element(message: WireMessage, sink: HttpSink) -> bytes:
    value = message.value or b"null"
    if sink.body == "ndjson" and (b"\n" in value or b"\r" in value):
        value = orjson.dumps(orjson.loads(value))  # a line break outside a JSON string is white space
    if not sink.envelope:
        return value
    key = orjson.dumps(message.key.decode("utf-8", "replace")) if message.key else b"null"
    return b'{"topic":' + orjson.dumps(message.topic) + b',"key":' + key + b',"payload":' + value + b"}"


def retry_after_s(value: str | None) -> float | None:
    """A ``Retry-After`` header's wait in seconds (delta seconds or an HTTP date), capped; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return min(float(value), RETRY_AFTER_CAP_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), RETRY_AFTER_CAP_S)


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment (fit for logs and health)."""
    return str(URL(url).with_user(None).with_query(None).with_fragment(None))
