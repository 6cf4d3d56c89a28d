"""Restart to live: how long a service takes to continue a run from the journal, by its history,
with and without a recent snapshot.

A journal is written for the reference plant with N admitted lots (orders at the configured arrival
rate, their checkpoints saying every output record is already in Kafka, as after a clean stop),
then the real service starts on it (embedded memory broker, speed max) and the time from the start
of ``Service.run`` until the run is live is measured.  Without a snapshot that is reading the
journal and applying every input again; with one (the model after the last input, written to the
snapshot topic as the service writes it, so the journal tail after it is empty) it is reading the
journal's tail after the snapshot's mark (where the journal ended when it was taken), finding and
restoring the snapshot.  The baseline of the same run is ``factorysim
simulate`` of the same lots (the engine alone, no Kafka; with a snapshot, the offline run of the
same inputs that makes the snapshot): recovery without snapshots cannot be faster than that.

    python tools/bench/recovery.py [--lots 10000 100000] [--snapshot]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml
from aiokafka import AIOKafkaProducer

from simulator.adapters.embedded_broker import EmbeddedBroker
from simulator.adapters.journal_reader import JournalEnds
from simulator.adapters.kafka_options import producer_options
from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.formats import journal
from simulator.formats import snapshot as wire
from simulator.formats.journal import Applied, Checkpoint, ClockSet, Entry, RunStart
from simulator.formats.snapshot import JournalMark, Snapshot
from simulator.model import snapshot as model_snapshot
from simulator.model.arrivals import OrderGenerator, mix_with
from simulator.model.inputs import Admit, apply
from simulator.model.randomness import stream
from simulator.model.records import NullSink
from simulator.model.simulation import Simulation
from simulator.programs.offline import run_offline
from simulator.programs.service import Service

ROOT = Path(__file__).resolve().parents[2]
RUN = "bench-recovery"


def bench_config(bootstrap: str, tag: str) -> Config:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["simulation"]["speed"] = "max"
    data["kafka"] = {"bootstrap_servers": bootstrap,
                     "topics": {"orders": f"{tag}.orders", "telemetry_prefix": f"{tag}.telemetry",
                                "events": f"{tag}.events", "dead_letter": f"{tag}.dead_letter",
                                "journal": f"{tag}.journal", "snapshots": f"{tag}.snapshots"},
                     "consumer": {"group_id": f"{tag}-group"}}
    data["http"] = {"host": "127.0.0.1", "port": 0, "open_controls": True}
    return parse(data, environ={})


def history(config: Config, lots: int) -> list[Entry]:
    """A run's journal: start entries, ``lots`` admissions at generated instants, checkpoints."""
    plants = sorted(config.locations)
    start = config.simulation.start
    entries: list[Entry] = [RunStart(p, RUN, config.simulation.seed, config.model_fingerprint, start) for p in plants]
    arrivals = config.arrivals
    generator = OrderGenerator(arrivals, mix_with(arrivals.location_mix or dict.fromkeys(plants, 1.0),
                                                  config.location_of), stream(1, "bench"), code_prefix="B")
    seqs = dict.fromkeys(plants, 0)
    at = 0.0
    for n, (gap, order) in enumerate(generator, start=1):
        at += gap
        seqs[order.location] += 1
        entries.append(Applied(order.location, RUN, seqs[order.location], at, Admit(order)))
        if n >= lots:
            break
    entries += [Checkpoint(p, RUN, 10**12, at) for p in plants]  # everything was delivered
    entries += [ClockSet(p, RUN, at, dt.datetime.now(dt.UTC).timestamp(), None) for p in plants]
    return entries


