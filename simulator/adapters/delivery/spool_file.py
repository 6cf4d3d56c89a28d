"""The spool's SQLite file: its schema, how the messages of one write are packed into one row and
read back, and the errors of opening it (:mod:`simulator.adapters.delivery.spool` uses them)."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterable
from pathlib import Path

from simulator.errors import FactorySimError
from simulator.formats import WireMessage

APPLICATION_ID = 0x46535350  # "FSSP" in the file's header: this SQLite file is a factorysim spool
SCHEMA_VERSION = 1
TABLES = {"batches", "marks", "state"}
SCHEMA = ("CREATE TABLE batches (id INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, count INTEGER NOT NULL,"
          " data BLOB NOT NULL)",
          "CREATE TABLE marks (origin TEXT PRIMARY KEY, position INTEGER NOT NULL, updated REAL NOT NULL)",
          "CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
          "INSERT INTO state (key, value) VALUES ('acked_through', 0)")
INSERT = "INSERT INTO batches (id, first_seq, count, data) VALUES (?, ?, ?, ?)"
SELECT = "SELECT first_seq, data FROM batches WHERE id >= ? ORDER BY id"
UPSERT_MARK = ("INSERT INTO marks (origin, position, updated) VALUES (?, ?, ?) ON CONFLICT (origin)"
               " DO UPDATE SET position = excluded.position, updated = excluded.updated")
HEADER = struct.Struct("<HII?")  # per message in a row: topic, key and value lengths, retain; then the bytes
PAGE_SIZE = 16384  # of a new file: 64 KiB writes big rows a little faster, but small writes much slower
ROW_BYTES = 16 << 20  # a write larger than this (a backlog after failed writes) is split into rows
Entry = tuple[WireMessage, int]  # a message and its bytes


class SpoolError(FactorySimError):
    """The spool file cannot be used; the message names the file and says why, in one sentence."""


def open_error(path: Path, exc: sqlite3.Error) -> SpoolError:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return SpoolError(f"spool {path} is in use by another process (a spool belongs to one process: give "
                          "each its own spool.path)")
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return SpoolError(f"{path} is not a spool (not an SQLite database, or a damaged one): move it away or "
                          "choose another spool.path")
    return SpoolError(f"spool {path} cannot be opened for writing ({exc})")


def pack(entries: Iterable[Entry]) -> list[tuple[int, bytes]]:
    """``entries`` as rows' (count, data), each row at most about ROW_BYTES."""
    rows: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    count = size = 0
    pack_header = HEADER.pack
    for message, n in entries:
        topic = message.topic.encode()
        parts += (pack_header(len(topic), len(message.key), len(message.value), message.retain), topic, message.key,
                  message.value)
        count += 1
        size += n
        if size >= ROW_BYTES:
            rows.append((count, b"".join(parts)))
            parts, count, size = [], 0, 0
    if count:
        rows.append((count, b"".join(parts)))
    return rows


def unpack(data: bytes, skip: int, limit: int) -> list[Entry]:
    """Up to ``limit`` messages of a row's ``data``, after its first ``skip``."""
    out: list[Entry] = []
    pos, end, unpack_header, head = 0, len(data), HEADER.unpack_from, HEADER.size
    while pos < end and len(out) < limit:
        topic_n, key_n, value_n, retain = unpack_header(data, pos)
        pos += head
        if skip:
            skip -= 1
        else:
            key_at, value_at = pos + topic_n, pos + topic_n + key_n
            out.append((WireMessage(data[pos:key_at].decode(), data[key_at:value_at], (),
                                    data[value_at:value_at + value_n], retain), topic_n + key_n + value_n))
        pos += topic_n + key_n + value_n
    return out
