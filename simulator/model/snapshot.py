"""Snapshots: a simulation's complete state as a document, and a fresh simulation restored from one.

:func:`take` writes everything the model's future depends on — simulated time, the event calendar
(every entry with its instant, number, handler name and arguments), every machine (state, time
accounting, counters, maintenance and failure state, its stoppage, its random streams), the pools
(idle machines, queues in order), every lot in progress (stage, work to do and done, the block it
will meet, its random stream), the statistics (with their series and warm-up), generated arrivals,
and each plant's record number — as plain JSON-able data.  :func:`restore` builds a simulation from
the config and puts that state back, so it continues **byte-identically** to a run that was never
interrupted.

The document is versioned (:data:`SNAPSHOT_VERSION`); a document of another version, or one that
does not fit the config (other plants, machines or route), is a :class:`SnapshotError` saying what
differs.  Machine timelines (offline Gantt charts) are not part of it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import random
import struct
from collections import deque
from typing import Any

from simulator.config.plant import PlantSettings
from simulator.model import disruptions, production, sampling, shifts, simulation, utilities  # noqa: F401 - handlers
from simulator.model.events import HANDLER_NAMES, HANDLERS, Entry
from simulator.model.lot import Lot, LotState
from simulator.model.machine import Machine, MachineState
from simulator.model.order import Order
from simulator.model.production import Stoppage
from simulator.model.records import Sink
from simulator.model.shifts import machines_allowed
from simulator.model.simulation import Arrivals, Simulation
from simulator.model.statistics import Counts, MachineBaseline, SampleSet, Statistics
from simulator.model.time_series import Grid, StepSeries
from simulator.model.utilities import start_utility

SNAPSHOT_VERSION = 1
_WORDS = struct.Struct("<625I")


class SnapshotError(ValueError):
    """A snapshot that cannot be taken now, or a document that cannot be restored under this config."""


# -- numbers and random streams --------------------------------------------------------------------------
def _num(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _float(value: Any) -> float:
    if value in ("inf", "-inf"):
        return math.inf if value == "inf" else -math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SnapshotError(f"expected a number, got {value!r}")
    return float(value)


def _opt(value: float | None) -> float | str | None:
    return None if value is None else _num(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else _float(value)


def _rng(rng: random.Random) -> dict[str, Any]:
    version, words, gauss = rng.getstate()
    return {"v": version, "words": base64.b64encode(_WORDS.pack(*words)).decode("ascii"), "gauss": gauss}


def _set_rng(rng: random.Random, data: dict[str, Any]) -> random.Random:
    try:
        words = _WORDS.unpack(base64.b64decode(data["words"], validate=True))
        rng.setstate((data["v"], words, data["gauss"]))
    except (KeyError, TypeError, ValueError, struct.error) as exc:
        raise SnapshotError(f"a random stream's state cannot be read ({exc})") from None
    return rng


# -- taking ----------------------------------------------------------------------------------------------
def take(sim: Simulation) -> dict[str, Any]:
    """The document of ``sim``'s complete state now (between two steps)."""
    if sim.replaying:
        raise SnapshotError("a replay of timed orders is under way: its orders are not part of the model's state")
    return {
        "version": SNAPSHOT_VERSION,
        "seed": sim.seed,
        "start": sim.start.isoformat(),
        "now": sim.env.now,
        "plants": sorted(sim.config.locations),
        "route": [s.name for s in sim.plant.stages],
        "record_seqs": dict(sorted(sim.recorder.seqs.items())),
        "calendar": {"seq": sim.env.seq, "entries": [_entry(e) for e in sim.env.pending()]},
        "machines": {mid: _machine(m) for mid, m in sim.plant.machines.items()},
        "pools": [_pool(p) for p in sim.plant.pools.values()],
        "lots": [_lot(lot) for lot in sim.lots.values()],
        "statistics": _statistics(sim.stats),
        "shift_factor": dict(sorted(sim.shift_factor.items())),
        "arrivals": _arrivals(sim.arrivals),
    }


def _entry(entry: Entry) -> list[Any]:
    time, seq, fn, args = entry
    name = HANDLER_NAMES.get(fn)
    if name is None:
        raise SnapshotError(f"the calendar holds a step that is not part of the model ({fn!r}) at {time:g} s")
    return [time, seq, name, [_arg(a) for a in args]]


