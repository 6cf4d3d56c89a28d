"""Snapshots: a plant's state written at any instant and restored continues byte for byte as if the
run had never stopped — for the reference plant with every disruption on and for every profile,
with commands (blocks, repairs, anomalies) before and after the snapshot."""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.loader import load
from simulator.config.schema import Config
from simulator.errors import CommandRejected
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.model import snapshot
from simulator.model.inputs import Block, Input, PlantAnomaly, Repair, SetAnomaly, apply
from simulator.model.records import ListSink, Record
from simulator.model.simulation import Simulation

ROOT = Path(__file__).resolve().parent.parent
HORIZON_S = 4 * 86400.0  # the reference plant's run; the profiles sample every few seconds: 3 hours
HORIZONS = {"reference": HORIZON_S, "enms": 3 * 3600.0, "smart-factory": 3 * 3600.0, "spaceship": 3 * 3600.0}


def every_disruption(default: Config) -> Config:
    """The reference plant with failures (restart and resume), per-cycle blocks, maintenance every N
    cycles and every N hours, random anomalies, a shift calendar, quality rework/scrap and samples."""
    data: dict[str, Any] = default.model_dump(mode="json")
    data["disruptions"]["failures"] = {"mtbf_h": 6, "repair_time": {"distribution": "exponential", "mean": 1800},
                                       "on_interrupt": "resume"}
    data["disruptions"]["block_probability"] = 0.2
    data["disruptions"]["maintenance"] = {"every_cycles": 25, "every_hours": 30,
                                          "duration": {"distribution": "uniform", "low": 1800, "high": 3600}}
    data["disruptions"]["anomalies"] = {"probability_per_hour": 0.2,
                                        "duration": {"distribution": "exponential", "mean": 1800},
                                        "severity": {"distribution": "uniform", "low": 0.5, "high": 2.0}}
    data["telemetry"]["sample_interval_s"] = 900
    data["arrivals"]["rate_per_hour"] = 6.0
    shifts = [{"name": "day", "start": "06:00", "end": "14:00", "capacity": 1.0},
              {"name": "late", "start": "14:00", "end": "22:00", "capacity": 0.5}]
    data["shift_calendars"] = {"two-shift": {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "shifts": shifts,
                                             "weekend_factor": 0.5}}
    data["locations"]["Italia"]["shift_calendar"] = "two-shift"
    for stage in data["route"]:
        if stage["machine_type"] == "tornio":
            stage.setdefault("disruptions", {})["failures"] = {
                "mtbf_h": 4, "repair_time": {"distribution": "exponential", "mean": 900}, "on_interrupt": "restart"}
    return Config.model_validate(data)


def profile(name: str) -> Config:
    return load(ROOT / "profiles" / f"{name}.yaml", environ={})


CONFIGS = ["reference", "enms", "smart-factory", "spaceship"]


@functools.cache
def config_of(name: str) -> Config:
    if name == "reference":
        return every_disruption(load(ROOT / "config.yaml", environ={}))
    return profile(name)


def commands(sim: Simulation, n: int, horizon: float = HORIZON_S) -> list[tuple[float, Input]]:
    """A fixed script of commands on the plant's machines at instants spread over the horizon."""
    machines = sorted(sim.plant.machines)
    plant = sorted(sim.config.locations)[0]
    script: list[tuple[float, Input]] = []
    for k in range(n):
        at = horizon * (k + 0.5) / n
        machine = machines[(7 * k) % len(machines)]
        kind = k % 4
        if kind == 0:
            script.append((at, Block(machine, "drill", 1200.0 if k % 8 == 0 else None)))
            script.append((at + 600.0, Repair(machine)))
        elif kind == 1:
            script.append((at, SetAnomaly(machine, "bearing_fault", 1.5, 7200.0)))
        elif kind == 2:
            script.append((at, PlantAnomaly(plant, "energy_spike", True, 1.0, 3600.0)))
        else:
            script.append((at, Block(machine, "drill")))
            script.append((at + 5400.0, Repair(machine)))
    return sorted(script, key=lambda item: item[0])


