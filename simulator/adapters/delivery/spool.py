"""A delivery target's outgoing queue on disk: :class:`SpoolQueue`, the durable
:class:`~simulator.adapters.delivery.queue.DeliveryQueue`, in an SQLite file, one row per write.

- handed over = written: an item's ``on_done`` runs once its messages are committed (``fsync`` false:
  safe from a crash or SIGKILL of the process; true: from a power loss too).  A failed write (a full
  disk) keeps them in memory and is retried every second.
- order: messages are taken in the order they were put, across restarts too.
- at least once: every written message has a sequence number; the file keeps ``acked_through``, the
  highest one up to which every message is done (or dropped), and a row goes once all of its
  messages are at or below it.  A message not done when the process ends is taken again by the next
  one (the receiver may get it twice); so is one done out of order above ``acked_through`` (at most
  what was in flight, and the ones ``drop-oldest`` dropped after it).
- one process per file: SQLite's exclusive lock, taken at open and released by the operating
  system when the process dies; a second opener fails at once.
- marks: the last position put per origin is written in the same transaction as the messages, so
  a source replayed after a restart (the bridge rereading Kafka) is not spooled twice.

Cheap in the event loop: ``put`` buffers; one flush per loop turn writes everything put in the turn
as one row (the messages packed one after the other), moves ``acked_through``, deletes the rows
behind it and keeps the marks, in one transaction.  Acknowledgements alone are written every
1,000 or 0.2 s, not one by one.  The newest messages stay in a bounded memory cache for ``take``:
the file is read back only after a restart or for a backlog that outgrew it.  Sizes count message
bytes (topic in UTF-8 + key + value) not done yet: in the file, in flight, waiting to be written.
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
from simulator.adapters.delivery.spool_file import (
    APPLICATION_ID,
    HEADER,
    INSERT,
    PAGE_SIZE,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT,
    TABLES,
    UPSERT_MARK,
    Entry,
    SpoolError,
    open_error,
    pack,
    unpack,
)
from simulator.asyncio_waits import wait_for
from simulator.formats import WireMessage
from simulator.model.records import Record

log = logging.getLogger(__name__)

MAX_ORIGINS = 10_000  # marks kept; the least recently updated origin is forgotten first
CACHE_BYTES = 8 << 20  # message bytes of the newest messages kept in memory for taking
READ_MESSAGES = 512  # read back from the file at least this many at a time (whole rows)
ACKS_PER_WRITE = 1000  # acknowledgements alone are written once this many wait ...
ACK_WRITE_S = 0.2  # ... or after this long
RETRY_S = 1.0  # after a failed write
ROOM_FRACTION = 0.9  # ``block``: room again below this share of max_bytes
POLICIES = ("block", "drop-oldest", "drop-newest")
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
        # for the next flush: messages to write (with their items' on_done), marks
        self._pending: deque[Entry] = deque()
        self._pending_bytes = 0
        self._dones: list[Callable[[], None]] = []
        self._mark_writes: dict[str, int] = {}
        self._mark_deletes: set[str] = set()
        self._marks: dict[str, int] = {}  # origin -> last position put, least recently updated first
        # written messages have the sequence numbers up to ``_next_seq`` (excluded); those from
        # ``_next_take`` on wait to be taken, oldest first: ``_front`` (read back), ``_on_disk_only``
        # from ``_disk_from`` on (in the file only), ``_cache`` (the newest, in memory too)
        self._next_seq = self._next_take = 1
        self._on_disk_only = self._disk_from = self._cache_bytes = 0
        self._front: deque[Entry] = deque()
        self._cache: deque[Entry] = deque()
        self._in_flight: dict[int, int] = {}  # taken, not done: seq -> message bytes
        self._acked_through = self._written_through = 0  # in memory, in the file
        self._acked_above: set[int] = set()  # done above ``_acked_through``
        self._acks_waiting = 0
        self._not_done = 0  # messages not done (or dropped): written or waiting to be
        self._rows: deque[tuple[int, int]] = deque()  # the file's rows in order: (id, last seq)
        self._flush_handle: asyncio.Handle | None = None
        self._ack_handle: asyncio.TimerHandle | None = None
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
            raise open_error(path, exc) from exc
        self._conn = conn

    def _load(self, conn: sqlite3.Connection) -> None:
        path = self.path
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")  # before the first access: locks are kept till closed
        # look before changing anything: a file that is not a spool is left as it is
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        new = app_id == 0 and not tables
        if not new and (app_id != APPLICATION_ID or TABLES - tables):
            raise SpoolError(f"{path} is not a spool (another SQLite database, or a damaged spool): move it away "
                             "or choose another spool.path")
        if version > SCHEMA_VERSION:
            raise SpoolError(f"spool {path} was written by a newer factorysim (schema version {version}, this one "
                             f"reads {SCHEMA_VERSION}): upgrade, or move the file away")
        if new:  # a row is mostly overflow pages: larger pages cost fewer page writes and reads per byte
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise SpoolError(f"spool {path}: SQLite cannot keep a write-ahead log there (choose another spool.path)")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'NORMAL'}")
        # a checkpoint (the log copied into the file, with fsyncs) every 16 MiB of log: a queue rewrites
        # the same few pages, so a longer log costs no more to copy, and far fewer fsyncs
        conn.execute(f"PRAGMA wal_autocheckpoint = {(16 << 20) // PAGE_SIZE}")
        conn.execute("PRAGMA journal_size_limit = 33554432")
        conn.execute("PRAGMA secure_delete = OFF")  # deleted rows need not be overwritten with zeros
        conn.execute("BEGIN IMMEDIATE")
        if new:
            for sql in SCHEMA:
                conn.execute(sql)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # a write: now the file is this process's
        acked = conn.execute("SELECT value FROM state WHERE key = 'acked_through'").fetchone()
        rows = conn.execute("SELECT id, first_seq, count, length(data) FROM batches ORDER BY id").fetchall()
        acked_through = acked[0] if acked else 0
        done_part = None  # the first row, when some of its messages were done
        if rows and rows[0][1] <= acked_through:
            done_part = conn.execute("SELECT data FROM batches WHERE id = ?", (rows[0][0],)).fetchone()[0]
        self._marks = dict(conn.execute("SELECT origin, position FROM marks ORDER BY updated").fetchall())
        conn.execute("COMMIT")
        if acked is None:
            raise SpoolError(f"{path} is not a spool (a damaged spool: it has no acked_through): move it away "
                             "or choose another spool.path")
        self._acked_through = self._written_through = acked_through
        next_seq, total = acked_through + 1, 0
        for index, (row_id, first_seq, count, length) in enumerate(rows):
            if first_seq > next_seq or (index and first_seq != next_seq):
                raise SpoolError(f"spool {path} is damaged (messages {next_seq} to {first_seq - 1} are missing): "
                                 "move it away or choose another spool.path")
            self._rows.append((row_id, first_seq + count - 1))
            next_seq = first_seq + count
            total += length - HEADER.size * count
        if done_part is not None:
            total -= sum(n for _, n in unpack(done_part, 0, acked_through - rows[0][1] + 1))
        next_seq = max(next_seq, acked_through + 1)
        self._next_seq = next_seq
        self._next_take = self._disk_from = acked_through + 1
        self.recovered = self._not_done = self._on_disk_only = next_seq - acked_through - 1
        self.bytes = total
        if self.recovered:
            log.info("target %s: spool %s holds %d message(s) (%d bytes) from before; they go first",
                     self.name, path, self.recovered, self.bytes)

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
        entries = []
        total = 0
        for message in messages:
            topic = message.topic
            size = (len(topic) if topic.isascii() else len(topic.encode())) + len(message.key) + len(message.value)
            entries.append((message, size))
            total += size
        if self.policy != "block" and self.bytes + total > self.max_bytes:
            if self.policy == "drop-newest":
                self._count_drop("newest", len(entries))
                if on_done is not None:
                    on_done()
                self._schedule()  # the mark
                return
            self._drop_oldest(self.bytes + total - self.max_bytes)
        self._pending.extend(entries)
        self._pending_bytes += total
        self._not_done += len(entries)
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
            if self._next_take < self._next_seq:  # written: counts as done
                seq = self._next_take
                size = self._oldest(1)[0][1]
                self._done(seq)
            elif self._pending:
                size = self._pending.popleft()[1]
                self._pending_bytes -= size
                self._not_done -= 1
            else:
                break
            freed += size
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

    def _flush_acks(self) -> None:
        self._ack_handle = None
        if self._flush_handle is None:  # else a write (or its retry) is due anyway
            self._flush()

    def _flush(self) -> None:
        """Write the new messages as a row, move ``acked_through`` and delete the rows behind it, keep
        the marks: one transaction; then hand the written items over."""
        self._flush_handle = None
        if self._ack_handle is not None:
            self._ack_handle.cancel()
            self._ack_handle = None
        conn, pending, acked = self._conn, self._pending, self._acked_through
        if conn is None or not (pending or self._dones or self._mark_writes or self._mark_deletes
                                or acked > self._written_through):
            return
        rows, gone = self._rows, 0
        if acked > self._written_through:
            while gone < len(rows) and rows[gone][1] <= acked:
                gone += 1
        row_id, seq, new = (rows[-1][0] if rows else 0) + 1, self._next_seq, []
        try:
            conn.execute("BEGIN")
            for count, data in pack(pending):
                conn.execute(INSERT, (row_id, seq, count, data))
                new.append((row_id, seq + count - 1))
                row_id, seq = row_id + 1, seq + count
            if acked > self._written_through:
                conn.execute("UPDATE state SET value = ? WHERE key = 'acked_through'", (acked,))
                if gone:
                    conn.execute("DELETE FROM batches WHERE id <= ?", (rows[gone - 1][0],))
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
        self._pending, self._dones, self._mark_writes, self._mark_deletes = deque(), [], {}, set()
        self._written_through, self._acks_waiting = acked, 0
        for _ in range(gone):
            rows.popleft()
        rows.extend(new)
        if pending:
            self._next_seq = seq
            cache = self._cache
            cache.extend(pending)
            self._cache_bytes += self._pending_bytes
            self._pending_bytes = 0
            while self._cache_bytes > self.cache_limit:  # the oldest go on waiting in the file only
                if not self._on_disk_only:
                    self._disk_from = seq - len(cache)
                self._on_disk_only += 1
                self._cache_bytes -= cache.popleft()[1]
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
        if self._next_take == self._next_seq:
            loop = asyncio.get_running_loop()
            deadline = None if timeout_s is None else loop.time() + timeout_s
            while self._next_take == self._next_seq:
                if self._conn is None or (self._closed and not self._pending):
                    return []
                self._has_items.clear()
                try:
                    await wait_for(self._has_items.wait(), None if deadline is None else deadline - loop.time())
                except TimeoutError:
                    return []
        in_flight, ack, taken, seq = self._in_flight, self._ack, [], self._next_take
        for message, size in self._oldest(limit):
            in_flight[seq] = size
            taken.append(Taken([message], functools.partial(ack, seq)))
            seq += 1
        return taken

    def _oldest(self, n: int) -> list[Entry]:
        """Remove and return the ``n`` oldest written messages not taken (fewer when fewer wait)."""
        n = min(n, self._next_seq - self._next_take)
        out: list[Entry] = []
        front, cache = self._front, self._cache
        while len(out) < n:
            if front:
                out.append(front.popleft())
            elif self._on_disk_only:
                self._read_front(n - len(out))
            else:
                entries = [cache.popleft() for _ in range(n - len(out))]
                self._cache_bytes -= sum(entry[1] for entry in entries)
                out += entries
        self._next_take += len(out)
        return out

    def _read_front(self, n: int) -> None:
        """Read back at least ``n`` of the messages in the file only (whole rows, when not at the cache)."""
        assert self._conn is not None
        want, seq = min(max(n, READ_MESSAGES), self._on_disk_only), self._disk_from
        row_id = next((row_id for row_id, last in self._rows if last >= seq), None)
        got: list[Entry] = []
        if row_id is not None:
            cursor = self._conn.execute(SELECT, (row_id,))
            for first_seq, data in cursor:
                if first_seq > seq + len(got):
                    break
                got += unpack(data, seq + len(got) - first_seq, self._on_disk_only - len(got))
                if len(got) >= want:
                    break
            cursor.close()
        if len(got) < want:
            raise SpoolError(f"spool {self.path} lost {want - len(got)} message(s) while open (was it changed by "
                             "another program?)")
        self._front.extend(got)
        self._on_disk_only -= len(got)
        self._disk_from = seq + len(got)

    def _ack(self, seq: int) -> None:
        size = self._in_flight.pop(seq, None)
        if size is None:  # done twice, or after aclose
            return
        self.bytes -= size
        self._done(seq)
        self._acks_waiting += 1
        if self._flush_handle is None:
            if self._acks_waiting >= ACKS_PER_WRITE:
                self._schedule()
            elif self._ack_handle is None:
                self._ack_handle = asyncio.get_running_loop().call_later(ACK_WRITE_S, self._flush_acks)
        if not self._room.is_set():
            self._update_room()

    def _done(self, seq: int) -> None:
        """Message ``seq`` is done (or dropped): move ``acked_through`` over it if it can."""
        self._not_done -= 1
        if seq != self._acked_through + 1:
            self._acked_above.add(seq)
            return
        above = self._acked_above
        while seq + 1 in above:
            seq += 1
            above.remove(seq)
        self._acked_through = seq

    # -- the end -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._has_items.set()

    @property
    def drained(self) -> bool:
        return self._closed and self._next_take == self._next_seq and not self._pending

    def __len__(self) -> int:
        return self._next_seq - self._next_take + len(self._pending)

    def health(self) -> dict[str, Any]:
        return {"queue_depth": len(self), "queue_capacity": None, "overflow": self.policy,
                "dropped_oldest": self.dropped["oldest"], "dropped_newest": self.dropped["newest"],
                "spool": {"path": str(self.path), "bytes": self.bytes, "max_bytes": self.max_bytes,
                          "messages": self._not_done, "batches": len(self._rows), "policy": self.policy,
                          "fsync": self.fsync, "skipped_marked": self.skipped_marked, "recovered": self.recovered,
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
