"""The journal: its entries read back as written, and the service's journal on the real broker
replayed offline gives the output the service published, byte for byte (the property recovery
stands on)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import aiohttp
import orjson
import pytest

from simulator.errors import ConfigError
from simulator.formats import journal
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.formats.journal import Applied, Checkpoint, ClockSet, JournalError, RunStart
from simulator.model.inputs import Admit, Block, ClearAnomaly, Input, PlantAnomaly, Repair, SetAnomaly, apply
from simulator.model.machine import MachineState
from simulator.model.order import Order
from simulator.model.records import ListSink
from simulator.model.simulation import Simulation
from simulator.runtime.recovery import run_to_continue

from harness.service import (
    Reader,
    control_headers,
    finished,
    orders,
    produce,
    running_service,
    service_config,
    wait_for,
)

INPUTS: list[Input] = [
    Admit(Order("L-1", "Bar Sport", 12, "Italia", "alta", "2025-06-25T08:00:00Z")),
    Admit(Order("L-2", "", 1, "Vietnam", "bassa")),
    Block("Italia-fresa_cnc-01", "jam", 600.5), Block("Italia-fresa_cnc-02"),
    Repair("Italia-fresa_cnc-01"),
    SetAnomaly("Brasile-tornio-01", "bearing_fault", 2.5, 900.0), SetAnomaly("Brasile-tornio-02", "energy_spike"),
    ClearAnomaly("Brasile-tornio-01", "bearing_fault"), ClearAnomaly("Brasile-tornio-02"),
    PlantAnomaly("Vietnam", "energy_spike", True, 1.5, 60.0), PlantAnomaly("Vietnam", "energy_spike", False),
]


@pytest.mark.parametrize("entry", [
    RunStart("Italia", "run-1", 42, "f" * 64, dt.datetime(2025, 6, 25, 6, 0, tzinfo=dt.UTC)),
    Checkpoint("Brasile", "run-1", 1234, 5678.25),
    ClockSet("Vietnam", "run-1", 12.5, 1_764_000_000.123, 60.0), ClockSet("Vietnam", "run-1", 0.0, 1.0, None, True),
    *(Applied("Italia", "run-1", n, 0.1 * n, item, "orders/2/17" if n % 2 else None, n % 3 == 0)
      for n, item in enumerate(INPUTS, start=1)),
])
def test_every_entry_reads_back_as_written(entry: journal.Entry) -> None:
    message = journal.encode(entry, "plants.journal")
    assert message.key == entry.plant.encode()
    assert journal.decode_entry(message.value) == entry


def test_version_1_entries_still_read() -> None:
    admit = (b'{"v": 1, "run": "run-1", "plant": "Italia", "kind": "input", "seq": 3, "at": 0.5, "input": '
             b'{"kind": "admit", "lot_code": "L-1", "customer": "Bar Sport", "quantity": 12, "location": "Italia", '
             b'"priority": "alta", "timestamp": "2025-06-25T08:00:00Z"}, "source": "orders/2/17", "joined": true}')
    assert journal.decode_entry(admit) == Applied("Italia", "run-1", 3, 0.5, INPUTS[0], "orders/2/17", True)
    block = b'{"v": 1, "run": "r", "plant": "Italia", "kind": "input", "seq": 1, "at": 2, "input": ' \
            b'{"kind": "block", "machine_id": "Italia-fresa_cnc-02", "reason": "manual", "duration_s": null}}'
    assert journal.decode_entry(block) == Applied("Italia", "r", 1, 2.0, INPUTS[3])
    checkpoint = b'{"v": 1, "run": "r", "plant": "Brasile", "kind": "checkpoint", "output_seq": 7, "at": 1.5}'
    assert journal.decode_entry(checkpoint) == Checkpoint("Brasile", "r", 7, 1.5)


def test_an_order_input_is_written_as_a_compact_array() -> None:
    value = journal.encode(Applied("Italia", "run-1", 3, 0.5, INPUTS[1], "orders/2/17", True), "j").value
    assert orjson.loads(value) == [2, "input", "run-1", "Italia", 3, 0.5, "orders/2/17", True,
                                   ["admit", "L-2", "", 1, "Vietnam", "bassa", None]]


@pytest.mark.parametrize(("raw", "problem"), [
    (b"{", "not JSON"), (b"7", "a JSON object or array"), (b'{"v": 3, "kind": "start"}', "version 3"),
    (b"[]", "version None"), (b'[1, "input"]', "version 1 in an array"), (b'[2, "start", "r", "p"]', "9 fields"),
    (b'[2, "input", "r", "p", 1, 0, null, 1, ["admit", "L", "", 1, "Italia", "alta", null]]', "joined"),
    (b'[2, "input", "r", "p", 1, -1, null, false, ["admit", "L", "", 1, "Italia", "alta", null]]', "cannot be read"),
    (b'[2, "input", "r", "p", 1, 0, 5, false, ["admit", "L", "", 1, "Italia", "alta", null]]', "source"),
    (b'[2, "input", "r", "p", 1, 0, null, false, ["admit", "L", "", 1, "Italia"]]', "7 fields"),
    (b'[2, "input", "r", "p", 1, 0, null, false, ["admit", "L", "", 0, "Italia", "alta", null]]',
     "not an order factorysim admits"),
    (b'{"v": 1, "run": "r", "plant": "p", "kind": "nope"}', "unknown entry kind"),
    (b'{"v": 1, "run": "r", "plant": "p", "kind": "input", "seq": 1, "at": -1, "input": {}}', "cannot be read"),
    (b'{"v": 1, "run": "r", "plant": "p", "kind": "input", "seq": 1, "at": 1, "input": {"kind": "x"}}',
     "cannot be read"),
    (b'{"v": 1, "run": "r", "plant": "p", "kind": "input", "seq": 1, "at": 1, "input": {"kind": "admit", '
     b'"lot_code": "L", "quantity": 0, "location": "Italia", "priority": "alta"}}', "not an order factorysim admits"),
])
def test_a_malformed_entry_is_a_journal_error(raw: bytes, problem: str) -> None:
    with pytest.raises(JournalError, match=problem):
        journal.decode_entry(raw)


async def test_the_journal_replayed_offline_gives_the_published_output_byte_for_byte(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "simulation.speed": "max",
        "disruptions.failures": {"mtbf_h": 2, "repair_time": {"distribution": "exponential", "mean": 1800}},
        "telemetry.sample_interval_s": 300})
    topics = config.kafka.topics
    fmt = CoffeeMekFormat(config, config.simulation.seed)
    telemetry = [*fmt.cycle_topics.values(), *fmt.sample_topics.values()]
    lots = 30
    async with running_service(config) as service, \
            aiohttp.ClientSession(headers=control_headers(service)) as http:
        await produce(kafka_bootstrap, topics.orders, orders(lots, unique, seed=3))
        base = f"http://127.0.0.1:{service.http_port}"
        async with http.post(f"{base}/machines/Vietnam-tornio-01/anomaly", json={"type": "bearing_fault"}) as r:
            assert r.status == 200
        async with http.post(f"{base}/simulation/pause") as r:  # failures come often: pick one not down now
            assert r.status == 200
        up = next(m for _, m in sorted(service.sim.plant.machines.items())
                  if m.state in (MachineState.IDLE, MachineState.RUNNING))
        async with http.post(f"{base}/machines/{up.id}/block", json={"duration_s": 3600}) as r:
            assert r.status == 200, await r.text()
        async with http.post(f"{base}/simulation/resume") as r:
            assert r.status == 200
        async with Reader(kafka_bootstrap, [topics.events]) as reader:
            await reader.read_until(lambda c: len(finished(c.json(topics.events))) >= lots, 60, "every lot finished")
        async with http.post(f"{base}/simulation/pause") as r:  # samples and failures go on for ever
            assert r.status == 200
        await wait_for(lambda: service.publisher is not None and service.outbox.total > 0
                       and sum(service.publisher.delivered_through.values()) >= service.outbox.total, 30,
                       "every record acknowledged")
        run_id, through = service.run_id, dict(service.publisher.delivered_through)

    def complete(c: Any) -> bool:
        written = {e.plant: e.output_seq for e in map(journal.decode_entry, (m.value for m in c.of(topics.journal)))
                   if isinstance(e, Checkpoint)}
        output = sum(len(c.of(topic)) for topic in [topics.events, *telemetry])
        return written == through and output >= sum(through.values())

    async with Reader(kafka_bootstrap, [topics.journal, topics.events, *telemetry]) as reader:
        collected = await reader.read_until(complete, 30, "the output and the journal's last checkpoints")
    entries = [journal.decode_entry(m.value) for m in collected.of(topics.journal)]
    assert {e.run_id for e in entries} == {run_id}
    starts = [e for e in entries if isinstance(e, RunStart)]
    assert sorted(e.plant for e in starts) == sorted(config.locations)
    assert {(e.seed, e.fingerprint, e.start) for e in starts} == {
        (config.simulation.seed, config.model_fingerprint, config.simulation.start)}
    applied = [e for e in entries if isinstance(e, Applied)]
    admits = [e for e in applied if isinstance(e.input, Admit)]
    assert len(admits) == lots
    assert all(e.source is not None and e.source.startswith(f"{topics.orders}/") for e in admits)
    for plant in config.locations:
        numbers = sorted(e.seq for e in applied if e.plant == plant)
        assert numbers == list(range(1, len(numbers) + 1))

    # replay: the same inputs at the same instants, offline, encoded with the run's ids
    sink = ListSink()
    sim = Simulation(config, sink)
    for entry in sorted(applied, key=lambda e: (e.at, e.plant, e.seq)):
        if not entry.joined:  # a joined input applies right after the one before it
            sim.settle(entry.at)
        apply(sim, entry.input)
    checkpoints: dict[str, int] = defaultdict(int)
    for entry in entries:
        if isinstance(entry, Checkpoint):
            checkpoints[entry.plant] = max(checkpoints[entry.plant], entry.output_seq)
    while any(sim.recorder.seqs[p] < seq for p, seq in checkpoints.items()):
        sim.env.step()
    replayed = {(m.topic, orjson.loads(m.value).get("id_evento") or orjson.loads(m.value)["event_id"]): m.value
                for record in sink.records if record.seq <= checkpoints.get(record.location, 0)
                for m in CoffeeMekFormat(config, config.simulation.seed, run_id).encode(record)}
    published = {(m.topic, orjson.loads(m.value).get("id_evento") or orjson.loads(m.value)["event_id"]): m.value
                 for topic in [topics.events, *telemetry] for m in collected.of(topic)}
    assert len(replayed) > 500
    missing = [key for key in replayed if key not in published]
    assert not missing, f"{len(missing)} replayed messages were not published, e.g. {missing[:3]}"
    different = [key for key, value in replayed.items() if published[key] != value]
    assert not different, (f"{len(different)} messages differ, e.g. {different[:3]}: published "
                           f"{published[different[0]]!r}, replayed {replayed[different[0]]!r}" if different else "")



def reads(*entries: journal.Entry | JournalError, timestamps: list[int] | None = None) -> list[journal.Read]:
    return [journal.Read(e, 0, offset, (timestamps or list(range(len(entries))))[offset])
            for offset, e in enumerate(entries)]


def starts(config: Any, run: str) -> list[journal.Entry]:
    return [RunStart(p, run, config.simulation.seed, config.model_fingerprint, config.simulation.start)
            for p in sorted(config.locations)]


def test_the_newest_run_is_continued_and_an_unreadable_entry_of_an_older_run_is_ignored(default_config: Any) -> None:
    admit = Admit(Order("L-1", "c", 1, "Italia", "normale"))
    history = run_to_continue(reads(
        *starts(default_config, "old"), JournalError("garbled"), Applied("Italia", "old", 1, 5.0, admit),
        *starts(default_config, "new"), Applied("Italia", "new", 1, 7.0, admit, "orders/0/3"),
        Applied("Italia", "new", 2, 7.0, admit, None, True), Checkpoint("Italia", "new", 40, 9.0),
        Applied("Brasile", "new", 1, 8.0, Repair("Brasile-tornio-01"))), default_config, "j")
    assert history is not None
    assert history.run_id == "new"
    assert [len(p.applied) for p in history.plants.values()] == [1, 2, 0]  # Brasile, Italia, Vietnam
    assert history.plants["Italia"].output_through == 40
    assert history.sources == {("orders", 0): {3}}
    assert [[e.seq for e in g] for g in history.replay_order()] == [[1, 2], [1]]  # joined inputs together


@pytest.mark.parametrize(("bad", "problem"), [
    ([Applied("Italia", "r", 2, 1.0, Repair("Italia-tornio-01"))], "has input 2 but not input 1"),
    ([Applied("Italia", "r", 1, 1.0, Repair("Italia-tornio-01")),
      Applied("Italia", "r", 1, 1.0, Repair("Italia-tornio-02"))], "two different inputs numbered 1"),
    ([Applied("Italia", "r", 1, 9.0, Repair("Italia-tornio-01")),
      Applied("Italia", "r", 2, 3.0, Repair("Italia-tornio-01"))], "before the input ahead of it"),
    ([JournalError("garbled")], "cannot be read"),
])
def test_a_broken_run_is_a_clear_error(default_config: Any, bad: list[Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        run_to_continue(reads(*starts(default_config, "r"), *bad), default_config, "j")


def test_an_entry_kafka_holds_twice_counts_once_and_entries_out_of_order_are_put_back_in_order(
        default_config: Any) -> None:
    """A producer sends a batch again when its acknowledgement is lost (the entries are then in
    Kafka twice), and a batch sent again after a failure lands behind later ones."""
    one, two, three = (Applied("Italia", "r", n, float(n), Repair("Italia-tornio-01")) for n in (1, 2, 3))
    history = run_to_continue(reads(*starts(default_config, "r"), one, three, one, two, three), default_config, "j")
    assert history is not None
    assert history.plants["Italia"].applied == [one, two, three]


def test_an_empty_journal_starts_a_new_run_and_one_of_foreign_bytes_is_refused(default_config: Any) -> None:
    assert run_to_continue([], default_config, "j") is None
    with pytest.raises(ConfigError, match="holds no run factorysim can read"):
        run_to_continue(reads(JournalError("garbled")), default_config, "j")
