"""A delivery target's outgoing queue on disk: :class:`SpoolQueue`, the durable
:class:`~simulator.adapters.delivery.queue.DeliveryQueue`, one SQLite row per message.

- handed over = written: an item's ``on_done`` runs once its messages are committed (``fsync`` false:
  safe from a crash or SIGKILL of the process; true: from a power loss too).  A failed write (a full
  disk) keeps them in memory and is retried every second.
- order: messages are taken in the order they were put, across restarts too.
- at least once: a row is deleted at its ``Taken.done()``; a message taken but not done when the
  process ends is taken again by the next one (the receiver may get it twice).
- one process per file: SQLite's exclusive lock, taken at open and released by the operating
  system when the process dies; a second opener fails at once.
- marks: the last position put per origin is written in the same transaction as the messages, so
  a source replayed after a restart (the bridge rereading Kafka) is not spooled twice.

Cheap in the event loop: ``put`` buffers; one flush per loop turn writes the new rows, deletes the
delivered ones and keeps the marks, in one transaction.  The newest rows stay in a bounded memory
cache for ``take``: the file is read back only after a restart or for a backlog that outgrew it.
Sizes count message bytes (topic characters + key + value) in the file, in flight included, and
waiting to be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator.adapters.delivery.queue import Done, Encode, Mark, Taken
from simulator.asyncio_waits import wait_for
from simulator.errors import FactorySimError
from simulator.formats import WireMessage
from simulator.model.records import Record

log = logging.getLogger(__name__)

APPLICATION_ID = 0x46535350  # "FSSP" in the file's header: this SQLite file is a factorysim spool
SCHEMA_VERSION = 1
SCHEMA = ("CREATE TABLE messages (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, key BLOB NOT NULL,"
          " value BLOB NOT NULL, retain INTEGER NOT NULL)",
          "CREATE TABLE marks (origin TEXT PRIMARY KEY, position INTEGER NOT NULL, updated REAL NOT NULL)")
ROWS_PER_INSERT = 64  # rows per INSERT statement: a statement run per row costs more than its row
DELETE = "DELETE FROM messages WHERE id BETWEEN ? AND ?"
SELECT = "SELECT id, topic, key, value, retain FROM messages WHERE id >= ? ORDER BY id LIMIT ?"
UPSERT_MARK = ("INSERT INTO marks (origin, position, updated) VALUES (?, ?, ?) ON CONFLICT (origin)"
               " DO UPDATE SET position = excluded.position, updated = excluded.updated")
MAX_ORIGINS = 10_000  # marks kept; the least recently updated origin is forgotten first
CACHE_BYTES = 8 << 20  # message bytes of the newest rows kept in memory for taking
READ_BATCH = 512  # rows read back from the file at a time
RETRY_S = 1.0  # after a failed write
ROOM_FRACTION = 0.9  # ``block``: room again below this share of max_bytes
POLICIES = ("block", "drop-oldest", "drop-newest")
Row = tuple[int, WireMessage, int]  # id, message, message bytes


class SpoolError(FactorySimError):
    """The spool file cannot be used; the message names the file and says why, in one sentence."""


def _open_error(path: Path, exc: sqlite3.Error) -> SpoolError:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return SpoolError(f"spool {path} is in use by another process (a spool belongs to one process: give "
                          "each its own spool.path)")
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return SpoolError(f"{path} is not a spool (not an SQLite database, or a damaged one): move it away or "
                          "choose another spool.path")
    return SpoolError(f"spool {path} cannot be opened for writing ({exc})")


def _insert(conn: sqlite3.Connection, rows: deque[Row]) -> None:
    params: list[object] = []
    for row_id, message, _ in rows:  # retain as an int: a bool goes through sqlite3's slow adaptation
        params += (row_id, message.topic, message.key, message.value, 1 if message.retain else 0)
    step = ROWS_PER_INSERT * 5
    for start in range(0, len(params), step):
        chunk = params[start:start + step]
        conn.execute(_insert_sql(len(chunk) // 5), chunk)


@functools.cache
def _insert_sql(rows: int) -> str:
    placeholders = ", ".join(["(?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO messages (id, topic, key, value, retain) VALUES {placeholders}"  # noqa: S608 - no values


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    """``ids`` as runs of consecutive ids, (first, last): a range delete each (acks come mostly in order)."""
    ids.sort()
    runs = []
    first = last = ids[0]
    for row_id in ids:
        if row_id > last + 1:
            runs.append((first, last))
            first = row_id
        last = row_id
    runs.append((first, last))
    return runs


class SpoolQueue:
    """The outgoing queue in the SQLite file ``path``; :meth:`open` it before use (see the module)."""

    def __init__(self, path: Path, *, max_bytes: int, policy: str, encode: Encode, fsync: bool = False,
                 name: str = "") -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.path, self.max_bytes, self.policy, self.encode, self.fsync, self.name = (
            path, max_bytes, policy, encode, fsync, name)
        self.room_bytes = int(max_bytes * ROOM_FRACTION)
        self.cache_limit = CACHE_BYTES
        self.on_room: Callable[[], None] | None = None
        self.dropped = {"oldest": 0, "newest": 0}  # messages
        self.bytes = 0
        self.skipped_marked = self.recovered = self.write_errors = self.not_kept = 0
        self.last_error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # for the next flush: rows to write (with their items' on_done), ids to delete, marks
        self._pending: deque[Row] = deque()
        self._pending_bytes = 0
        self._dones: list[Callable[[], None]] = []
        self._deletes: list[int] = []
        self._mark_writes: dict[str, int] = {}
        self._mark_deletes: set[str] = set()
        self._marks: dict[str, int] = {}  # origin -> last position put, least recently updated first
        self._next_id = 1
        # written rows not taken, oldest first: ``_front`` (read back), ``_on_disk_only`` rows from id
        # ``_disk_from`` on (in the file only), ``_cache`` (the newest, in memory too)
        self._waiting = self._on_disk_only = self._disk_from = self._cache_bytes = 0
        self._front: deque[Row] = deque()
        self._cache: deque[Row] = deque()
        self._in_flight: dict[int, int] = {}  # taken, not done: id -> message bytes
        self._stored = 0  # rows in the file, in flight included
        self._flush_handle: asyncio.Handle | None = None
        self._failing = False
        self._has_items = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    # -- opening -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Create or reopen the file, lock it for this process and read what a previous one left."""
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool {path}: cannot create the directory {path.parent} ({exc.strerror or exc})") \
                from exc
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise SpoolError(f"spool {path}: the directory {path.parent} is not writable")
        conn = None
        try:
            # any one thread at a time (open() may run in a worker thread, the rest in the event loop)
            conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
            self._load(conn)
        except (sqlite3.Error, SpoolError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, SpoolError):
                raise
            raise _open_error(path, exc) from exc
        self._conn = conn

    def _load(self, conn: sqlite3.Connection) -> None:
        path = self.path
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")  # before the first access: locks are kept till closed
        # look before changing anything: a file that is not a spool is left as it is
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        new = app_id == 0 and not tables
        if not new and (app_id != APPLICATION_ID or not {"messages", "marks"} <= tables):
            raise SpoolError(f"{path} is not a spool (another SQLite database, or a damaged spool): move it away "
                             "or choose another spool.path")
        if version > SCHEMA_VERSION:
            raise SpoolError(f"spool {path} was written by a newer factorysim (schema version {version}, this one "
                             f"reads {SCHEMA_VERSION}): upgrade, or move the file away")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise SpoolError(f"spool {path}: SQLite cannot keep a write-ahead log there (choose another spool.path)")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'NORMAL'}")
        # a checkpoint (the log copied into the file, with fsyncs) every 16 MiB of log rather than 4: a
        # queue rewrites the same few pages, so a longer log costs no more to copy, and far fewer fsyncs
        conn.execute("PRAGMA wal_autocheckpoint = 4096")
        conn.execute("PRAGMA journal_size_limit = 33554432")
        conn.execute("PRAGMA secure_delete = OFF")  # deleted rows need not be overwritten with zeros
        conn.execute("BEGIN IMMEDIATE")
        if new:
            for sql in SCHEMA:
                conn.execute(sql)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # a write: now the file is this process's
        count, total, first, last = conn.execute(
            "SELECT count(*), total(length(topic) + length(key) + length(value)), min(id), max(id)"
            " FROM messages").fetchone()
        self._marks = dict(conn.execute("SELECT origin, position FROM marks ORDER BY updated").fetchall())
        conn.execute("COMMIT")
        self.recovered = self._stored = self._waiting = self._on_disk_only = count
        self.bytes = int(total)
        self._disk_from, self._next_id = first or 0, (last or 0) + 1
        if count:
            log.info("target %s: spool %s holds %d message(s) (%d bytes) from before; they go first",
                     self.name, path, count, self.bytes)

    # -- the producer side -------------------------------------------------------------------------
    def put(self, item: Record | list[WireMessage], on_done: Done = None, mark: Mark | None = None) -> None:
        if self._conn is None:  # not open, or closed: not kept (and not handed over)
            if not self.not_kept:
                log.warning("target %s: spool %s is %s: items put now are not kept", self.name, self.path,
                            "closed" if self._closed else "not open")
            self.not_kept += 1
            return
        if mark is not None and not self._new_mark(mark):
            self.skipped_marked += 1
            if on_done is not None:
                on_done()
            return
        messages = item if isinstance(item, list) else self.encode(item)
        if not messages:
            if on_done is not None:
                on_done()
            if mark is not None:
                self._schedule()
            return
        row_id = self._next_id
        rows = []
        total = 0
        for message in messages:
            size = len(message.topic) + len(message.key) + len(message.value)
            rows.append((row_id, message, size))
            row_id += 1
            total += size
        if self.policy != "block" and self.bytes + total > self.max_bytes:
            if self.policy == "drop-newest":
                self._count_drop("newest", len(rows))
                if on_done is not None:
                    on_done()
                self._schedule()  # the mark
                return
            self._drop_oldest(self.bytes + total - self.max_bytes)
        self._next_id = row_id
        self._pending.extend(rows)
        self._pending_bytes += total
        self.bytes += total
        if on_done is not None:
            self._dones.append(on_done)
        if self.bytes >= self.max_bytes and self.policy == "block":
            self._room.clear()
        if self._flush_handle is None:
            self._schedule()

    def _new_mark(self, mark: Mark) -> bool:
        """Note ``mark``; False if its origin was put at or after this position already."""
        origin, position = mark
        marks = self._marks
        last = marks.get(origin)
        if last is not None:
            if position <= last:
                return False
            del marks[origin]  # put back last: the most recently updated
        elif len(marks) >= MAX_ORIGINS:
            oldest = next(iter(marks))
            del marks[oldest]
            self._mark_writes.pop(oldest, None)
            self._mark_deletes.add(oldest)
        marks[origin] = self._mark_writes[origin] = position
        return True

    def _drop_oldest(self, excess: int) -> None:
        """Drop the oldest messages not taken until ``excess`` bytes are freed (or none is left)."""
        freed = count = 0
        while freed < excess:
            if rows := self._oldest(1):
                self._deletes.append(rows[0][0])
            elif self._pending:
                rows = [self._pending.popleft()]
                self._pending_bytes -= rows[0][2]
            else:
                break
            freed += rows[0][2]
            count += 1
        self.bytes -= freed
        if count:
            self._count_drop("oldest", count)

    def _count_drop(self, which: str, count: int) -> None:
        before = self.dropped[which]
        self.dropped[which] = before + count
        if before == 0 or before // 10_000 != (before + count) // 10_000:
            log.warning("target %s: spool %s full (%d bytes), dropped %d %s message(s) so far (policy %s)",
                        self.name, self.path, self.max_bytes, before + count, which, self.policy)

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def _update_room(self) -> None:
        if self.policy != "block":
            return
        if self._failing or self.bytes >= self.max_bytes:
            self._room.clear()
        elif not self._room.is_set() and self.bytes < self.room_bytes:
            self._room.set()
            if self.on_room is not None:
                self.on_room()

    # -- writing -----------------------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write the new rows, delete the delivered ones and keep the marks: one transaction; then
        hand the written items over."""
        self._flush_handle = None
        conn, pending, deletes = self._conn, self._pending, self._deletes
        if conn is None or not (pending or deletes or self._mark_writes or self._mark_deletes or self._dones):
            return
        try:
            conn.execute("BEGIN")
            if pending:
                _insert(conn, pending)
            if deletes:
                conn.executemany(DELETE, _runs(deletes))
            if self._mark_deletes:
                conn.executemany("DELETE FROM marks WHERE origin = ?", [(o,) for o in self._mark_deletes])
            if self._mark_writes:
                now = time.time()
                conn.executemany(UPSERT_MARK, [(o, p, now) for o, p in self._mark_writes.items()])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._write_failed(exc)
            return
        dones = self._dones
        self._pending, self._deletes, self._dones, self._mark_writes, self._mark_deletes = deque(), [], [], {}, set()
        self._stored += len(pending) - len(deletes)
        if pending:
            self._waiting += len(pending)
            cache = self._cache
            cache.extend(pending)
            self._cache_bytes += self._pending_bytes
            self._pending_bytes = 0
            while self._cache_bytes > self.cache_limit:  # the oldest go on waiting in the file only
                row = cache.popleft()
                if not self._on_disk_only:
                    self._disk_from = row[0]
                self._on_disk_only += 1
                self._cache_bytes -= row[2]
            self._has_items.set()
        if self._failing:
            self._failing = False
            log.info("target %s: spool %s is written again", self.name, self.path)
            self._update_room()
        for done in dones:
            done()

    def _write_failed(self, exc: sqlite3.Error) -> None:
        self.write_errors += 1
        error = f"{type(exc).__name__}: {exc}"
        if not self._failing or error != self.last_error:
            log.error("target %s: cannot write the spool %s (%s); %d message(s) wait in memory, retrying every %g s",
                      self.name, self.path, error, len(self._pending), RETRY_S)
        self.last_error = error
        self._failing = True
        self._update_room()
        self._flush_handle = asyncio.get_running_loop().call_later(RETRY_S, self._flush)

    # -- the sending side --------------------------------------------------------------------------
    async def take(self, limit: int, timeout_s: float | None = None) -> list[Taken]:
        if not self._waiting:
            loop = asyncio.get_running_loop()
            deadline = None if timeout_s is None else loop.time() + timeout_s
            while not self._waiting:
                if self._conn is None or (self._closed and not self._pending):
                    return []
                self._has_items.clear()
                try:
                    await wait_for(self._has_items.wait(), None if deadline is None else deadline - loop.time())
                except TimeoutError:
                    return []
        in_flight, ack, taken = self._in_flight, self._ack, []
        for row_id, message, size in self._oldest(limit):
            in_flight[row_id] = size
            taken.append(Taken([message], functools.partial(ack, row_id)))
        return taken

    def _oldest(self, n: int) -> list[Row]:
        """Remove and return the ``n`` oldest written rows not taken (fewer when fewer wait)."""
        n = min(n, self._waiting)
        out: list[Row] = []
        front, cache = self._front, self._cache
        while len(out) < n:
            if front:
                out.append(front.popleft())
            elif self._on_disk_only:
                self._read_front(n - len(out))
            else:
                rows = [cache.popleft() for _ in range(n - len(out))]
                self._cache_bytes -= sum(row[2] for row in rows)
                out += rows
        self._waiting -= len(out)
        return out

    def _read_front(self, n: int) -> None:
        assert self._conn is not None
        limit = min(max(n, READ_BATCH), self._on_disk_only)
        rows = self._conn.execute(SELECT, (self._disk_from, limit)).fetchall()
        if len(rows) < limit:
            raise SpoolError(f"spool {self.path} lost {limit - len(rows)} message(s) while open (was it changed by "
                             "another program?)")
        self._front.extend((i, WireMessage(topic, key, (), value, bool(retain)), len(topic) + len(key) + len(value))
                           for i, topic, key, value, retain in rows)
        self._on_disk_only -= len(rows)
        self._disk_from = rows[-1][0] + 1

    def _ack(self, row_id: int) -> None:
        size = self._in_flight.pop(row_id, None)
        if size is None:  # done twice, or after aclose
            return
        self._deletes.append(row_id)
        self.bytes -= size
        if self._flush_handle is None:
            self._schedule()
        if not self._room.is_set():
            self._update_room()

    # -- the end -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._has_items.set()

    @property
    def drained(self) -> bool:
        return self._closed and not self._waiting and not self._pending

    def __len__(self) -> int:
        return self._waiting + len(self._pending)

    def health(self) -> dict[str, Any]:
        return {"queue_depth": len(self), "queue_capacity": None, "overflow": self.policy,
                "dropped_oldest": self.dropped["oldest"], "dropped_newest": self.dropped["newest"],
                "spool": {"path": str(self.path), "bytes": self.bytes, "max_bytes": self.max_bytes,
                          "messages": self._stored, "policy": self.policy, "fsync": self.fsync,
                          "skipped_marked": self.skipped_marked, "recovered": self.recovered,
                          "write_errors": self.write_errors, "last_error": self.last_error,
                          "writing_fails": self._failing}}

    async def aclose(self) -> None:
        """Write what is pending and close the file (messages in flight stay in it: they go again)."""
        conn = self._conn
        if conn is None:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        if self._flush_handle is not None:  # the write failed again: what is in memory is lost
            self._flush_handle.cancel()
            self._flush_handle = None
            log.error("target %s: spool %s closed with %d message(s) not written (%s)",
                      self.name, self.path, len(self._pending), self.last_error)
        conn.close()
        self._conn = None
        self._front.clear()
        self._cache.clear()
        self._in_flight.clear()
        self._has_items.set()