def drive(sim: Simulation, script: list[tuple[float, Input]], start: float, until: float) -> None:
    """Apply the script's commands in (start, until] at their instants (refused ones do nothing),
    then run up to ``until``."""
    for at, item in script:
        if start < at <= until:
            sim.settle(at)
            with contextlib.suppress(CommandRejected):  # refused (machine busy, off shift …): the same in both runs
                apply(sim, item)
    sim.settle(until)


def encoded(config: Config, records: list[Record], seed: int) -> list[bytes]:
    fmt = CoffeeMekFormat(config, seed, run_id="snapshot-test")
    return [m.topic.encode() + b" " + (m.key or b"") + b" " + m.value for r in records for m in fmt.encode(r)]


def started(config: Config, seed: int) -> tuple[Simulation, ListSink]:
    sink = ListSink()
    sim = Simulation(config, sink, seed=seed, sample_limit=500)
    sim.start_arrivals()
    return sim, sink


@pytest.mark.timeout(600)  # twelve runs of a plant twice over: minutes on a loaded machine
@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(CONFIGS), seed=st.integers(0, 2**31 - 1),
       share=st.floats(0.02, 0.95, allow_nan=False))
def test_a_restored_snapshot_continues_byte_for_byte(name: str, seed: int, share: float) -> None:
    config, horizon = config_of(name), HORIZONS[name]
    at = horizon * share
    whole, whole_sink = started(config, seed)
    script = commands(whole, 12, horizon)
    drive(whole, script, -1.0, at)
    document = json.loads(json.dumps(snapshot.take(whole), allow_nan=False))  # as it travels: plain JSON
    before = len(whole_sink.records)
    drive(whole, script, at, horizon)

    sink = ListSink()
    restored = snapshot.restore(config, sink, document, sample_limit=500)
    assert snapshot.take(restored) == document
    drive(restored, script, at, horizon)
    after = whole_sink.records[before:]
    assert len(after) > 20, "too little happened after the snapshot to compare"
    assert encoded(config, sink.records, seed) == encoded(config, after, seed)
    assert snapshot.take(restored) == json.loads(json.dumps(snapshot.take(whole)))


def test_restored_in_another_process_the_run_goes_on_the_same(tmp_path: Path) -> None:
    config = config_of("reference")
    sim, sink = started(config, 11)
    cut = HORIZON_S / 3
    script = [(at, item) for at, item in commands(sim, 8) if at <= cut]  # none after the snapshot
    drive(sim, script, -1.0, cut)
    (tmp_path / "snapshot.json").write_text(json.dumps(snapshot.take(sim)))
    (tmp_path / "config.json").write_text(config.model_dump_json())
    before = len(sink.records)
    sim.settle(HORIZON_S)
    expected = encoded(config, sink.records[before:], 11)
    program = (
        "import json, sys\n"
        "from simulator.config.schema import Config\n"
        "from simulator.formats.coffeemek import CoffeeMekFormat\n"
        "from simulator.model import snapshot\n"
        "from simulator.model.records import ListSink\n"
        "config = Config.model_validate_json(open(sys.argv[1]).read())\n"
        "sink = ListSink()\n"
        "sim = snapshot.restore(config, sink, json.load(open(sys.argv[2])), sample_limit=500)\n"
        f"sim.settle({HORIZON_S!r})\n"
        "fmt = CoffeeMekFormat(config, 11, run_id='snapshot-test')\n"
        "for r in sink.records:\n"
        "    for m in fmt.encode(r):\n"
        "        line = m.topic.encode() + b' ' + (m.key or b'') + b' ' + m.value\n"
        "        sys.stdout.buffer.write(line + b'\\n')\n"
    )
    files = [str(tmp_path / "config.json"), str(tmp_path / "snapshot.json")]
    out = subprocess.run([sys.executable, "-c", program, *files], capture_output=True, check=True, cwd=ROOT).stdout
    assert len(expected) > 50
    assert out.splitlines() == expected


