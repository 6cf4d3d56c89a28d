"""The durable spool of a delivery target (simulator/adapters/delivery/spool.py) on real SQLite files:
order, what a restart and a SIGKILL leave, the one-process lock, the overflow policies, marks
across restarts, files that are not spools, failed writes, take with a time limit, draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.adapters.delivery.queue import Taken
from simulator.adapters.delivery.spool import SpoolQueue
from simulator.adapters.delivery.spool_file import SpoolError
from simulator.formats import WireMessage
from simulator.model.records import LotEvent, Record

from harness.service import wait_for

WRITER = Path(__file__).parent / "harness" / "spool_writer.py"


def message(n: int) -> WireMessage:
    """Message ``n``: 100 bytes as the spool counts them (topic 3 + key 1 + value 96)."""
    return WireMessage("t/x", b"k", (), f"{n:096d}".encode())


def halves(record: Record) -> list[WireMessage]:
    """A record becomes two messages, ``seq`` and ``seq.5``; a record whose seq ends in 0 none."""
    if record.seq % 10 == 0:
        return []
    return [WireMessage("plant/a", b"", (), str(record.seq).encode(), retain=True),
            WireMessage("plant/b", b"", (), f"{record.seq}.5".encode())]


def event(seq: int) -> LotEvent:
    return LotEvent(seq, float(seq), event_type="lot.received", location="Italia", lot_code=f"L-{seq}")


def opened(path: Path, *, max_bytes: int = 1 << 20, policy: str = "block",
           encode: Callable[[Record], list[WireMessage]] = halves) -> SpoolQueue:
    spool = SpoolQueue(path, max_bytes=max_bytes, policy=policy, encode=encode, name="t")
    spool.open()
    return spool


class Counter:
    """An ``on_done``: counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def take_all(spool: SpoolQueue, batch: int = 1000) -> list[Taken]:
    """Everything waiting (what is put but not written yet included), ``batch`` at a time."""
    taken: list[Taken] = []
    while len(spool):
        more = await spool.take(batch, timeout_s=5)
        assert more, "nothing came in time"
        taken += more
    return taken


def numbers(taken: list[Taken]) -> list[int]:
    assert all(len(t.messages) == 1 for t in taken)
    return [int(t.messages[0].value) for t in taken]


