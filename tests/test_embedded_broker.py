"""The embedded broker against the real binaries (tansu, SeaweedFS): persistence across a restart,
no helper left behind by a killed owner, one owner per data directory, the memory engine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from simulator.adapters.child_process import process_start
from simulator.adapters.embedded_broker import EmbeddedBroker, broker_command, default_data_dir
from simulator.adapters.object_store import weed_binary
from simulator.asyncio_waits import wait_for
from simulator.config.loader import parse
from simulator.errors import BrokerUnavailable, ConfigError

from harness.dependencies import missing_dependency
from harness.service import wait_for as wait_until

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[1]
TOPIC = "journal"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    try:
        weed_binary()
    except ConfigError as exc:
        missing_dependency(str(exc))
    return tmp_path / "kafka"


async def create_and_fill(bootstrap: str, count: int) -> None:
    """A one-partition topic with ``count`` acknowledged records b"v0", b"v1", ..."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(TOPIC, f"v{i}".encode(), key=b"plant") for i in range(count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def read(bootstrap: str, group: str | None, count: int, commit_at: int | None = None) -> list[bytes]:
    """``count`` values of the topic, from the group's committed offset (or the start); with
    ``commit_at``, commits that offset for the group afterwards."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    partition = TopicPartition(TOPIC, 0)
    await consumer.start()
    try:
        consumer.assign([partition])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500, max_records=count - len(values))
            values += [record.value for record in batch.get(partition, []) if record.value is not None]
        if commit_at is not None:
            await consumer.commit({partition: commit_at})
        return values
    finally:
        await consumer.stop()


async def test_records_and_a_groups_committed_offset_survive_a_restart(data_dir: Path) -> None:
    async with EmbeddedBroker(storage="persistent", data_dir=data_dir) as broker:
        await create_and_fill(broker.bootstrap_servers, 50)
        first = await read(broker.bootstrap_servers, "plants", 20, commit_at=20)
    assert first == [f"v{i}".encode() for i in range(20)]
    async with EmbeddedBroker(storage="persistent", data_dir=data_dir) as broker:
        assert await read(broker.bootstrap_servers, "plants", 30) == [f"v{i}".encode() for i in range(20, 50)]
        assert await read(broker.bootstrap_servers, None, 50) == [f"v{i}".encode() for i in range(50)]


OWNER = """
import asyncio, json, sys
from simulator.adapters.embedded_broker import EmbeddedBroker
sys.path.insert(0, sys.argv[2])
from test_embedded_broker import create_and_fill

async def main():
    broker = EmbeddedBroker(storage="persistent", data_dir=sys.argv[1])
    await broker.start()
    await create_and_fill(broker.bootstrap_servers, 10)
    print(json.dumps({"tansu": broker.pid, "weed": broker.object_store.pid}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_owner_leaves_no_broker_behind_and_its_data_stays(data_dir: Path) -> None:
    owner = await asyncio.create_subprocess_exec(sys.executable, "-c", OWNER, str(data_dir), str(ROOT / "tests"),
                                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert owner.stdout is not None and owner.stderr is not None
        line = await wait_for(owner.stdout.readline(), 60)
        assert line, (await owner.stderr.read()).decode()[-2000:]
        helpers = {name: (pid, process_start(pid)) for name, pid in json.loads(line).items()}
        assert all(start is not None for _, start in helpers.values()), helpers
        owner.kill()  # SIGKILL: no clean-up code of the owner runs
        await wait_for(owner.wait(), 10)
        await wait_until(lambda: all(process_start(pid) != start for pid, start in helpers.values()), 20,
                         f"the helpers {helpers} to exit after their owner's SIGKILL")
    finally:
        if owner.returncode is None:
            owner.kill()
            await owner.wait()
    async with EmbeddedBroker(storage="persistent", data_dir=data_dir) as broker:
        assert await read(broker.bootstrap_servers, None, 10) == [f"v{i}".encode() for i in range(10)]


async def test_a_second_broker_on_a_data_dir_in_use_fails_clearly(data_dir: Path) -> None:
    async with EmbeddedBroker(storage="persistent", data_dir=data_dir) as broker:
        second = EmbeddedBroker(storage="persistent", data_dir=data_dir)
        with pytest.raises(BrokerUnavailable, match=rf"data directory {data_dir} is in use by another process "
                                                    rf"\(pid {os.getpid()}\)"):
            await second.start()
        await second.stop()
        await create_and_fill(broker.bootstrap_servers, 3)  # the first one is unharmed
        assert await read(broker.bootstrap_servers, None, 3) == [b"v0", b"v1", b"v2"]


def record_leftover(data_dir: Path, pid: int) -> None:
    """A pid file as a killed owner leaves it, naming ``pid`` as its SeaweedFS."""
    data_dir.mkdir(parents=True)
    helpers = [{"name": "weed", "pid": pid, "start": process_start(pid)}]
    (data_dir / "broker.pid").write_text(json.dumps({"owner": 1, "helpers": helpers}), encoding="utf-8")


async def test_helpers_left_by_an_earlier_owner_are_stopped_at_start(data_dir: Path) -> None:
    leftover = await asyncio.create_subprocess_exec("sleep", "300")  # a helper whose death signal never came
    try:
        record_leftover(data_dir, leftover.pid)
        async with EmbeddedBroker(storage="persistent", data_dir=data_dir):
            assert await wait_for(leftover.wait(), 5) == -signal.SIGTERM
    finally:
        if leftover.returncode is None:
            leftover.kill()
            await leftover.wait()


async def test_the_memory_engine_still_works() -> None:
    async with EmbeddedBroker() as broker:
        assert broker.data_dir is None and broker.object_store is None
        await create_and_fill(broker.bootstrap_servers, 3)
        assert await read(broker.bootstrap_servers, None, 3) == [b"v0", b"v1", b"v2"]
    await broker.stop()  # idempotent
    command = broker_command("127.0.0.1", 9092)
    assert command[command.index("--storage-engine") + 1] == "memory://tansu/"


def test_the_embedded_section_and_its_default_data_directory(default_yaml: dict[str, Any], tmp_path: Path) -> None:
    config = parse(default_yaml, environ={})
    assert config.kafka.embedded.storage == "persistent" and config.kafka.embedded.data_dir is None
    from_env = parse(default_yaml, environ={"FACTORYSIM_EMBEDDED_DATA_DIR": "/srv/kafka"})
    assert from_env.kafka.embedded.data_dir == "/srv/kafka"
    with pytest.raises(ConfigError, match=r"kafka\.embedded\.storage: must be one of"):
        parse(default_yaml, environ={}, overrides={"kafka.embedded.storage": "disk"})
    assert default_data_dir({"STATE_DIRECTORY": "/var/lib/factorysim", "XDG_DATA_HOME": "/x"}) == \
        Path("/var/lib/factorysim/kafka")
    assert default_data_dir({"XDG_DATA_HOME": "/x", "HOME": "/home/u"}) == Path("/x/factorysim/kafka")
    assert default_data_dir({"XDG_DATA_HOME": "relative", "HOME": "/home/u"}) == \
        Path("/home/u/.local/share/factorysim/kafka")
    memory = EmbeddedBroker.from_config(
        parse(default_yaml, environ={}, overrides={"kafka.embedded.storage": "memory"}).kafka.embedded)
    assert memory.storage == "memory" and memory.data_dir is None
    persistent = EmbeddedBroker.from_config(config.kafka.embedded, {"STATE_DIRECTORY": str(tmp_path)})
    assert persistent.storage == "persistent" and persistent.data_dir == tmp_path / "kafka"
