"""What a start finds in the journal: the run to continue, and each plant's history in it.

The run to continue is the one whose ``start`` entry was written last.  It must belong to this
config (the same model fingerprint and seed, the same plants); otherwise the start stops with a
configuration error that says what differs and how to start a new run (``--fresh``).  A plant's
history is its ``input`` entries in order (numbered 1, 2, 3 … without a gap; an entry Kafka holds
twice counts once), the newest checkpoint (how much of its output Kafka already has) and the
newest clock entry.  An entry that cannot be read stops the start when it lies in the run to
continue; in an older run it is ignored.

A start need not read the whole journal: a snapshot the service wrote marks where the journal
stood when it was taken (:class:`simulator.formats.snapshot.JournalMark`), and
:func:`run_after_snapshot` makes the history of its run from the journal read from there on — the
inputs after those the snapshot covers, numbered on from them — with what the mark says about the
part before (the run's seed and start, the clock, the orders journaled).  So a restart costs the
snapshot and the journal after it, whatever the length of the run.

Recovery itself is the runtime's: the model restored from the run's newest usable snapshot (or
a fresh one), every input after the snapshot applies again at its instant (output up to the
checkpoints is not published again; records after them are, with the same event ids), then the
plant goes live.  :func:`check_snapshot` says whether a snapshot can stand for the start of that
replay: one of another config or model version is a configuration error, one that claims inputs
the journal does not have cannot be used.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.formats.journal import Applied, Checkpoint, ClockSet, JournalError, Read, RunStart
from simulator.formats.snapshot import Snapshot, SnapshotCorrupt
from simulator.limits import calendar_end_s

FRESH_HINT = ("start a new run with `factorysim run --fresh` (the old run stays in the journal), or run the "
              "config the journal was written with")


@dataclass
class PlantHistory:
    applied: list[Applied] = field(default_factory=list)  # its inputs after the first ``base``
    output_through: int = 0  # the newest checkpoint: the plant's output records up to here are in Kafka
    output_at: float = 0.0  # the simulated time of the newest checkpoint: output up to here may be in Kafka
    clock: ClockSet | None = None
    base: int = 0  # inputs before ``applied`` (covered by the snapshot the journal was read after)

    @property
    def inputs(self) -> int:
        """The number of the plant's last input in the journal."""
        return self.base + len(self.applied)

    def input(self, seq: int) -> Applied | None:
        """Input number ``seq`` (None when it is before what was read)."""
        index = seq - self.base - 1
        return self.applied[index] if 0 <= index < len(self.applied) else None


@dataclass
class RunHistory:
    run_id: str
    seed: int
    start: dt.datetime
    plants: dict[str, PlantHistory]
    sources: dict[tuple[str, int], set[int]]  # (topic, partition) -> offsets of orders in the journal
    started_ms: int = 0  # when the run's newest start entry was written (Kafka timestamp)
    read_from: dict[int, int] | None = None  # journal partition -> offset the history was read from (None: all)

    @property
    def inputs(self) -> int:
        return sum(p.inputs for p in self.plants.values())

    def replay_order(self, after: dict[str, int] | None = None) -> list[list[Applied]]:
        """Every input of the run (``after``: only those after each plant's input number given,
        e.g. a snapshot's ``inputs_through``) in the order to apply it, in groups that apply
        together (a plant's input and the ``joined`` ones after it): by instant, then plant and
        number (the order between plants does not change any plant's output)."""
        groups: list[list[Applied]] = []
        for name, plant in self.plants.items():
            skip = max(0, (after or {}).get(name, 0) - plant.base)
            for entry in plant.applied[skip:]:
                if entry.joined and groups and groups[-1][-1].plant == entry.plant:
                    groups[-1].append(entry)
                else:
                    groups.append([entry])
        return sorted(groups, key=lambda g: (g[0].at, g[0].plant, g[0].seq))

    def published_until(self) -> float:
        """The simulated instant up to which the run's output may already be in Kafka, as far as the
        journal tells (its newest checkpoint): no new input may apply before it, or records already
        published would be made again with other contents under the same event ids."""
        return max((p.output_at for p in self.plants.values()), default=0.0)

    def clock(self) -> ClockSet | None:
        """The newest clock entry of the run (the one written last, at the newest instant)."""
        clocks = [p.clock for p in self.plants.values() if p.clock is not None]
        return max(clocks, key=lambda c: (c.wall, c.at)) if clocks else None