async def write(bootstrap: str, config: Config, entries: list[Entry]) -> None:
    """The entries on the journal topic, in record batches as the service's producer makes them."""
    topic = config.kafka.topics.journal
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(config.kafka.producer))
    await producer.start()
    try:
        futures = []
        for entry in entries:
            message = journal.encode(entry, topic)
            futures.append(await producer.send(topic, message.value, key=message.key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def snapshot_after(config: Config, entries: list[Entry], journal_ends: dict[int, int]) -> Snapshot:
    """The model's snapshot after every input of ``entries`` (computed offline, as the service would
    have taken it at its last input), marking the journal's ends (``journal_ends``, asked for
    before, as the service does)."""
    sim = Simulation(config, NullSink(), sample_limit=20_000)
    inputs = dict.fromkeys(config.locations, 0)
    for entry in entries:
        if isinstance(entry, Applied):
            sim.settle(entry.at)
            apply(sim, entry.input)
            inputs[entry.plant] = entry.seq
    document = model_snapshot.take(sim)
    mark = JournalMark(len(journal_ends), journal_ends, sim.seed, sim.start, None)
    return Snapshot(RUN, config.model_fingerprint, model_snapshot.SNAPSHOT_VERSION, sim.now, inputs,
                    dict(document["record_seqs"]), time.time(), document, wire.new_snapshot_id(), mark)


async def write_snapshot(bootstrap: str, config: Config, snapshot: Snapshot) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                max_request_size=config.kafka.producer.max_request_bytes)
    await producer.start()
    try:
        topic = config.kafka.topics.snapshots
        for message in wire.encode(snapshot, topic, wire.part_bytes(config.kafka.producer.max_request_bytes)):
            await (await producer.send(topic, message.value, key=message.key, headers=list(message.headers)))
    finally:
        await producer.stop()


async def measure_one(lots: int, with_snapshot: bool = False) -> dict[str, float]:
    async with EmbeddedBroker() as broker:
        config = bench_config(broker.bootstrap_servers, f"rec{lots}")
        entries = history(config, lots)
        await write(broker.bootstrap_servers, config, entries)
        simulate_s = 0.0
        if with_snapshot:  # the engine applying the same inputs offline is the baseline here
            ends = JournalEnds({"bootstrap_servers": broker.bootstrap_servers}, config.kafka.topics.journal)
            try:
                journal_ends = await ends.ends(30.0)
            finally:
                await ends.close()
            started = time.perf_counter()
            snapshot = snapshot_after(config, entries, journal_ends)
            simulate_s = time.perf_counter() - started
            await write_snapshot(broker.bootstrap_servers, config, snapshot)
        service = Service(config)
        started = time.perf_counter()
        task = asyncio.get_running_loop().create_task(service.run())
        while service.run_journal is None or not service.run_journal.live.is_set():
            if task.done():
                task.result()
                raise RuntimeError("the service stopped before it was live")
            await asyncio.sleep(0.01)
        live_s = time.perf_counter() - started
        used = service.snapshot is not None
        assert service.history is not None
        if with_snapshot and service.history.read_from is None:
            raise RuntimeError("the service read the whole journal, not the part after the snapshot's mark")
        service.request_stop()
        await task
    if not with_snapshot:
        started = time.perf_counter()
        await run_offline(config, lots=lots)
        simulate_s = time.perf_counter() - started
    if used != with_snapshot:
        raise RuntimeError(f"the service {'did not use' if with_snapshot else 'used'} a snapshot")
    return {"lots": lots, "live_s": live_s, "simulate_s": simulate_s, "entries": len(entries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lots", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--snapshot", action="store_true", help="with a snapshot after the last input")
    args = parser.parse_args()
    print(f"{'admitted lots':>14}{'restart to live (s)':>22}{'simulate same lots (s)':>25}{'ratio':>8}")
    for lots in args.lots:
        r = asyncio.run(measure_one(lots, args.snapshot))
        print(f"{lots:>14,}{r['live_s']:>22.1f}{r['simulate_s']:>25.1f}{r['live_s'] / r['simulate_s']:>8.2f}")


if __name__ == "__main__":
    main()