def _arg(value: Any) -> list[Any]:
    if isinstance(value, Simulation):
        return ["sim"]
    if isinstance(value, Lot):
        return ["lot", value.code]
    if isinstance(value, Machine):
        return ["machine", value.id]
    if isinstance(value, str):
        return ["text", value]
    raise SnapshotError(f"a calendar entry has an argument a snapshot cannot hold: {value!r}")


def _seq(entry: Entry | None) -> int | None:
    return None if entry is None or entry[2] is None else int(entry[1])


def _machine(m: Machine) -> dict[str, Any]:
    s = m.stoppage
    return {
        "state": m.state, "since": m.since, "state_time": m.state_time, "state_lot": m.state_lot,
        "current_lot": m.current_lot.code if m.current_lot is not None else None,
        "block_reason": m.block_reason, "in_work": m.in_work, "load": m.load,
        "cycles": m.cycles, "good_cycles": m.good_cycles, "good_pieces": m.good_pieces, "bad_pieces": m.bad_pieces,
        "ideal_time_s": m.ideal_time_s,
        "anomaly": m.anomaly, "anomaly_severity": m.anomaly_severity, "anomaly_until": _num(m.anomaly_until),
        "cycles_since_maintenance": m.cycles_since_maintenance,
        "pieces_since_maintenance": m.pieces_since_maintenance,
        "last_maintenance": m.last_maintenance, "maintenance_due": m.maintenance_due,
        "maintenance_started": m.maintenance_started, "maintenance_log": [list(x) for x in m.maintenance_log],
        "clock_waiting": m.clock_waiting, "sample_interval": m.sample_interval,
        "utility": {"factor": m.utility_factor, "change": _num(m.utility_change), "ends": m.utility_ends,
                    "entry": _seq(m.utility_entry)},
        "stoppage": None if s is None else {
            "cause": s.cause, "reason": s.reason, "since": s.since, "until": _num(s.until),
            "duration": _num(s.duration), "working": s.working, "stage": s.stage, "entry": _seq(s.entry)},
        "rng": {"blocks": _rng(m.rng_blocks), "failures": _rng(m.rng_failures), "signals": _rng(m.rng_signals),
                "anomalies": _rng(m.rng_anomalies)},
    }


def _pool(p: Any) -> dict[str, Any]:
    return {
        "location": p.location, "machine_type": p.machine_type,
        "idle": [m.id for m in p.idle], "off_shift": [m.id for m in p.off_shift],
        "waiting": [[rank, order, lot.code] for rank, order, lot in p.waiting],
        "next_order": p.next_order, "limit": p.limit, "working": p.working,
    }


def _lot(lot: Lot) -> dict[str, Any]:
    return {
        "code": lot.code, "customer": lot.customer, "quantity": lot.quantity, "location": lot.location,
        "priority": lot.priority, "rank": lot.rank, "arrived_at": lot.arrived_at,
        "state": str(lot.state), "stage": lot.stage, "reworks": lot.reworks, "stage_index": lot.stage_index,
        "queued_at": lot.queued_at, "started": lot.started,
        "machine": lot.machine.id if lot.machine is not None else None,
        "work": lot.work, "work_done": lot.work_done, "block_at": lot.block_at, "blocked_s": lot.blocked_s,
        "block_reason": lot.block_reason, "segment_start": lot.segment_start, "halted_at": lot.halted_at,
        "entry": _seq(lot.entry),
        "rng": _rng(lot._rng) if lot._rng is not None else None,
    }


def _samples(s: SampleSet) -> dict[str, Any]:
    return {"count": s.count, "total": s.total, "max": s.max, "values": s.values}


