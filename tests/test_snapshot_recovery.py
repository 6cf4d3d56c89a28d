"""Snapshots in the service, on the real broker: a restart restores the model from the run's newest
snapshot and applies only the journal after it (none after a SIGTERM, the tail after a SIGKILL),
and the lots go on where they were; a corrupt newest snapshot falls back to the one before; one of
another config is a clear error; GET /snapshot answers a snapshot the model restores, and
``factorysim simulate --from-snapshot`` studies the plant from it, also with one more machine."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from test_recovery import FINAL, check_histories, live, poll_health, service, snapshot_settings, write_config

from simulator.adapters.snapshots import read_newest
from simulator.cli import main
from simulator.config.loader import parse
from simulator.errors import ConfigError
from simulator.formats import snapshot as wire
from simulator.formats.journal import Applied, Checkpoint, ClockSet, Read, RunStart
from simulator.formats.snapshot import Clock, JournalMark, Snapshot, SnapshotCorrupt
from simulator.model import snapshot as model_snapshot
from simulator.model.inputs import Admit
from simulator.model.order import Order
from simulator.model.records import ListSink, NullSink
from simulator.model.simulation import Simulation
from simulator.net import free_port
from simulator.runtime.driver import Driver
from simulator.runtime.gate import InputGate
from simulator.runtime.recovery import RunHistory, check_snapshot, run_after_snapshot, run_to_continue

from harness.service import Reader, finished, orders, produce, running_service, service_config, wait_for


# -- restarts in real processes --------------------------------------------------------------------------
async def test_after_sigterm_the_restart_restores_the_last_snapshot_and_applies_nothing_again(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique, port, 20_000)
    topics = snapshot_settings(path, every_s=1)["kafka"]["topics"]
    lots = 40
    log = tmp_path / "service.log"
    await produce(kafka_bootstrap, topics["orders"], orders(lots, unique, seed=5))
    with service(path, log, "--start", "config") as first:
        await live(port, first, log)
        await poll_health(port, lambda h: h["run"]["snapshots"]["written"] >= 1 and h["lots"]["received"] == lots,
                          60, "every order admitted and a periodic snapshot")
        async with Reader(kafka_bootstrap, [topics["events"]]) as reader:
            await reader.read_until(lambda c: len(finished(c.json(topics["events"]))) >= 3, 60, "a few lots finished")
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 60) == 0, log.read_text()[-4000:]
    assert "last snapshot written" in log.read_text()
    with service(path, log) as second:
        health = await live(port, second, log)
        recovery = health["run"]["recovery"]
        assert recovery["done"] is True
        assert recovery["inputs"] == lots
        assert recovery["snapshot"] is not None, log.read_text()[-4000:]
        assert sum(recovery["snapshot"]["inputs_through"].values()) == lots
        assert recovery["to_apply"] == 0
        assert recovery["applied"] == 0
        # the journal was read from the snapshot's mark on, not from its beginning
        assert recovery["journal_read_from"] and max(recovery["journal_read_from"].values()) > 0, recovery
        async with Reader(kafka_bootstrap, [topics["events"], topics["dead_letter"]]) as reader:
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics["events"]))) == lots, 90, "every lot finished across both runs")
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 60) == 0
    check_histories(collected.json(topics["events"]), {f"{unique}-{i}" for i in range(lots)})
    assert collected.of(topics["dead_letter"]) == []


async def test_after_sigkill_the_restart_applies_only_the_journal_after_the_newest_snapshot(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, default_yaml, kafka_bootstrap, unique, port, 20_000)
    topics = snapshot_settings(path, every_inputs=40, every_s=None)["kafka"]["topics"]
    log = tmp_path / "service.log"
    first_batch, tail = orders(45, unique, seed=9)[:40], orders(45, unique, seed=9)[40:]
    with service(path, log, "--start", "config") as first:
        await live(port, first, log)
        await produce(kafka_bootstrap, topics["orders"], first_batch)
        await poll_health(port, lambda h: h["run"]["snapshots"]["last"]
                          and sum(h["run"]["snapshots"]["last"]["inputs_through"].values()) == 40,
                          60, "a snapshot of the 40 inputs")
        await produce(kafka_bootstrap, topics["orders"], tail)  # fewer than every_inputs: no snapshot of them
        await poll_health(port, lambda h: h["lots"]["received"] == 45, 60, "the last orders admitted")
        first.kill()
        await asyncio.to_thread(first.wait, 10)
    with service(path, log) as second:
        health = await live(port, second, log)
        recovery = health["run"]["recovery"]
        assert recovery["inputs"] == 45
        assert recovery["snapshot"] is not None, log.read_text()[-4000:]
        assert sum(recovery["snapshot"]["inputs_through"].values()) == 40
        assert recovery["to_apply"] == recovery["applied"] == 5
        assert recovery["journal_read_from"] and max(recovery["journal_read_from"].values()) > 0, recovery
        async with Reader(kafka_bootstrap, [topics["events"], topics["dead_letter"]]) as reader:
            collected = await reader.read_until(
                lambda c: len({e["lot_code"] for e in c.json(topics["events"]) if e["event_type"] in FINAL}) == 45,
                90, "every lot finished across both runs")
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 60) == 0
    check_histories(collected.json(topics["events"]), {f"{unique}-{i}" for i in range(45)})
    assert collected.of(topics["dead_letter"]) == []
    assert "recovering run" in log.read_text()


# -- in the test's process -------------------------------------------------------------------------------
async def test_a_corrupt_newest_snapshot_falls_back_to_the_one_before_and_another_config_is_an_error(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, caplog: pytest.LogCaptureFixture) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 5000})
    topics = config.kafka.topics
    options = {"bootstrap_servers": kafka_bootstrap}
    async with running_service(config) as first:
        await produce(kafka_bootstrap, topics.orders, orders(10, unique, seed=2))
        await wait_for(lambda: first.sim.stats.received == 10, 30, "every order admitted")
        run_id = first.run_id
    last = await read_newest(options, topics.snapshots, run_id, timeout_s=30)
    assert last is not None
    assert sum(last.inputs_through.values()) == 10
    # a newer snapshot of the run whose content is damaged: the last good one is used
    damaged = wire.encode(Snapshot(**{**_fields(last), "snapshot_id": wire.new_snapshot_id()}), topics.snapshots, 4096)
    value = bytearray(damaged[-1].value)
    value[-3] ^= 0xFF
    await produce(kafka_bootstrap, topics.snapshots, [*(m.value for m in damaged[:-1]), bytes(value)],
                  [run_id.encode()] * len(damaged))
    caplog.set_level("WARNING", logger="simulator.adapters.snapshots")
    async with running_service(config) as second:
        await wait_for(lambda: second.run_journal is not None and second.run_journal.live.is_set(), 30, "live")
        assert second.run_id == run_id
        assert second.snapshot is not None
        assert second.snapshot.snapshot_id == last.snapshot_id
        assert second.health()["run"]["recovery"]["to_apply"] == 0
    assert any("SHA-256 of its content does not match" in r.getMessage() for r in caplog.records)
    # a newer snapshot of the run written under another config stops the start, saying what differs
    newest = await read_newest(options, topics.snapshots, run_id, timeout_s=30)
    assert newest is not None
    foreign = wire.encode(Snapshot(**{**_fields(newest), "snapshot_id": wire.new_snapshot_id(),
                                      "fingerprint": "0" * 64}), topics.snapshots, 1_000_000)
    await produce(kafka_bootstrap, topics.snapshots, [m.value for m in foreign], [run_id.encode()] * len(foreign))
    with pytest.raises(ConfigError, match="written with another plant config") as error:
        async with running_service(config):
            pass
    assert "factorysim run --fresh" in str(error.value)


async def test_a_newer_run_without_snapshots_is_continued_from_its_journal_not_the_older_runs_snapshot(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    """The run continued is the newest one, even when only an older run has (marked) snapshots."""
    with_snapshots = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 5000})
    without = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 5000,
                                                                       "kafka.snapshots": {"enabled": False}})
    topics = with_snapshots.kafka.topics
    async with running_service(with_snapshots) as older:
        await produce(kafka_bootstrap, topics.orders, orders(6, unique, seed=4))
        await wait_for(lambda: older.sim.stats.received == 6, 30, "every order admitted")
    assert await read_newest({"bootstrap_servers": kafka_bootstrap}, topics.snapshots, older.run_id, timeout_s=30)
    async with running_service(without, fresh=True) as newer:
        await produce(kafka_bootstrap, topics.orders, orders(9, f"{unique}-b", seed=5)[:3])
        await wait_for(lambda: newer.sim.stats.received == 3, 30, "the new run's orders admitted")
    async with running_service(with_snapshots) as again:
        await wait_for(lambda: again.run_journal is not None and again.run_journal.live.is_set(), 30, "live")
        assert again.run_id == newer.run_id != older.run_id
        assert again.snapshot is None and again.history is not None and again.history.read_from is None
        assert again.history.inputs == 3


async def test_get_snapshot_answers_a_snapshot_the_model_restores_and_simulate_starts_from_it(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 2000})
    async with running_service(config) as running, aiohttp.ClientSession() as http:
        await produce(kafka_bootstrap, config.kafka.topics.orders, orders(12, unique, seed=4))
        await wait_for(lambda: running.sim.stats.received == 12, 30, "every order admitted")
        async with http.get(f"http://127.0.0.1:{running.http_port}/snapshot") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            raw = await response.read()
        saved = tmp_path / "saved.json"  # the same through the command line
        assert await asyncio.to_thread(main, ["snapshot", "--url", f"http://127.0.0.1:{running.http_port}",
                                              "-o", str(saved)]) == 0
        assert wire.from_json(orjson.loads(saved.read_bytes())).run_id == running.run_id
        run_id, seed, start = running.run_id, running.sim.seed, running.sim.start
    snapshot = wire.from_json(orjson.loads(raw))
    assert snapshot.run_id == run_id
    assert snapshot.fingerprint == config.model_fingerprint
    assert snapshot.model_version == model_snapshot.SNAPSHOT_VERSION
    assert sum(snapshot.inputs_through.values()) == 12
    run_config = config.model_copy(update={"simulation": config.simulation.model_copy(
        update={"seed": seed, "start": start})})
    sim = model_snapshot.restore(run_config, ListSink(), snapshot.document)
    assert sim.now == snapshot.sim_time_s
    assert model_snapshot.take(sim) == snapshot.document  # the same state, the same document

    # the offline study from it: same config (the service's connections do not matter), then another one
    path = tmp_path / "plant.json"
    path.write_bytes(raw)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    report = tmp_path / "report.json"
    code = await asyncio.to_thread(main, ["simulate", "--config", str(config_path), "--from-snapshot", str(path),
                                          "--lots", "5", "--report-json", str(report), "--no-progress"])
    assert code == 0
    lots = orjson.loads(report.read_bytes())["lots"]
    assert lots["in_progress"] == 0
    assert lots["completed"] + lots["scrapped"] >= 12 + 5
    # a what-if study from it: one more lathe in Vietnam (a warm start of the changed plant)
    other = copy.deepcopy(yaml.safe_load(config_path.read_text(encoding="utf-8")))
    other["locations"]["Vietnam"]["machines"]["tornio"] += 1
    config_path.write_text(yaml.safe_dump(other), encoding="utf-8")
    assert await asyncio.to_thread(main, ["simulate", "--config", str(config_path), "--from-snapshot", str(path),
                                          "--until", "7d", "--report-json", str(report), "--no-progress"]) == 0
    machines = orjson.loads(report.read_bytes())["machines"]
    assert "Vietnam-tornio-04" in machines, sorted(machines)
    # one a snapshot cannot start: a machine fewer (its state would be lost), a clear error (exit code 2)
    other["locations"]["Vietnam"]["machines"]["tornio"] -= 2
    config_path.write_text(yaml.safe_dump(other), encoding="utf-8")
    assert await asyncio.to_thread(main, ["simulate", "--config", str(config_path), "--from-snapshot", str(path),
                                          "--until", "1h", "--no-progress"]) == 2
    path.write_bytes(b'{"not": "a snapshot"}')
    assert await asyncio.to_thread(main, ["simulate", "--config", str(config_path), "--from-snapshot", str(path),
                                          "--until", "1h", "--no-progress"]) == 2


# -- choosing the snapshot -------------------------------------------------------------------------------
def _fields(snapshot: Snapshot) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in snapshot.__slots__}


def _history(config: Any) -> RunHistory:
    admit = Admit(Order("L-1", "c", 1, "Italia", "normale"))
    reads = [RunStart(p, "r", config.simulation.seed, config.model_fingerprint, config.simulation.start)
             for p in sorted(config.locations)]
    reads += [Applied("Italia", "r", n, 10.0 * n, admit) for n in range(1, 4)]
    history = run_to_continue([Read(e, 0, i, i) for i, e in enumerate(reads)], config, "j")
    assert history is not None
    return history


def _snapshot(config: Any, **change: Any) -> Snapshot:
    base = Snapshot("r", config.model_fingerprint, model_snapshot.SNAPSHOT_VERSION, 25.0,
                    {"Brasile": 0, "Italia": 2, "Vietnam": 0}, {"Brasile": 0, "Italia": 9, "Vietnam": 0},
                    dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp(), {}, "s1")
    return Snapshot(**{**_fields(base), **change})


def test_a_snapshot_stands_for_the_inputs_it_covers_and_the_replay_starts_after_them(default_config: Any) -> None:
    history = _history(default_config)
    snapshot = _snapshot(default_config)
    check_snapshot(snapshot, history, default_config, model_snapshot.SNAPSHOT_VERSION, "s")
    assert [[e.seq for e in g] for g in history.replay_order(snapshot.inputs_through)] == [[3]]
    with pytest.raises(SnapshotCorrupt, match="inputs the journal does not have"):
        check_snapshot(_snapshot(default_config, inputs_through={"Brasile": 0, "Italia": 4, "Vietnam": 0}),
                       history, default_config, model_snapshot.SNAPSHOT_VERSION, "s")
    with pytest.raises(SnapshotCorrupt, match="before its simulated time"):
        check_snapshot(_snapshot(default_config, sim_time_s=35.0), history, default_config,
                       model_snapshot.SNAPSHOT_VERSION, "s")
    with pytest.raises(SnapshotCorrupt, match="has the plants"):
        check_snapshot(_snapshot(default_config, inputs_through={"Italia": 2}), history, default_config,
                       model_snapshot.SNAPSHOT_VERSION, "s")
    with pytest.raises(ConfigError, match=r"another plant config .*--fresh"):
        check_snapshot(_snapshot(default_config, fingerprint="0" * 64), history, default_config,
                       model_snapshot.SNAPSHOT_VERSION, "s")
    with pytest.raises(ConfigError, match="model state of version"):
        check_snapshot(_snapshot(default_config, model_version=model_snapshot.SNAPSHOT_VERSION + 1), history,
                       default_config, model_snapshot.SNAPSHOT_VERSION, "s")


def test_new_inputs_after_a_restart_wait_for_where_the_output_may_be_published(default_config: Any) -> None:
    reads = [RunStart(p, "r", default_config.simulation.seed, default_config.model_fingerprint,
                      default_config.simulation.start) for p in sorted(default_config.locations)]
    reads += [Checkpoint("Italia", "r", 40, 900.0), Checkpoint("Brasile", "r", 12, 1200.5),
              Checkpoint("Italia", "r", 41, 1100.0)]
    history = run_to_continue([Read(e, 0, i, i) for i, e in enumerate(reads)], default_config, "j")
    assert history is not None
    assert history.published_until() == 1200.5  # the newest checkpoint of any plant
    assert history.plants["Italia"].output_through == 41


def test_the_journal_after_a_snapshot_mark_continues_the_run_it_covers(default_config: Any) -> None:
    """A start reads the journal from a snapshot's mark on: entries there that the snapshot covers
    are skipped (their orders still count as journaled), the inputs after it are numbered on from
    it, and what the mark says of the part before (seed, start, clock, orders) stands in for it."""
    admit = Admit(Order("L-1", "c", 1, "Italia", "normale"))
    clock = Clock(20.0, 1_700_000_000.0, 60.0)
    mark = JournalMark(3, {0: 7, 1: 0, 2: 4}, default_config.simulation.seed, default_config.simulation.start,
                       clock, {"orders/1": [12, 13]})
    snapshot = _snapshot(default_config, journal=mark)  # Italia 2 inputs, simulated time 25 s
    tail = [Applied("Italia", "r", 2, 20.0, admit, "orders/1/14"), Checkpoint("Italia", "r", 30, 26.0),
            Applied("Italia", "r", 3, 30.0, admit, "orders/1/15"), Applied("Italia", "r", 4, 31.0, admit)]
    history = run_after_snapshot([Read(e, 0, 7 + i, i) for i, e in enumerate(tail)], snapshot, default_config, "j")
    assert history is not None
    italia = history.plants["Italia"]
    assert (italia.base, italia.inputs, [e.seq for e in italia.applied]) == (2, 4, [3, 4])
    assert italia.output_through == 30 and history.published_until() == 26.0
    assert history.clock() == ClockSet("Brasile", "r", 20.0, 1_700_000_000.0, 60.0)
    assert history.sources == {("orders", 1): {12, 13, 14, 15}}
    assert history.read_from == {0: 7, 1: 0, 2: 4}
    check_snapshot(snapshot, history, default_config, model_snapshot.SNAPSHOT_VERSION, "s")
    assert [[e.seq for e in g] for g in history.replay_order(snapshot.inputs_through)] == [[3], [4]]
    # a newer run began after the snapshot: the whole journal is read instead
    newer = [RunStart("Italia", "r2", 1, default_config.model_fingerprint, default_config.simulation.start)]
    assert run_after_snapshot([Read(e, 0, 7, 0) for e in newer], snapshot, default_config, "j") is None
    assert run_after_snapshot([], _snapshot(default_config), default_config, "j") is None  # no mark
    # the inputs after the snapshot must follow on from it
    with pytest.raises(ConfigError, match="has input 4 but not input 3"):
        run_after_snapshot([Read(tail[-1], 0, 7, 0)], snapshot, default_config, "j")
    with pytest.raises(ConfigError, match="has seed"):
        run_after_snapshot([], _snapshot(default_config, journal=JournalMark(
            3, {}, default_config.simulation.seed + 1, default_config.simulation.start, None)), default_config, "j")


def test_a_snapshot_mark_survives_the_envelope_and_a_bad_one_is_refused(default_config: Any) -> None:
    mark = JournalMark(2, {0: 5, 1: 9}, 7, dt.datetime(2026, 3, 1, 6, tzinfo=dt.UTC), Clock(1.5, 2.5, None, True),
                       {"orders/0": [3, 4]})
    snapshot = _snapshot(default_config, journal=mark)
    assert wire.from_json(orjson.loads(orjson.dumps(wire.to_json(snapshot)))) == snapshot
    assert wire.from_json(wire.to_json(_snapshot(default_config))).journal is None
    envelope = wire.to_json(snapshot)
    envelope["journal"]["offsets"] = {"5": 1}  # a partition beyond the two it counts
    with pytest.raises(SnapshotCorrupt, match="beyond"):
        wire.from_json(envelope)


async def test_a_snapshot_mark_lists_the_orders_journaled_until_their_offsets_are_committed(
        default_config: Any) -> None:
    """The orders a snapshot's mark lists are those whose journal entries Kafka acknowledged and
    whose offsets are not known to be committed: read again after a crash, they are done."""
    class Journal:
        def __init__(self) -> None:
            self.pending: list[asyncio.Future[None]] = []

        def append(self, entries: Any) -> asyncio.Future[None]:
            self.pending.append(asyncio.get_running_loop().create_future())
            return self.pending[-1]

    journal = Journal()
    gate = InputGate(Driver(Simulation(default_config, NullSink()), speed=None), journal, "r")
    gate.track_journaled = True  # as a service that writes snapshots has it (without, nothing is kept)
    admits = [Admit(Order(f"L-{n}", "c", 1, "Italia", "normale")) for n in range(3)]
    gate.submit(admits[:2], ["orders/0/10", "orders/1/4"])
    gate.submit(admits[2:], ["orders/0/11"])
    assert gate.journaled_orders({}) == {}  # nothing acknowledged yet
    journal.pending[0].set_result(None)
    journal.pending[1].set_exception(RuntimeError("refused"))  # not journaled: read again, it is admitted
    await asyncio.wait(journal.pending)  # (the gate's callbacks, registered first, have run)
    assert gate.journaled_orders({}) == {"orders/0": [10], "orders/1": [4]}
    assert gate.journaled_orders({("orders", 0): 11}) == {"orders/1": [4]}  # 10 is committed: forgotten
    assert gate.journaled_orders({}) == {"orders/1": [4]}
    gate.recovered_sources = {("orders", 2): {5, 9}}  # a recovered run's, until they are committed too
    assert gate.journaled_orders({("orders", 2): 6}) == {"orders/1": [4], "orders/2": [9]}
    assert gate.journaled_orders({("orders", 2): 10, ("orders", 1): 5}) == {}
    assert gate.recovered_sources == {}


def test_snapshot_keys_are_checked(default_yaml: dict[str, Any]) -> None:
    data = copy.deepcopy(default_yaml)
    data["kafka"]["snapshots"] = {"every_inputs": None, "every_s": None}
    with pytest.raises(ConfigError, match="give every_inputs or every_s"):
        parse(data, environ={})
    data["kafka"]["snapshots"] = {"enabled": False, "every_inputs": None, "every_s": None}
    assert parse(data, environ={}).kafka.snapshots.enabled is False
