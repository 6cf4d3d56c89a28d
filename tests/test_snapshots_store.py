"""Snapshots as data and on Kafka: the envelope and its parts read back as written, a large one is cut
into parts that each fit a request, a damaged or incomplete one is told apart with its reason; on the
real broker the newest valid snapshot of a run is found, an older one when the newest is corrupt or
incomplete, none of another run.  (The documents are synthetic: to the codec and the store they are
just JSON.)"""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.adapters.snapshots import SnapshotWriter, read_newest, snapshots_of
from simulator.config.schema import Config
from simulator.errors import SnapshotRefused
from simulator.formats import snapshot as wire
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.snapshot import Snapshot, SnapshotCorrupt
from simulator.io_metrics import IoMetrics
from simulator.runtime.outbox import Outbox

from harness.service import produce

MIB = 1024 * 1024


def document(now: float, blob_bytes: int = 200, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    return {"version": 1, "now": now, "seed": 42, "start": "2025-06-25T06:00:00Z",
            "plants": ["Brasile", "Italia", "Vietnam"], "record_seqs": {"Brasile": 3, "Italia": 7, "Vietnam": 0},
            "machines": [{"id": f"m-{i}", "rng": [rng.getrandbits(32) for _ in range(20)]} for i in range(5)],
            "blob": base64.b64encode(os.urandom(blob_bytes)).decode()}


def snapshot(run_id: str = "run-1", now: float = 3600.5, blob_bytes: int = 200, snapshot_id: str | None = None,
             ) -> Snapshot:
    return Snapshot(run_id, "f" * 64, 3, now, {"Brasile": 2, "Italia": 0, "Vietnam": 9},
                    {"Brasile": 3, "Italia": 7, "Vietnam": 0}, 1_764_000_000.25, document(now, blob_bytes),
                    snapshot_id or wire.new_snapshot_id())


def parts_of(snap: Snapshot, max_part_bytes: int = 1_000_000) -> list[wire.Part]:
    return [wire.read_part(m.value) for m in wire.encode(snap, "t", max_part_bytes)]


# -- the codec -----------------------------------------------------------------------------------------
def test_a_snapshot_reads_back_as_written() -> None:
    snap = snapshot()
    messages = wire.encode(snap, "plants.snapshots", wire.part_bytes(1_048_576))
    assert len(messages) == 1
    assert {(m.topic, m.key) for m in messages} == {("plants.snapshots", b"run-1")}
    assert wire.assemble(wire.read_part(m.value) for m in messages) == snap
    assert wire.from_json(wire.to_json(snap)) == snap  # the plain JSON form (GET /snapshot, --from-snapshot)


def test_a_large_snapshot_is_cut_into_parts_that_each_fit_a_request() -> None:
    max_request = 1_048_576
    snap = snapshot(blob_bytes=int(1.5 * MIB))  # base64 of random bytes: about 1.5 MiB compressed
    messages = wire.encode(snap, "t", wire.part_bytes(max_request))
    assert len(wire.content(snap)) > MIB
    assert len(messages) == 2
    assert all(len(m.value) + len(m.key) + 200 < max_request for m in messages)
    parts = [wire.read_part(m.value) for m in messages]
    assert [(p.index, p.count) for p in parts] == [(0, 2), (1, 2)]
    assert len({p.sha256 for p in parts}) == 1
    assert wire.assemble(reversed(parts)) == snap  # any order
    assert wire.assemble([*parts, parts[0]]) == snap  # a part read twice counts once


def test_a_damaged_or_incomplete_snapshot_says_why() -> None:
    snap = snapshot(blob_bytes=20_000)
    parts = parts_of(snap, 4096)
    assert len(parts) > 3
    with pytest.raises(SnapshotCorrupt, match=r"incomplete: \d+ of \d+ parts \(missing 2\)"):
        wire.assemble(parts[:2] + parts[3:])
    flipped = bytearray(parts[1].data)
    flipped[10] ^= 0xFF
    damaged = [*parts[:1], wire.Part(**{**_fields(parts[1]), "data": bytes(flipped)}), *parts[2:]]
    with pytest.raises(SnapshotCorrupt, match="SHA-256 of its content does not match"):
        wire.assemble(damaged)
    short = [*parts[:-1], wire.Part(**{**_fields(parts[-1]), "data": parts[-1].data[:-1]})]
    with pytest.raises(SnapshotCorrupt, match="bytes, its parts say"):
        wire.assemble(short)
    other = parts_of(snapshot(blob_bytes=20_000, snapshot_id=snap.snapshot_id), 4096)
    with pytest.raises(SnapshotCorrupt, match="disagree"):
        wire.assemble([*parts[:1], *other[1:]])
    with pytest.raises(SnapshotCorrupt, match="not a snapshot part"):
        wire.read_part(b'{"v": 1, "kind": "input"}')
    with pytest.raises(SnapshotCorrupt, match="no header line"):
        wire.read_part(b"garbage")


@pytest.mark.parametrize(("change", "problem"), [
    ({"v": 9}, "envelope version 9"), ({"document": []}, "document must be a JSON object"),
    ({"sim_time_s": -1}, "non-negative number"), ({"inputs_through": {"Italia": "x"}},
     "inputs_through.Italia must be an integer of at least 0"),
    ({"taken_at": "yesterday"}, "not a snapshot envelope"),
])
def test_an_envelope_that_is_not_one_is_refused(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(SnapshotCorrupt, match=problem):
        wire.from_json({**wire.to_json(snapshot()), **change})


def test_content_that_does_not_decompress_or_is_not_an_envelope_is_corrupt() -> None:
    with pytest.raises(SnapshotCorrupt, match="does not decompress"):
        wire.decode_content(b"not zlib")
    with pytest.raises(SnapshotCorrupt, match="not JSON"):
        wire.decode_content(wire.compress(b"{"))
    with pytest.raises(SnapshotCorrupt, match="a snapshot is a JSON object"):
        wire.decode_content(wire.compress(b"[1]"))


def _fields(part: wire.Part) -> dict[str, Any]:
    return {name: getattr(part, name) for name in part.__slots__}


# -- the store on the real broker ------------------------------------------------------------------------
async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


@asynccontextmanager
async def writer(bootstrap: str, topic: str, config: Config, max_request_bytes: int = 1_048_576,
                 ) -> AsyncIterator[SnapshotWriter]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                max_request_size=max_request_bytes, linger_ms=5)
    await producer.start()
    try:
        outbox = Outbox(10)
        publisher = KafkaPublisher(producer, outbox, CoffeeMekFormat(config, 1), IoMetrics())
        loop = asyncio.get_running_loop().create_task(publisher.run())  # confirms deliveries, as in the service
        yield SnapshotWriter(publisher, topic, max_request_bytes, lambda: {"Brasile": 3, "Italia": 7})
        outbox.close()
        await asyncio.wait_for(loop, 30)
    finally:
        await producer.stop()


async def all_of(bootstrap: str, topic: str, run_id: str, **kwargs: Any) -> list[Snapshot]:
    return [s async for s in snapshots_of({"bootstrap_servers": bootstrap}, topic, run_id, timeout_s=30, **kwargs)]


async def test_the_newest_snapshot_of_the_run_is_found_and_a_large_one_comes_back_whole(
        default_config: Config, kafka_bootstrap: str, unique: str) -> None:
    topic = f"{unique}.snapshots"
    await create_topic(kafka_bootstrap, topic, partitions=3)
    options = {"bootstrap_servers": kafka_bootstrap}
    assert await read_newest(options, topic, "run-a", timeout_s=30) is None  # nothing yet
    written = []
    async with writer(kafka_bootstrap, topic, default_config) as out:
        for n in range(3):
            written.append(snapshot("run-a", now=100.0 * (n + 1)))
            await out.write(written[-1])
            await out.write(snapshot("run-b", now=1000.0 * (n + 1)))  # another run on the same topic
        large = snapshot("run-a", now=400.0, blob_bytes=int(1.5 * MIB))
        await out.write(large)
        assert out.written == 7
        assert out.failed == 0
    newest = await read_newest(options, topic, "run-a", timeout_s=30)
    assert newest == large
    assert [s.sim_time_s for s in await all_of(kafka_bootstrap, topic, "run-a", window=1)] == [400, 300, 200, 100]
    assert [s.sim_time_s for s in await all_of(kafka_bootstrap, topic, "run-b")] == [3000, 2000, 1000]
    assert await all_of(kafka_bootstrap, topic, "run-c") == []


async def test_a_corrupt_or_incomplete_newest_snapshot_falls_back_to_the_one_before(
        default_config: Config, kafka_bootstrap: str, unique: str, caplog: pytest.LogCaptureFixture) -> None:
    topic = f"{unique}.snapshots"
    await create_topic(kafka_bootstrap, topic)
    good = [snapshot("run-a", now=10.0 * (n + 1), blob_bytes=30_000) for n in range(2)]
    async with writer(kafka_bootstrap, topic, default_config) as out:
        out.max_part_bytes = 8192  # several parts each
        for snap in good:
            await out.write(snap)
    # then a snapshot with a damaged part, and one whose writer died after its first parts
    corrupt = wire.encode(snapshot("run-a", now=30.0, blob_bytes=30_000), topic, 8192)
    value = bytearray(corrupt[2].value)
    value[-5] ^= 0xFF
    incomplete = wire.encode(snapshot("run-a", now=40.0, blob_bytes=30_000), topic, 8192)
    raw = [m.value for m in corrupt[:2]] + [bytes(value)] + [m.value for m in corrupt[3:]] + \
        [m.value for m in incomplete[:2]]
    await produce(kafka_bootstrap, topic, raw, [b"run-a"] * len(raw))
    caplog.set_level("WARNING", logger="simulator.adapters.snapshots")
    newest = await read_newest({"bootstrap_servers": kafka_bootstrap}, topic, "run-a", timeout_s=30)
    assert newest == good[1]
    warnings = [r.getMessage() for r in caplog.records]
    assert any("incomplete: 2 of" in w for w in warnings), warnings
    assert any("SHA-256 of its content does not match" in w for w in warnings), warnings
    assert [s.sim_time_s for s in await all_of(kafka_bootstrap, topic, "run-a", window=2)] == [20.0, 10.0]


async def test_a_part_kafka_refuses_fails_that_snapshot_only(default_config: Config, kafka_bootstrap: str,
                                                             unique: str) -> None:
    topic = f"{unique}.snapshots"
    await create_topic(kafka_bootstrap, topic)
    async with writer(kafka_bootstrap, topic, default_config, max_request_bytes=70_000) as out:
        out.max_part_bytes = 100_000  # larger than a request may be: the producer refuses the part
        with pytest.raises(SnapshotRefused):
            await out.write(snapshot("run-a", blob_bytes=200_000))
        out.max_part_bytes = wire.part_bytes(70_000)
        small = snapshot("run-a", now=5.0)
        await out.write(small)
        assert (out.written, out.failed) == (1, 1)
        assert out.publisher.fatal_error is None
    assert await read_newest({"bootstrap_servers": kafka_bootstrap}, topic, "run-a", timeout_s=30) == small