def _statistics(st: Statistics) -> dict[str, Any]:
    base = st.base
    return {
        "received": st.received, "completed": st.completed, "scrapped": st.scrapped, "reworks": st.reworks,
        "by_location": st.by_location,
        "lead_time": _samples(st.lead_time),
        "lead_time_by_location": {k: _samples(v) for k, v in st.lead_time_by_location.items()},
        "lead_time_by_priority": {k: _samples(v) for k, v in st.lead_time_by_priority.items()},
        "stages": {name: {"wait": _samples(s.wait), "process": _samples(s.process),
                          "by_location": {loc: [_samples(w), _samples(p)] for loc, (w, p) in s.by_location.items()}}
                   for name, s in st.stages.items()},
        "series": {"width": st.grid.width, "columns": st.grid.layout, "rows": st.grid.rows},
        "wip_series": _step_series(st.wip),
        "pools": [[loc, mtype, {**_step_series(q), "entered": q.entered, "origin_entered": q.origin_entered,
                                "wait_sum": q.wait_sum}] for (loc, mtype), q in st.pools.items()],
        "warm_up": {"warm_up_s": st.warm_up_s, "observed_from": st.observed_from,
                    "base": {"received": base.received, "completed": base.completed, "scrapped": base.scrapped,
                             "reworks": base.reworks, "by_location": base.by_location},
                    "machines": {mid: {"at": b.at, "times": b.times, "cycles": b.cycles, "good_cycles": b.good_cycles,
                                       "good_pieces": b.good_pieces, "bad_pieces": b.bad_pieces, "ideal_s": b.ideal_s,
                                       "maintenances": b.maintenances}
                                 for mid, b in st.machine_baseline.items()}},
        "last_event_time": st.last_event_time,
        "rng": _rng(st.lead_time.rng) if st.lead_time.rng is not None else None,
    }


def _step_series(s: StepSeries) -> dict[str, Any]:
    return {"level": s.level, "since": s.since, "cum": s.cum, "origin": s.origin, "origin_cum": s.origin_cum,
            "max": s.max}


def _arrivals(a: Arrivals | None) -> dict[str, Any] | None:
    if a is None:
        return None
    o = a.pending
    doc = {"count": a.generator.count, "prefix": a.generator.code_prefix, "left": a.left,
           "pending": {"lot_code": o.lot_code, "customer": o.customer, "quantity": o.quantity,
                       "location": o.location, "priority": o.priority},
           "rng": _rng(a.generator.rng)}
    if a.until != math.inf:  # (a warm-up's own orders)
        doc["until"] = a.until
    return doc


# -- restoring -------------------------------------------------------------------------------------------
def restore(config: PlantSettings, sink: Sink, document: dict[str, Any], *, sample_limit: int | None = None,
            timeline: tuple[float, float] | None = None, warm: bool = False) -> Simulation:
    """A simulation of ``config`` in the state ``document`` describes (its seed and start are the
    document's); it continues exactly as the simulation the document was taken from.

    ``warm``: a warm start of a study under a changed config ("one more lathe in Vietnam"): the
    config may add machines (they start idle at the snapshot's instant, with their own clocks, and
    take waiting lots at once) and change durations, rates and disruptions (they apply from now on);
    plants, route and the machines in the snapshot must stay.  The continuation is then the changed
    plant's, not a copy of the original run's."""
    try:
        return _restore(config, sink, document, sample_limit, timeline, warm)
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise SnapshotError(f"the snapshot document is malformed ({type(exc).__name__}: {exc})") from None


def _restore(config: PlantSettings, sink: Sink, doc: dict[str, Any], sample_limit: int | None,
             timeline: tuple[float, float] | None, warm: bool) -> Simulation:
    if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
        found = doc.get("version") if isinstance(doc, dict) else type(doc).__name__
        raise SnapshotError(f"snapshot version {found!r} is not the version this factorysim reads "
                            f"({SNAPSHOT_VERSION})")
    start = dt.datetime.fromisoformat(doc["start"])
    config = config.model_copy(update={"simulation": config.simulation.model_copy(
        update={"start": start, "seed": int(doc["seed"])})})
    added = _check_fits(config, doc, warm)
    sim = Simulation(config, sink, sample_limit=sample_limit, timeline=timeline, _restoring=True)
    sim.env.now = _float(doc["now"])
    sim.recorder.seqs.update({k: int(v) for k, v in doc["record_seqs"].items()})
    sim.shift_factor.update({k: _float(v) for k, v in doc["shift_factor"].items()})
    machines = sim.plant.machines
    lots = {d["code"]: _new_lot(sim, d) for d in doc["lots"]}
    sim.lots = lots
    entries, by_seq = _calendar(sim, doc["calendar"]["entries"], machines, lots)
    for mid, data in doc["machines"].items():
        _set_machine(machines[mid], data, lots, by_seq)
    for data in doc["lots"]:
        lot = lots[data["code"]]
        lot.machine = machines[data["machine"]] if data["machine"] is not None else None
        lot.entry = _entry_of(by_seq, data["entry"])
    for data in doc["pools"]:
        _set_pool(sim.plant.pool(data["location"], data["machine_type"]), data, machines, lots)
    _set_statistics(sim, doc["statistics"])
    sim.arrivals = _new_arrivals(sim, doc["arrivals"])
    sim.env.load(entries, int(doc["calendar"]["seq"]))
    for mid in added:
        _add_machine(sim, machines[mid])
    if warm:
        _start_anomaly_clocks(sim, entries, added)
    return sim