def test_a_document_that_does_not_fit_is_a_clear_error(default_config: Config) -> None:
    sim, _ = started(config_of("reference"), 3)
    sim.settle(86400.0)
    document = snapshot.take(sim)
    other = profile("enms")
    with pytest.raises(snapshot.SnapshotError, match="plants"):
        snapshot.restore(other, ListSink(), document)
    with pytest.raises(snapshot.SnapshotError, match="version"):
        snapshot.restore(default_config, ListSink(), {**document, "version": 99})
    broken = json.loads(json.dumps(document))
    broken["machines"][next(iter(broken["machines"]))]["rng"]["blocks"]["words"] = "not base64!"
    with pytest.raises(snapshot.SnapshotError, match="random stream"):
        snapshot.restore(config_of("reference"), ListSink(), broken)
    misplaced = json.loads(json.dumps(document))
    assert misplaced["lots"], "no lot in progress to spoil"
    misplaced["lots"][0]["stage_index"] = 99  # a lot at a stage the route does not have
    with pytest.raises(snapshot.SnapshotError, match="does not fit the plant"):
        snapshot.restore(config_of("reference"), ListSink(), misplaced)
    del broken["calendar"]
    with pytest.raises(snapshot.SnapshotError, match="malformed"):
        snapshot.restore(config_of("reference"), ListSink(), broken)


def test_a_replay_of_timed_orders_cannot_be_snapshotted(default_config: Config) -> None:
    sim = Simulation(default_config, ListSink())
    orders = [(float(k * 60), order) for k, order in enumerate(
        sim.order_generator("R").order() for _ in range(5))]
    sim.replay(orders)
    with pytest.raises(snapshot.SnapshotError, match="replay"):
        snapshot.take(sim)


def test_a_warm_start_under_a_changed_config_adds_a_machine_that_takes_waiting_lots(default_config: Config) -> None:
    data: dict[str, Any] = default_config.model_dump(mode="json")
    data["arrivals"]["rate_per_hour"] = 12.0  # more than the plant can do: queues grow
    data["arrivals"]["location_mix"] = {"Vietnam": 1.0}
    busy = Config.model_validate(data)
    sim, _ = started(busy, 5)
    sim.settle(86400.0)
    lathes = sim.plant.pool("Vietnam", "tornio")
    assert lathes.queue_length > 0, "no lot waits for a lathe: nothing to compare"
    document = json.loads(json.dumps(snapshot.take(sim)))

    data["locations"]["Vietnam"]["machines"]["tornio"] += 1
    bigger = Config.model_validate(data)
    with pytest.raises(snapshot.SnapshotError, match="warm start"):
        snapshot.restore(bigger, ListSink(), document)
    sink = ListSink()
    warm = snapshot.restore(bigger, sink, document, warm=True)
    new = warm.plant.machines["Vietnam-tornio-04"]
    assert new.state == "running" and new.current_lot is not None  # it took a waiting lot at once
    assert warm.plant.pool("Vietnam", "tornio").queue_length == lathes.queue_length - 1
    assert warm.lots.keys() == sim.lots.keys()  # every lot in progress carried over
    warm.settle(86400.0 + 2 * 3600.0)
    started_on_new = [r for r in sink.records if getattr(r, "event_type", None) == "stage.started"
                      and r.machine_id == "Vietnam-tornio-04"]
    assert len(started_on_new) >= 2

    fewer = json.loads(json.dumps(data))
    fewer["locations"]["Vietnam"]["machines"]["tornio"] -= 2
    with pytest.raises(snapshot.SnapshotError, match="not in the config: Vietnam-tornio-03"):
        snapshot.restore(Config.model_validate(fewer), ListSink(), document, warm=True)
