"""The warm-up of a study: none, a fixed simulated time, or found automatically by MSER-5.

Automatic (``auto``): a pilot of min(N, 5) runs of the study's length without warm-up, on seeds of
their own; each run's WIP series (time averages over equal buckets) goes through MSER-5
(:mod:`simulator.studies.mser`) and the warm-up is the largest truncation, at a bucket boundary.
A pilot whose MSER minimum lies in the second half of the run (or that has fewer than ten batches)
gives a warning: the run is too short to reach a steady state, and the warm-up is a guess.
Needs a run of a fixed simulated length (``until_s``): a lot count ends at a random time, and a
terminating study has no steady state to wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.config.schema import Config
from simulator.errors import FactorySimError
from simulator.progress import human_duration
from simulator.studies import mser
from simulator.studies.runs import RunLength, Runner, Task, WarmUp, pilot_seed

PILOT_RUNS = 5
TOO_SHORT = "run too short for a steady state: lengthen --until"


@dataclass(frozen=True, slots=True)
class WarmUpDecision:
    """The warm-up every replication uses, with what the pilot saw (``pilot``, automatic only)."""

    warm_up: WarmUp
    pilot: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.warm_up.method, "warm_up_s": self.warm_up.warm_up_s, "pilot": self.pilot,
                "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmUpDecision:
        return cls(WarmUp(data["method"], float(data["warm_up_s"])), data.get("pilot"), list(data.get("warnings", [])))


def check_fixed(warm_up_s: float, length: RunLength) -> None:
    """A fixed warm-up must leave something to observe (ValueError naming both durations)."""
    if warm_up_s < 0:
        raise ValueError(f"a warm-up cannot be negative, got {warm_up_s} s")
    if length.until_s is not None and warm_up_s >= length.until_s:
        raise ValueError(f"the warm-up ({human_duration(warm_up_s)}) must be shorter than the run "
                         f"({human_duration(length.until_s)})")


def decide(config: Config, *, seed: int, length: RunLength, requested: WarmUpDecision | WarmUp | str,
           replications: int,
           runner: Runner, progress: Callable[[int, int], None] | None = None) -> WarmUpDecision:
    """The warm-up for a study of ``replications`` runs; ``requested`` is a :class:`WarmUp`, a
    decision taken before (kept as it is) or ``"auto"`` (then a pilot runs on ``runner``, reporting
    ``progress(done, pilot runs)``)."""
    if isinstance(requested, WarmUpDecision):
        return requested
    if isinstance(requested, WarmUp):
        if requested.method != "mser-5" and (requested.method == "none" or requested.warm_up_s == 0):
            return WarmUpDecision(WarmUp("none", 0.0))
        check_fixed(requested.warm_up_s, length)
        return WarmUpDecision(requested)
    if requested != "auto":
        raise ValueError(f"warm-up: a WarmUp or 'auto', got {requested!r}")
    if length.until_s is None:
        raise ValueError("an automatic warm-up needs a run of a fixed simulated length (until_s), not a lot count")
    count = max(1, min(replications, PILOT_RUNS))
    seeds = [pilot_seed(seed, i) for i in range(count)]
    outcomes = runner.run([Task(i, config, s, length) for i, s in enumerate(seeds)],
                          None if progress is None else lambda done: progress(done, count))
    truncations: list[float] = []
    unreliable: list[int] = []
    bucket_s = 0.0
    for outcome in outcomes:
        series = outcome.report.get("series")
        if not isinstance(series, dict) or not series.get("wip"):
            raise FactorySimError("the automatic warm-up needs the WIP series of the run report, which this "
                                  "report does not have")
        bucket_s = float(series["bucket_s"])
        cut = mser.mser5([float(w) for w in series["wip"]])
        truncations.append(round(cut.points * bucket_s, 3))
        if not cut.reliable:
            unreliable.append(outcome.index + 1)
    warnings = []
    if unreliable:
        runs = ", ".join(str(i) for i in unreliable)
        warnings.append(f"{TOO_SHORT} (pilot run{'s' if len(unreliable) > 1 else ''} {runs} of {count}: the MSER-5 "
                        "minimum lies in the second half of the run, or the run has fewer than "
                        f"{mser.MIN_BATCHES * mser.BATCH} buckets)")
    pilot = {"replications": count, "seeds": seeds, "series": "wip", "bucket_s": bucket_s,
             "truncation_s": truncations,
             "rule": f"MSER-5: WIP averaged over buckets of {bucket_s:g} s, in batches of {mser.BATCH} buckets; "
                     "each pilot run is truncated where the MSER statistic is smallest within its first half; "
                     "the warm-up is the largest truncation"}
    return WarmUpDecision(WarmUp("mser-5", max(truncations)), pilot, warnings)