def _start_anomaly_clocks(sim: Simulation, entries: list[Entry], added: list[str]) -> None:
    """Random anomalies the warm start's config turns on for machines of the snapshot start now."""
    ticking = {e[3][1].id for e in entries if e[2] is disruptions.anomaly_due}
    for mid, machine in sim.plant.machines.items():
        if mid not in ticking and mid not in added \
                and sim.plant.machine_disruptions[machine.machine_type].anomalies is not None:
            disruptions.schedule_anomaly(sim, machine)


def _add_machine(sim: Simulation, machine: Machine) -> None:
    """A machine the warm start's config adds: idle from now on, its clocks started, its pool's
    waiting lots served."""
    machine.join_at(sim.env.now)  # (in no pool list of the snapshot: out of its pool until added here)
    pool = sim.plant.pool(machine.location, machine.machine_type)
    if machine.machine_type in sim.continuous_types:
        pool.idle.append(machine)  # (start_utility takes it from there)
        start_utility(sim, machine)
    else:
        pool.working += 1
        factor = sim.shift_factor.get(machine.location, 1.0) if machine.location in sim.calendar_clocks else 1.0
        pool.limit = machines_allowed(factor, len(pool.machines))
        pool.release(machine)
    sim.start_machine(machine)


def _check_fits(config: PlantSettings, doc: dict[str, Any], warm: bool) -> list[str]:
    """The machines the config adds to the snapshot's (only with ``warm``), in config order."""
    plants = sorted(config.locations)
    if doc["plants"] != plants:
        raise SnapshotError(f"the snapshot has the plants {', '.join(doc['plants'])}; the config has "
                            f"{', '.join(plants)}")
    route = [s.name for s in config.route]
    if doc["route"] != route:
        raise SnapshotError(f"the snapshot's route is {' > '.join(doc['route'])}; the config's is {' > '.join(route)}")
    ids = [slot.id for slot in config.machine_slots]
    expected = set(ids)
    found = set(doc["machines"])
    missing, extra = sorted(expected - found), sorted(found - expected)
    if extra or (missing and not warm):
        hint = "" if extra else " (a warm start of a study may add machines)"
        raise SnapshotError("the snapshot's machines differ from the config's: "
                            + "; ".join(part for part in (
                                f"not in the snapshot: {', '.join(missing[:5])}" if missing else "",
                                f"not in the config: {', '.join(extra[:5])}" if extra else "") if part) + hint)
    return [mid for mid in ids if mid in missing]


def _calendar(sim: Simulation, raw: list[Any], machines: dict[str, Machine],
              lots: dict[str, Lot]) -> tuple[list[Entry], dict[int, Entry]]:
    entries: list[Entry] = []
    for time, seq, name, args in raw:
        fn = HANDLERS.get(name)
        if fn is None:
            raise SnapshotError(f"the snapshot's calendar has a step this factorysim does not know: {name!r}")
        entries.append([_float(time), int(seq), fn, tuple(_arg_value(sim, a, machines, lots) for a in args)])
    return entries, {e[1]: e for e in entries}


def _arg_value(sim: Simulation, arg: list[Any], machines: dict[str, Machine], lots: dict[str, Lot]) -> Any:
    kind = arg[0]
    if kind == "sim":
        return sim
    if kind == "lot":
        return lots[arg[1]]
    if kind == "machine":
        return machines[arg[1]]
    if kind == "text":
        return str(arg[1])
    raise SnapshotError(f"a calendar entry has an argument of unknown kind {kind!r}")


def _entry_of(by_seq: dict[int, Entry], seq: Any) -> Entry | None:
    if seq is None:
        return None
    entry = by_seq.get(int(seq))
    if entry is None:
        raise SnapshotError(f"the snapshot refers to calendar entry {seq} it does not hold")
    return entry