def query(path: Path, sql: str) -> tuple[Any, ...]:
    """The first row of ``sql`` (if any) on the file at ``path``, through a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return tuple(conn.execute(sql).fetchone() or ())


def rows_in(path: Path) -> int:
    return int(query(path, "SELECT count(*) FROM batches")[0])


async def test_order_is_kept_and_nothing_is_handed_over_before_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "t.sqlite3"
    spool = opened(path)
    handed = Counter()
    for seq in range(1, 13):
        spool.put(event(seq), handed)
    spool.put([message(100), message(101)], handed)
    assert handed.count == 1  # only seq 10, which has no messages; the others wait for the write
    assert len(spool) == 24
    first = await spool.take(5, timeout_s=5)
    assert handed.count == 13
    assert [t.messages[0].value for t in first] == [b"1", b"1.5", b"2", b"2.5", b"3"]
    assert first[0].messages[0].retain and not first[1].messages[0].retain
    rest = await take_all(spool, batch=4)
    assert [t.messages[0].value.decode() for t in rest] == [
        "3.5", "4", "4.5", "5", "5.5", "6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "11", "11.5", "12",
        "12.5", f"{100:096d}", f"{101:096d}"]
    assert len(spool) == 0
    assert spool._conn is not None
    assert spool._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert spool._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL: survives a crash of the process
    health = spool.health()
    assert health["queue_depth"] == 0 and health["queue_capacity"] is None and health["overflow"] == "block"
    assert health["spool"]["messages"] == 24  # in flight: still on disk
    for taken in reversed(first + rest):  # acknowledgements in any order
        taken.done()
    await wait_for(lambda: spool.health()["spool"]["messages"] == 0, 5, "the deletes")
    assert spool.health()["spool"]["bytes"] == 0
    await spool.aclose()
    await spool.aclose()
    assert rows_in(path) == 0


async def test_a_restart_delivers_again_what_was_not_done_from_the_first_not_done_on(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    spool = SpoolQueue(path, max_bytes=1 << 20, policy="block", encode=halves, fsync=True)
    spool.open()
    assert spool._conn is not None
    assert spool._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: survives a power loss
    handed = Counter()
    for n in range(100):
        spool.put([message(n)], handed)
    taken = await spool.take(60, timeout_s=5)
    for t in taken[40:50] + taken[:30]:  # out of order: 40-49 are done above the first not done (30)
        t.done()
    spool.put([message(100)], handed)  # put and closed in the same turn: aclose writes it
    await spool.aclose()
    assert handed.count == 101

    again = opened(path)
    assert again.health()["spool"]["recovered"] == 71 == len(again)  # 40-49 again: at least once
    redelivered = await take_all(again, batch=7)
    assert numbers(redelivered) == list(range(30, 101))
    for t in redelivered[20:40] + redelivered[:20]:  # 50-69, then 30-49: through 69 all done
        t.done()
    await again.aclose()  # the rest not done: again next time

    third = opened(path)
    redelivered = await take_all(third)
    assert numbers(redelivered) == list(range(70, 101))
    assert third.health()["spool"]["recovered"] == 31 == third.health()["spool"]["messages"]
    for t in redelivered:
        t.done()
    await third.aclose()
    assert rows_in(path) == 0
    fourth = opened(path)
    assert fourth.health()["spool"]["recovered"] == 0 and await fourth.take(10, timeout_s=0.05) == []
    fourth.put([message(101)])  # numbering goes on after the last done
    assert numbers(await take_all(fourth)) == [101]
    await fourth.aclose()
    assert opened(path).health()["spool"]["recovered"] == 1


def fill_and_kill(path: Path, deliver: bool) -> list[str]:
    """Run tests/harness/spool_writer.py on ``path``; check that the spool is refused to this process
    while the writer holds it; SIGKILL the writer after 3,017 lines; everything it printed."""
    command = [sys.executable, str(WRITER), str(path), *(["--deliver"] if deliver else [])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        try:
            assert writer.stdout.readline() == "open\n"
            with pytest.raises(SpoolError, match="is in use by another process") as refused:
                opened(path)
            assert str(path) in str(refused.value)
            lines: list[str] = []
            while len(lines) < 3017:  # not a multiple of the 40 put per turn: in the middle of the reports
                line = writer.stdout.readline()
                assert line, "the writer ended on its own"
                lines.append(line.rstrip("\n"))
            writer.kill()  # SIGKILL, in the middle of putting (and delivering)
            writer.wait()
            return lines + writer.stdout.read().splitlines()  # with what it printed before it died
        finally:
            if writer.poll() is None:
                writer.kill()


@pytest.mark.parametrize("deliver", [False, True], ids=["filling", "filling-and-delivering"])
async def test_sigkill_loses_nothing_that_was_handed_over(tmp_path: Path, deliver: bool) -> None:
    path = tmp_path / "state" / "w.sqlite3"
    lines = fill_and_kill(path, deliver)
    handed_over = [int(line.split()[1]) for line in lines if line.startswith("handed ")]
    assert handed_over == list(range(len(handed_over)))  # on_done in order
    delivered = {int(line.split()[1]) for line in lines if line.startswith("delivered ")}

    spool = opened(path)  # the lock went with the process
    found = numbers(await take_all(spool))
    assert found, "nothing left in the spool"
    assert found == list(range(found[0], found[-1] + 1))  # in order, no gaps, none twice
    assert found[-1] >= handed_over[-1]  # every message reported handed over is there ...
    assert all(n in delivered for n in range(found[0]))  # ... unless it was delivered
    assert spool.health()["spool"]["recovered"] == len(found)
    await spool.aclose()


async def test_a_second_opener_is_refused_while_the_first_holds_the_spool(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    first = opened(path)
    first.put([message(1)])
    await first.take(1, timeout_s=5)
    with pytest.raises(SpoolError, match=r"spool .*t\.sqlite3 is in use by another process"):
        opened(path)
    await first.aclose()
    second = opened(path)
    assert numbers(await take_all(second)) == [1]
    await second.aclose()


async def test_block_holds_the_producer_until_below_90_percent(tmp_path: Path) -> None:
    spool = opened(tmp_path / "t.sqlite3", max_bytes=1000, policy="block")
    rooms = Counter()
    spool.on_room = rooms
    handed = Counter()
    for n in range(9):
        spool.put([message(n)], handed)
    assert not spool.full
    spool.put([message(9)], handed)
    assert spool.full  # 1,000 bytes, waiting to be written included
    spool.put([message(10)], handed)  # block never drops: the producer is expected to hold
    room = asyncio.create_task(spool.wait_for_room())
    taken = await spool.take(3, timeout_s=5)
    assert handed.count == 11 and spool.health()["spool"]["bytes"] == 1100
    for t in taken[:2]:
        t.done()
    assert spool.full and rooms.count == 0  # 900 bytes: not below 90 %
    taken[2].done()
    assert not spool.full and rooms.count == 1
    await asyncio.wait_for(room, 5)
    assert spool.dropped == {"oldest": 0, "newest": 0}
    assert numbers(await take_all(spool)) == list(range(3, 11))
    await spool.aclose()


async def test_drop_newest_drops_what_does_not_fit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = opened(tmp_path / "t.sqlite3", max_bytes=1000, policy="drop-newest")
    handed = Counter()
    with caplog.at_level(logging.WARNING):
        for n in range(12):
            spool.put([message(n)], handed)
        assert handed.count == 2  # the two dropped: handed over at once
        spool.put([message(12), message(13)], handed)
    assert spool.dropped == {"oldest": 0, "newest": 4}  # messages, not items
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1  # the first drop only
    assert numbers(await take_all(spool)) == list(range(10))
    assert handed.count == 13 and not spool.full
    health = spool.health()
    assert (health["dropped_newest"], health["dropped_oldest"], health["overflow"]) == (4, 0, "drop-newest")
    await spool.aclose()


async def test_drop_oldest_drops_the_oldest_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    spool = opened(path, max_bytes=1000, policy="drop-oldest")
    handed = Counter()
    for n in range(15):  # one turn: the oldest five go before they are even written
        spool.put([message(n)], handed)
    assert spool.dropped["oldest"] == 5
    in_flight = await spool.take(2, timeout_s=5)
    assert numbers(in_flight) == [5, 6] and handed.count == 15
    for n in range(15, 18):  # the oldest waiting (7, 8, 9) go; 5 and 6 are in flight and stay
        spool.put([message(n)], handed)
    assert spool.dropped == {"oldest": 8, "newest": 0}
    assert numbers(await spool.take(3, timeout_s=5)) == [10, 11, 12]
    for t in in_flight:  # through 9 all done or dropped
        t.done()
    assert spool.health()["spool"]["messages"] == 8 and spool.health()["spool"]["bytes"] == 800
    await spool.aclose()

    again = opened(path, max_bytes=1000, policy="drop-oldest")  # 10-12 were in flight: they go again
    assert again.health()["spool"]["recovered"] == 8 and again.health()["spool"]["bytes"] == 800
    for n in range(18, 21):  # the oldest, read back from the file, goes: 10
        again.put([message(n)])
    assert numbers(await take_all(again)) == list(range(11, 21))
    assert again.dropped["oldest"] == 1
    await again.aclose()


async def test_marks_skip_items_put_before_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    spool = opened(path)
    for position in range(1, 6):
        spool.put([message(position)], mark=("run-1:Italia", position))
    spool.put([message(3)], mark=("run-1:Italia", 3))  # already put in this process
    await spool.aclose()
    assert spool.skipped_marked == 1

    again = opened(path)
    handed = Counter()
    for position in range(1, 8):  # a replay from the start
        again.put([message(position)], handed, mark=("run-1:Italia", position))
    again.put([message(1000)], handed, mark=("run-1:Spain", 1))  # another origin
    assert handed.count == 5 and again.skipped_marked == 5
    assert numbers(await take_all(again)) == [1, 2, 3, 4, 5, 6, 7, 1000]
    assert again.health()["spool"]["skipped_marked"] == 5
    await again.aclose()


async def test_marks_keep_the_10000_most_recently_updated_origins(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    spool = opened(path, encode=lambda record: [])
    for origin in range(10_001):
        spool.put(event(1), mark=(f"origin-{origin}", 1))
    await spool.aclose()
    assert query(path, "SELECT count(*), min(origin) FROM marks") == (10_000, "origin-1")
    again = opened(path, encode=lambda record: [])
    again.put(event(1), mark=("origin-1", 1))
    again.put(event(1), mark=("origin-0", 1))  # forgotten: put again
    assert again.skipped_marked == 1
    await again.aclose()


async def test_files_that_are_not_spools_are_refused_and_left_alone(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(SpoolError, match="is not a spool") as refused:
        opened(text)
    assert str(text) in str(refused.value)
    assert text.read_text() == "not a database\n" * 100

    other = tmp_path / "other.sqlite3"
    query(other, "CREATE TABLE readings (value REAL)")
    with pytest.raises(SpoolError, match=r"other\.sqlite3 is not a spool"):
        opened(other)
    assert query(other, "PRAGMA journal_mode") == ("delete",)  # not switched to WAL

    newer = tmp_path / "newer.sqlite3"
    spool = opened(newer)
    spool.put([message(1)])
    await spool.aclose()
    query(newer, "PRAGMA user_version = 99")
    with pytest.raises(SpoolError, match="written by a newer factorysim"):
        opened(newer)

    with pytest.raises(SpoolError, match="cannot create the directory") as refused:
        opened(text / "spool" / "t.sqlite3")
    assert str(text / "spool") in str(refused.value)


async def test_a_failed_write_keeps_the_messages_and_is_retried(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.sqlite3"
    spool = opened(path, max_bytes=1 << 20, policy="block")
    handed = Counter()
    for n in range(5):
        spool.put([message(n)], handed)
    assert numbers(await spool.take(5, timeout_s=5)) == list(range(5))
    assert spool._conn is not None
    pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count = {pages}")  # the file cannot grow: "disk full"
    with caplog.at_level(logging.ERROR):
        for n in range(5, 205):
            spool.put([message(n)], handed)
        await wait_for(lambda: spool.write_errors >= 2, 5, "a failed write and its retry")
    assert sum("cannot write the spool" in r.getMessage() for r in caplog.records) == 1  # once per error
    health = spool.health()["spool"]
    assert "full" in health["last_error"] and health["writing_fails"]
    assert handed.count == 5 and spool.full and len(spool) == 200
    assert await spool.take(10, timeout_s=0.05) == []  # not written, so not delivered either

    spool._conn.execute("PRAGMA max_page_count = 1073741823")
    await wait_for(lambda: handed.count == 205, 5, "the retried write")
    assert not spool.full and not spool.health()["spool"]["writing_fails"]
    assert numbers(await take_all(spool)) == list(range(5, 205))
    await spool.aclose()


async def test_closing_while_writes_fail_hands_over_nothing_that_was_not_written(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    spool = opened(path)
    handed = Counter()
    spool.put([message(0)], handed)
    await spool.take(1, timeout_s=5)
    assert spool._conn is not None
    spool._conn.execute(f"PRAGMA max_page_count = {spool._conn.execute('PRAGMA page_count').fetchone()[0]}")
    for n in range(1, 300):  # more than the free room in the file's pages
        spool.put([message(n)], handed)
    await wait_for(lambda: spool.write_errors >= 1, 5, "a failed write")
    await spool.aclose()
    assert handed.count == 1
    again = opened(path)
    assert numbers(await take_all(again)) == [0]
    await again.aclose()


async def test_take_waits_for_messages_or_times_out(tmp_path: Path) -> None:
    spool = opened(tmp_path / "t.sqlite3")
    assert await spool.take(10, timeout_s=0.05) == []
    waiting = asyncio.create_task(spool.take(10))
    await asyncio.sleep(0)
    assert not waiting.done()
    spool.put([message(1), message(2)])
    assert numbers(await asyncio.wait_for(waiting, 5)) == [1, 2]
    await spool.aclose()


async def test_close_lets_take_drain_what_is_left(tmp_path: Path) -> None:
    spool = opened(tmp_path / "t.sqlite3")
    waiting = asyncio.create_task(spool.take(10))
    spool.put([message(1)])
    spool.close()  # before the write: take still gets the message
    assert numbers(await asyncio.wait_for(waiting, 5)) == [1]
    assert spool.drained
    assert await asyncio.wait_for(spool.take(10), 5) == []  # closed and drained: at once, no time limit

    other = opened(tmp_path / "u.sqlite3")
    other.put([message(2)])
    other.close()
    assert not other.drained
    assert numbers(await other.take(10)) == [2]
    assert other.drained
    await spool.aclose()
    await other.aclose()


async def test_a_backlog_larger_than_the_cache_is_read_back_in_order(tmp_path: Path) -> None:
    spool = opened(tmp_path / "t.sqlite3", max_bytes=1 << 20)
    spool.cache_limit = 1000  # ten messages
    handed = Counter()
    for n in range(300):
        spool.put([message(n)], handed)
        if n % 37 == 0:
            await wait_for(lambda n=n: handed.count == n + 1, 5, "the write")
    first = await spool.take(25, timeout_s=5)
    for n in range(300, 320):
        spool.put([message(n)], handed)
    await wait_for(lambda: handed.count == 320, 5, "the write")
    assert numbers(first + await take_all(spool, batch=9)) == list(range(320))
    await spool.aclose()


async def test_after_aclose_puts_are_not_kept_and_take_ends(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = opened(tmp_path / "t.sqlite3")
    await spool.aclose()
    handed = Counter()
    with caplog.at_level(logging.WARNING):
        spool.put([message(1)], handed)
    assert handed.count == 0 and "is closed" in caplog.text
    assert await spool.take(10) == []


def commits_of(spool: SpoolQueue) -> list[str]:
    """From now on, every transaction ``spool`` commits (the statements its connection runs)."""
    commits: list[str] = []
    assert spool._conn is not None
    spool._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    return commits


def acked_through(spool: SpoolQueue) -> int:
    assert spool._conn is not None  # the file is locked: ask through the spool's own connection
    return int(spool._conn.execute("SELECT value FROM state WHERE key = 'acked_through'").fetchone()[0])


async def test_a_stream_of_acknowledgements_is_written_now_and_then_not_one_by_one(tmp_path: Path) -> None:
    spool = opened(tmp_path / "t.sqlite3", max_bytes=1 << 30)
    for n in range(3000):
        spool.put([message(n)])
    taken = await spool.take(3000, timeout_s=5)
    commits = commits_of(spool)
    for start in range(0, 2990, 10):  # ten per loop turn
        for t in taken[start:start + 10]:
            t.done()
        await asyncio.sleep(0)
    assert 2 <= len(commits) <= 4  # every 1,000 (and maybe one after 0.2 s), not 2,990
    assert acked_through(spool) >= 2000
    assert spool.health()["spool"]["messages"] == 10
    taken[-1].done()  # out of order: acked_through cannot move, nothing to write
    await wait_for(lambda: acked_through(spool) == 2990, 5, "the acknowledgements written after a while")
    for t in taken[2990:]:
        t.done()
    await wait_for(lambda: acked_through(spool) == 3000, 5, "the last acknowledgements written")
    assert spool.health()["spool"]["messages"] == 0 and spool.health()["spool"]["batches"] == 0
    assert len(commits) <= 6
    await spool.aclose()


async def test_a_row_goes_once_all_of_its_messages_are_done(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    spool = opened(path)
    handed = Counter()
    for row in range(3):  # three writes: three rows of ten
        for n in range(row * 10, row * 10 + 10):
            spool.put([message(n)], handed)
        await wait_for(lambda row=row: handed.count == row * 10 + 10, 5, "the write")
    assert spool.health()["spool"]["batches"] == 3 and rows_in_spool(spool) == 3
    taken = await spool.take(30, timeout_s=5)
    for t in taken[1:20]:  # all of the first two rows but their first message
        t.done()
    spool.put([message(30)], handed)  # a write (with the acknowledgements so far)
    await wait_for(lambda: handed.count == 31, 5, "the write")
    assert spool.health()["spool"]["batches"] == 4 and rows_in_spool(spool) == 4
    taken[0].done()  # now all of the first two rows are done; the third is done to its fifth
    for t in taken[20:25]:
        t.done()
    await wait_for(lambda: rows_in_spool(spool) == 2, 5, "the two rows deleted")
    assert spool.health()["spool"]["batches"] == 2 and acked_through(spool) == 25
    assert spool.health()["spool"]["messages"] == 6 and spool.health()["spool"]["bytes"] == 600
    await spool.aclose()

    again = opened(path)  # the rest of the third row and the fourth
    assert again.health()["spool"]["recovered"] == 6 and again.health()["spool"]["bytes"] == 600
    assert numbers(await take_all(again)) == list(range(25, 31))
    await again.aclose()


def rows_in_spool(spool: SpoolQueue) -> int:
    assert spool._conn is not None
    return int(spool._conn.execute("SELECT count(*) FROM batches").fetchone()[0])


async def test_sizes_count_topics_in_utf8_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    spool = opened(path)
    spool.put([WireMessage("Schleifmaschine/größe", b"k\x00", (), b"\xff" * 10, retain=True)])
    assert spool.health()["spool"]["bytes"] == 23 + 2 + 10
    await spool.aclose()
    again = opened(path)
    assert again.health()["spool"]["bytes"] == 35
    [taken] = await take_all(again)
    assert taken.messages == [WireMessage("Schleifmaschine/größe", b"k\x00", (), b"\xff" * 10, retain=True)]
    taken.done()
    assert again.health()["spool"]["bytes"] == 0
    await again.aclose()
