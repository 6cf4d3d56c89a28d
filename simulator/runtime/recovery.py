"""What a start finds in the journal: the run to continue, and each plant's history in it.

The run to continue is the one whose ``start`` entry was written last.  It must belong to this
config (the same model fingerprint and seed, the same plants); otherwise the start stops with a
configuration error that says what differs and how to start a new run (``--fresh``).  A plant's
history is its ``input`` entries in order (numbered 1, 2, 3 … without a gap), the newest
checkpoint (how much of its output Kafka already has) and the newest clock entry.  An entry that
cannot be read stops the start when it lies in the run to continue; in an older run it is ignored.

Recovery itself is the runtime's: every input applies again at its instant (output up to the
checkpoints is not published again; records after them are, with the same event ids), then the
plant goes live.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from simulator.config_schema import Config
from simulator.errors import ConfigError
from simulator.formats.journal import Applied, Checkpoint, ClockSet, JournalError, Read, RunStart
from simulator.limits import calendar_end_s

FRESH_HINT = ("start a new run with `factorysim run --fresh` (the old run stays in the journal), or run the "
              "config the journal was written with")


@dataclass
class PlantHistory:
    applied: list[Applied] = field(default_factory=list)
    output_through: int = 0  # the newest checkpoint: the plant's output records up to here are in Kafka
    clock: ClockSet | None = None


@dataclass
class RunHistory:
    run_id: str
    seed: int
    start: dt.datetime
    plants: dict[str, PlantHistory]
    sources: dict[tuple[str, int], set[int]]  # (topic, partition) -> offsets of orders in the journal

    @property
    def inputs(self) -> int:
        return sum(len(p.applied) for p in self.plants.values())

    def replay_order(self) -> list[list[Applied]]:
        """Every input of the run in the order to apply it, in groups that apply together (a
        plant's input and the ``joined`` ones after it): by instant, then plant and number (the
        order between plants does not change any plant's output)."""
        groups: list[list[Applied]] = []
        for plant in self.plants.values():
            for entry in plant.applied:
                if entry.joined and groups and groups[-1][-1].plant == entry.plant:
                    groups[-1].append(entry)
                else:
                    groups.append([entry])
        return sorted(groups, key=lambda g: (g[0].at, g[0].plant, g[0].seq))

    def clock(self) -> ClockSet | None:
        """The newest clock entry of the run (the one written last, at the newest instant)."""
        clocks = [p.clock for p in self.plants.values() if p.clock is not None]
        return max(clocks, key=lambda c: (c.wall, c.at)) if clocks else None


def run_to_continue(reads: list[Read], config: Config, topic: str) -> RunHistory | None:
    """The newest run in ``reads`` with each plant's history; None for an empty journal.  Raises
    ConfigError when it does not belong to ``config`` or cannot be read."""
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
            raise ConfigError([f"kafka.topics.journal: the entry at {topic}[{r.partition}]@{r.offset} of run "
                               f"{run_id} cannot be read ({r.entry}); {FRESH_HINT}"])
    _check(head, run_starts, config)
    history = RunHistory(run_id, head.seed, head.start, {plant: PlantHistory() for plant in sorted(run_starts)},
                         defaultdict(set))
    calendar_end = calendar_end_s(head.start)
    for r in reads:
        entry = r.entry
        if isinstance(entry, JournalError) or entry.run_id != run_id or entry.plant not in history.plants:
            continue
        plant = history.plants[entry.plant]
        if isinstance(entry, Applied):
            previous_at = plant.applied[-1].at if plant.applied else 0.0
            if not previous_at <= entry.at <= calendar_end:
                raise ConfigError([f"kafka.topics.journal: input {entry.seq} of plant {entry.plant} in run {run_id} "
                                   f"applies at {entry.at!r} s, before the input ahead of it ({previous_at!r} s) or "
                                   f"after the end of the calendar ({topic}[{r.partition}]@{r.offset}); {FRESH_HINT}"])
            if entry.seq != len(plant.applied) + 1:
                raise ConfigError([f"kafka.topics.journal: plant {entry.plant} of run {run_id} has input "
                                   f"{entry.seq} after input {len(plant.applied)} ({topic}[{r.partition}]@{r.offset})"
                                   f": the journal is incomplete; {FRESH_HINT}"])
            plant.applied.append(entry)
            if entry.source is not None:
                source_topic, partition, offset = _source(entry.source)
                if source_topic is not None:
                    history.sources[(source_topic, partition)].add(offset)
        elif isinstance(entry, Checkpoint):
            plant.output_through = max(plant.output_through, entry.output_seq)
        elif isinstance(entry, ClockSet):
            plant.clock = entry
    return history


def _check(head: RunStart, run_starts: dict[str, RunStart], config: Config) -> None:
    problems = []
    plants, configured = sorted(run_starts), sorted(config.locations)
    if plants != configured:
        problems.append(f"the journal's run {head.run_id} has the plants {', '.join(plants)}; this config has "
                        f"{', '.join(configured)}")
    if head.fingerprint != config.model_fingerprint:
        problems.append(f"the journal's run {head.run_id} was written with another plant config (fingerprint "
                        f"{head.fingerprint[:12]}…, this config {config.model_fingerprint[:12]}…)")
    if head.seed != config.simulation.seed:
        problems.append(f"the journal's run {head.run_id} has seed {head.seed}; this config has "
                        f"{config.simulation.seed}")
    if problems:
        raise ConfigError([f"kafka.topics.journal: {p}; {FRESH_HINT}" for p in problems])


def _fail_if_unreadable(reads: list[Read], topic: str) -> None:
    """A journal with messages but no run factorysim can read is not one to write to."""
    bad = [r for r in reads if isinstance(r.entry, JournalError)]
    if bad:
        first = bad[0]
        raise ConfigError([f"kafka.topics.journal: {topic} holds no run factorysim can read (e.g. "
                           f"{topic}[{first.partition}]@{first.offset}: {first.entry}); use another journal topic"])


def _source(text: str) -> tuple[str | None, int, int]:
    topic, _, rest = text.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    try:
        return topic, int(partition), int(rest)
    except ValueError:
        return None, 0, 0