def _new_lot(sim: Simulation, d: dict[str, Any]) -> Lot:
    lot = Lot(d["code"], d["customer"], int(d["quantity"]), d["location"], d["priority"], _float(d["arrived_at"]),
              None, run_seed=sim.seed)
    lot.rank = int(d["rank"])
    lot.state = LotState(d["state"])
    lot.stage = d["stage"]
    lot.reworks = int(d["reworks"])
    lot.stage_index = int(d["stage_index"])
    if lot.location not in sim.config.locations or not 0 <= lot.stage_index < len(sim.plant.stages) \
            or lot.quantity < 1 or not isinstance(lot.code, str):
        raise SnapshotError(f"lot {str(d['code'])[:40]!r} does not fit the plant (location {lot.location!r}, stage "
                            f"{lot.stage_index}, quantity {lot.quantity})")
    for key in ("queued_at", "started", "work", "work_done", "blocked_s", "segment_start", "halted_at"):
        setattr(lot, key, _float(d[key]))
    lot.block_at = _opt_float(d["block_at"])
    lot.block_reason = d["block_reason"]
    if d["rng"] is not None:
        lot._rng = _set_rng(random.Random(0), d["rng"])  # seeded, not from OS entropy; the state is set next
    return lot


def _set_machine(m: Machine, d: dict[str, Any], lots: dict[str, Lot], by_seq: dict[int, Entry]) -> None:
    try:
        state = MachineState(d["state"])
    except (TypeError, ValueError):
        raise SnapshotError(f"machine {m.id}: unknown state {d['state']!r}") from None
    u = d["utility"]
    s = d["stoppage"]
    m.restore(
        state=state, since=_float(d["since"]),
        state_time={k.value: _float(d["state_time"][k.value]) for k in MachineState},
        state_lot=d["state_lot"], current_lot=lots[d["current_lot"]] if d["current_lot"] is not None else None,
        block_reason=d["block_reason"], in_work=bool(d["in_work"]), load=_opt_float(d["load"]),
        cycles=int(d["cycles"]), good_cycles=int(d["good_cycles"]), good_pieces=int(d["good_pieces"]),
        bad_pieces=int(d["bad_pieces"]), ideal_time_s=_float(d["ideal_time_s"]),
        anomaly=d["anomaly"], anomaly_severity=_float(d["anomaly_severity"]), anomaly_until=_float(d["anomaly_until"]),
        cycles_since_maintenance=int(d["cycles_since_maintenance"]),
        pieces_since_maintenance=int(d["pieces_since_maintenance"]),
        last_maintenance=_float(d["last_maintenance"]), maintenance_due=bool(d["maintenance_due"]),
        maintenance_started=_float(d["maintenance_started"]),
        maintenance_log=[(_float(a), _float(b)) for a, b in d["maintenance_log"]],
        clock_waiting=bool(d["clock_waiting"]), sample_interval=_float(d["sample_interval"]),
        utility_factor=_float(u["factor"]), utility_change=_float(u["change"]), utility_ends=_float(u["ends"]),
        utility_entry=_entry_of(by_seq, u["entry"]),
        stoppage=None if s is None else Stoppage(
            s["cause"], s["reason"], _float(s["since"]), _float(s["until"]), _float(s["duration"]),
            bool(s["working"]), s["stage"], _entry_of(by_seq, s["entry"])),
    )
    _set_rng(m.rng_blocks, d["rng"]["blocks"])
    _set_rng(m.rng_failures, d["rng"]["failures"])
    _set_rng(m.rng_signals, d["rng"]["signals"])
    if "anomalies" in d["rng"]:  # (a document of a version without random anomalies never drew from it)
        _set_rng(m.rng_anomalies, d["rng"]["anomalies"])


def _set_pool(pool: Any, d: dict[str, Any], machines: dict[str, Machine], lots: dict[str, Lot]) -> None:
    pool.idle = deque(machines[mid] for mid in d["idle"])
    pool.off_shift = [machines[mid] for mid in d["off_shift"]]
    pool.waiting = [(int(rank), int(order), lots[code]) for rank, order, code in d["waiting"]]  # (a heap as saved)
    pool.next_order = int(d["next_order"])
    pool.limit = int(d["limit"])
    pool.working = int(d["working"])


def _set_samples(s: SampleSet, d: dict[str, Any]) -> None:
    s.count = int(d["count"])
    s.total = _float(d["total"])
    s.max = _float(d["max"])
    s.values = [_float(v) for v in d["values"]]