def run_to_continue(reads: list[Read], config: Config, topic: str) -> RunHistory | None:
    """The newest run in ``reads`` (the whole journal) with each plant's history; None for an
    empty journal.  Raises ConfigError when it does not belong to ``config`` or cannot be read."""
    starts = [r for r in reads if isinstance(r.entry, RunStart)]
    if not starts:
        _fail_if_unreadable(reads, topic)
        return None
    newest = max(starts, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    assert isinstance(newest.entry, RunStart)
    run_id, head = newest.entry.run_id, newest.entry
    begun: dict[int, int] = {}  # partition -> offset of the run's first start entry there
    run_starts: dict[str, RunStart] = {}
    for r in starts:
        if isinstance(r.entry, RunStart) and r.entry.run_id == run_id:
            run_starts[r.entry.plant] = r.entry
            begun[r.partition] = min(begun.get(r.partition, r.offset), r.offset)
    for r in reads:
        if isinstance(r.entry, JournalError) and r.partition in begun and r.offset > begun[r.partition]:
            _unreadable(r, run_id, topic)
    _check(run_id, head.seed, head.fingerprint, sorted(run_starts), config)
    history = RunHistory(run_id, head.seed, head.start, {plant: PlantHistory() for plant in sorted(run_starts)},
                         defaultdict(set), newest.timestamp_ms)
    _collect(history, reads, topic)
    return history


def run_after_snapshot(reads: list[Read], snapshot: Snapshot, config: Config, topic: str) -> RunHistory | None:
    """The history of the snapshot's run from ``reads``, the journal read from the offsets its
    mark names: the inputs after the ones it covers, checkpoints, the clock, the orders journaled
    (those the mark lists too).  None when the journal does not continue the snapshot's run there
    (a newer run has started since, or the snapshot has no mark): the whole journal must be read.
    Raises ConfigError as :func:`run_to_continue` does."""
    mark = snapshot.journal
    if mark is None or any(isinstance(r.entry, RunStart) and r.entry.run_id != snapshot.run_id for r in reads):
        return None
    run_id = snapshot.run_id
    for r in reads:
        if isinstance(r.entry, JournalError):
            _unreadable(r, run_id, topic)
    _check(run_id, mark.seed, None, sorted(snapshot.inputs_through), config)  # its fingerprint: check_snapshot
    plants = {plant: PlantHistory(base=seq, output_through=snapshot.output_through.get(plant, 0),
                                  output_at=snapshot.sim_time_s)
              for plant, seq in sorted(snapshot.inputs_through.items())}
    if mark.clock is not None:
        clock = mark.clock
        for name, plant in plants.items():
            plant.clock = ClockSet(name, run_id, clock.at, clock.wall, clock.speed, clock.paused, clock.commanded)
    history = RunHistory(run_id, mark.seed, mark.start, plants, defaultdict(set), read_from=dict(mark.offsets))
    for where, offsets in mark.sources.items():
        source_topic, _, partition = where.rpartition("/")
        if source_topic and partition.isdigit():
            history.sources[(source_topic, int(partition))].update(offsets)
    _collect(history, reads, topic)
    return history


def _collect(history: RunHistory, reads: list[Read], topic: str) -> None:
    """Each plant's inputs (numbered on from its ``base`` without a gap; an entry Kafka holds
    twice, e.g. sent again after a lost acknowledgement, counts once; entries that came out of
    order are put back in order), checkpoints, clock, and the orders journaled."""
    run_id = history.run_id
    calendar_end = calendar_end_s(history.start)
    found: dict[str, dict[int, tuple[Applied, Read]]] = {name: {} for name in history.plants}
    for r in reads:
        entry = r.entry
        if isinstance(entry, JournalError) or entry.run_id != run_id or entry.plant not in history.plants:
            continue
        plant = history.plants[entry.plant]
        if isinstance(entry, Applied):
            if entry.source is not None:
                source_topic, partition, offset = order_source(entry.source)
                if source_topic is not None:
                    history.sources[(source_topic, partition)].add(offset)
            if entry.seq <= plant.base:
                continue  # the snapshot covers it
            seen = found[entry.plant].setdefault(entry.seq, (entry, r))
            if seen[0] != entry:
                raise ConfigError([f"kafka.topics.journal: plant {entry.plant} of run {run_id} has two different "
                                   f"inputs numbered {entry.seq} ({topic}[{seen[1].partition}]@{seen[1].offset} and "
                                   f"{topic}[{r.partition}]@{r.offset}); {FRESH_HINT}"])
        elif isinstance(entry, Checkpoint):
            plant.output_through = max(plant.output_through, entry.output_seq)
            plant.output_at = max(plant.output_at, entry.at)
        elif isinstance(entry, ClockSet):
            plant.clock = entry
    for name, plant in history.plants.items():
        numbered = found[name]
        previous_at = 0.0
        for seq in range(plant.base + 1, plant.base + len(numbered) + 1):
            if seq not in numbered:
                last = max(numbered)
                raise ConfigError([f"kafka.topics.journal: plant {name} of run {run_id} has input {last} but not "
                                   f"input {seq} ({topic}[{numbered[last][1].partition}]@{numbered[last][1].offset})"
                                   f": the journal is incomplete; {FRESH_HINT}"])
            entry, r = numbered[seq]
            if not previous_at <= entry.at <= calendar_end:
                raise ConfigError([f"kafka.topics.journal: input {entry.seq} of plant {name} in run {run_id} "
                                   f"applies at {entry.at!r} s, before the input ahead of it ({previous_at!r} s) or "
                                   f"after the end of the calendar ({topic}[{r.partition}]@{r.offset}); {FRESH_HINT}"])
            previous_at = entry.at
            plant.applied.append(entry)


def _unreadable(r: Read, run_id: str, topic: str) -> None:
    raise ConfigError([f"kafka.topics.journal: the entry at {topic}[{r.partition}]@{r.offset} of run "
                       f"{run_id} cannot be read ({r.entry}); {FRESH_HINT}"])


def check_snapshot(snapshot: Snapshot, history: RunHistory, config: Config, model_version: int, topic: str) -> None:
    """Raises ConfigError when ``snapshot`` (of the run ``history``) was written under another
    config or model version (what differs, and how to start fresh), SnapshotCorrupt when it cannot
    stand for the start of the replay (other plants, inputs the journal does not have)."""
    where = f"kafka.topics.snapshots: snapshot {snapshot.snapshot_id} of run {snapshot.run_id} on {topic}"
    problems = []
    if snapshot.fingerprint != config.model_fingerprint:
        problems.append(f"{where} was written with another plant config (fingerprint {snapshot.fingerprint[:12]}…, "
                        f"this config {config.model_fingerprint[:12]}…)")
    if snapshot.model_version != model_version:
        problems.append(f"{where} holds a model state of version {snapshot.model_version}; this factorysim reads "
                        f"version {model_version}")
    if problems:
        raise ConfigError([f"{p}; {FRESH_HINT}" for p in problems])
    if snapshot.run_id != history.run_id:
        raise SnapshotCorrupt(f"it is of run {snapshot.run_id}, not {history.run_id}")
    if sorted(snapshot.inputs_through) != sorted(history.plants):
        raise SnapshotCorrupt(f"it has the plants {', '.join(sorted(snapshot.inputs_through))}; the run has "
                              f"{', '.join(sorted(history.plants))}")
    ahead = [f"{plant} {seq} > {history.plants[plant].inputs}" for plant, seq in
             sorted(snapshot.inputs_through.items()) if seq > history.plants[plant].inputs]
    if ahead:
        raise SnapshotCorrupt(f"it covers inputs the journal does not have ({', '.join(ahead)})")
    for plant, seq in snapshot.inputs_through.items():
        covered, next_one = history.plants[plant].input(seq), history.plants[plant].input(seq + 1)
        if covered is not None and covered.at > snapshot.sim_time_s:
            raise SnapshotCorrupt(f"its simulated time {snapshot.sim_time_s!r} s is before input {seq} of plant "
                                  f"{plant} ({covered.at!r} s) that it covers")
        if next_one is not None and next_one.at < snapshot.sim_time_s:
            raise SnapshotCorrupt(f"input {seq + 1} of plant {plant}, which it does not cover, applies at "
                                  f"{next_one.at!r} s, before its simulated time {snapshot.sim_time_s!r} s")


def _check(run_id: str, seed: int, fingerprint: str | None, plants: list[str], config: Config) -> None:
    problems = []
    configured = sorted(config.locations)
    if plants != configured:
        problems.append(f"the journal's run {run_id} has the plants {', '.join(plants)}; this config has "
                        f"{', '.join(configured)}")
    if fingerprint is not None and fingerprint != config.model_fingerprint:
        problems.append(f"the journal's run {run_id} was written with another plant config (fingerprint "
                        f"{fingerprint[:12]}…, this config {config.model_fingerprint[:12]}…)")
    if seed != config.simulation.seed:
        problems.append(f"the journal's run {run_id} has seed {seed}; this config has {config.simulation.seed}")
    if problems:
        raise ConfigError([f"kafka.topics.journal: {p}; {FRESH_HINT}" for p in problems])


def _fail_if_unreadable(reads: list[Read], topic: str) -> None:
    """A journal with messages but no run factorysim can read is not one to write to."""
    bad = [r for r in reads if isinstance(r.entry, JournalError)]
    if bad:
        first = bad[0]
        raise ConfigError([f"kafka.topics.journal: {topic} holds no run factorysim can read (e.g. "
                           f"{topic}[{first.partition}]@{first.offset}: {first.entry}); use another journal topic"])


def order_source(text: str) -> tuple[str | None, int, int]:
    """An order's journaled source "topic/partition/offset" (topic None when it is not one)."""
    topic, _, rest = text.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    try:
        return topic, int(partition), int(rest)
    except ValueError:
        return None, 0, 0