def _set_statistics(sim: Simulation, d: dict[str, Any]) -> None:
    st = sim.stats
    st.received, st.completed, st.scrapped, st.reworks = (int(d[k]) for k in ("received", "completed", "scrapped",
                                                                              "reworks"))
    st.by_location = {loc: {k: int(v) for k, v in counts.items()} for loc, counts in d["by_location"].items()}
    _set_samples(st.lead_time, d["lead_time"])
    for key, data in d["lead_time_by_location"].items():
        _set_samples(st.lead_time_by_location[key], data)
    for key, data in d["lead_time_by_priority"].items():
        _set_samples(st.lead_time_by_priority[key], data)
    for name, data in d["stages"].items():
        stage = st.stages[name]
        _set_samples(stage.wait, data["wait"])
        _set_samples(stage.process, data["process"])
        for loc, (wait, process) in data["by_location"].items():
            _set_samples(stage.by_location[loc][0], wait)
            _set_samples(stage.by_location[loc][1], process)
    if "wip_series" in d:
        _set_grid(st.grid, d["series"])
        _set_step_series(st.wip, d["wip_series"])
        for loc, mtype, pool in d["pools"]:
            queue = st.pools[(loc, mtype)]
            _set_step_series(queue, pool)
            queue.entered, queue.origin_entered = int(pool["entered"]), int(pool["origin_entered"])
            queue.wait_sum = _float(pool["wait_sum"])
        _set_warm_up(st, d["warm_up"])
    else:
        _set_old_statistics(sim, d)
    st.last_event_time = _float(d["last_event_time"])
    if d["rng"] is not None and st.lead_time.rng is not None:
        _set_rng(st.lead_time.rng, d["rng"])


def _set_grid(grid: Grid, d: dict[str, Any]) -> None:
    """The totals at the edges passed, by column name (a series a warm start adds had none: zeros)."""
    where = {name: i for i, name in enumerate(d["columns"])}
    picks = [where.get(name) for name in grid.layout]
    rows = []
    for raw in d["rows"]:
        if len(raw) != len(where):
            raise SnapshotError("a row of the statistics' series does not have its columns")
        rows.append([0.0 if i is None else _float(raw[i]) for i in picks])
    grid.restore(_float(d["width"]), rows)


def _set_old_statistics(sim: Simulation, d: dict[str, Any]) -> None:
    """A document of before the exact running statistics: the work in progress as its (possibly thinned)
    points say, as reports then computed it; the pools' queues count from the document's instant."""
    st, now = sim.stats, sim.env.now
    for t, n in d["wip"]:
        st.wip.set(_float(t), int(n))
    st.wip.set(now, st.in_progress)
    for key, queue in st.pools.items():
        queue.set(now, sim.plant.pools[key].queue_length)
        queue.entered = sim.plant.pools[key].queue_length  # (none started as far as the series know)
        queue.restart(now)


def _set_warm_up(st: Statistics, d: dict[str, Any]) -> None:
    st.warm_up_s = _float(d["warm_up_s"])
    st.observed_from = _float(d["observed_from"])
    b = d["base"]
    st.base = Counts(int(b["received"]), int(b["completed"]), int(b["scrapped"]), int(b["reworks"]),
                     {loc: {k: int(v) for k, v in counts.items()} for loc, counts in b["by_location"].items()})
    st.machine_baseline = {
        mid: MachineBaseline(_float(m["at"]), {k: _float(v) for k, v in m["times"].items()}, int(m["cycles"]),
                             int(m["good_cycles"]), int(m["good_pieces"]), int(m["bad_pieces"]), _float(m["ideal_s"]),
                             int(m["maintenances"]))
        for mid, m in d["machines"].items()}


def _set_step_series(s: StepSeries, d: dict[str, Any]) -> None:
    for key in ("level", "since", "cum", "origin", "origin_cum", "max"):
        setattr(s, key, _float(d[key]))


def _new_arrivals(sim: Simulation, d: dict[str, Any] | None) -> Arrivals | None:
    if d is None:
        return None
    generator = sim.order_generator(d["prefix"])
    generator.count = int(d["count"])
    _set_rng(generator.rng, d["rng"])
    p = d["pending"]
    pending = Order(lot_code=p["lot_code"], customer=p["customer"], quantity=int(p["quantity"]),
                    location=p["location"], priority=p["priority"])
    return Arrivals(generator, None if d["left"] is None else int(d["left"]), pending,
                    float(d.get("until", math.inf)))
