"""Independent replications of an offline run, in worker processes, and their summary.

Replication ``i`` is the offline run of seed :func:`replication_seed` (run seed, ``i``): replication 0
is the single run of the run seed, the others have seeds derived from it, so a study is repeatable
and extends (replications ``first`` .. ``first + count - 1``) without changing the ones before.
Every replication has the same length and warm-up; the summary (:func:`summarize`) gives every KPI
with its Student t 95% interval over the replications.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from simulator.config.schema import Config
from simulator.studies import aggregate
from simulator.studies.runs import (
    RunLength,
    Runner,
    Task,
    WarmUp,
    default_jobs,
    replication_seed,
)
from simulator.studies.warm_up import WarmUpDecision, decide

SCHEMA_VERSION = 2
CONFIDENCE = 0.95


@dataclass
class Replicated:
    """The reports of replications (in replication order) and how they were run.  ``warm_up`` is the
    ``warm_up`` section of the summary; ``charts`` the HTML charts of replication 0 when asked for;
    ``seed`` the run seed, ``jobs`` the worker processes used, ``first`` the first replication's index."""

    reports: list[dict[str, Any]]
    seeds: list[int]
    warm_up: dict[str, Any]
    charts: dict[str, Any] | None = None
    seed: int = 0
    length: RunLength | None = None
    jobs: int = 1
    first: int = 0

    @property
    def warm_up_decision(self) -> WarmUpDecision:
        """The warm-up as :func:`run_replications` takes it (to add replications to these)."""
        return WarmUpDecision.from_dict(self.warm_up)

    def extended(self, more: Replicated) -> Replicated:
        """These replications followed by ``more`` (the next ones of the same study)."""
        return Replicated(self.reports + more.reports, self.seeds + more.seeds, self.warm_up,
                          self.charts if self.charts is not None else more.charts, self.seed, self.length,
                          self.jobs, self.first)


def run_replications(config: Config, *, seed: int, count: int, length: RunLength,
                     warm_up: WarmUp | WarmUpDecision | Literal["auto"], jobs: int | None = None,
                     first: int = 0, charts: bool = False, progress: Callable[[int, int], None] | None = None,
                     runner: Runner | None = None) -> Replicated:
    """Replications ``first`` .. ``first + count - 1`` of ``config`` under run ``seed``, on ``jobs``
    worker processes (default: one per core; 1 runs them here) or on an open ``runner``.

    ``warm_up="auto"`` first runs the MSER-5 pilot (see :mod:`simulator.studies.warm_up`);
    ``progress(done, total)`` counts the pilot runs and the replications together.  ``charts``: the
    run charts of replication 0 (when it is among these) for the HTML report."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if first < 0:
        raise ValueError(f"first must not be negative, got {first}")
    own = runner is None
    active = Runner(min(jobs or default_jobs(), count)) if runner is None else runner
    try:
        pilots = 0

        def pilot_progress(done: int, total: int) -> None:
            nonlocal pilots
            pilots = total
            if progress is not None:
                progress(done, total + count)

        decision = decide(config, seed=seed, length=length, requested=warm_up, replications=count,
                          runner=active, progress=pilot_progress)
        seeds = [replication_seed(seed, i) for i in range(first, first + count)]
        tasks = [Task(i, config, s, length, decision.warm_up.warm_up_s, charts=charts and i == 0)
                 for i, s in zip(range(first, first + count), seeds, strict=True)]
        outcomes = active.run(tasks, None if progress is None else
                              lambda done: progress(pilots + done, pilots + count))
    except BaseException as exc:
        if own:
            active.close(interrupted=isinstance(exc, KeyboardInterrupt))
        raise
    if own:
        active.close()
    chart_data = next((o.charts for o in outcomes if o.charts is not None), None)
    return Replicated([o.report for o in outcomes], seeds, decision.as_dict(), chart_data, seed, length,
                      active.jobs, first)


def kpi_names(config: Config) -> list[str]:
    """Every KPI path a replication of ``config`` reports (read off the report of the plant before it
    runs, which has every key)."""
    from simulator.model.records import NullSink
    from simulator.model.simulation import Simulation
    from simulator.reporting.summary import build_report

    return aggregate.kpi_paths([build_report(Simulation(config, NullSink()))])


def check_kpi(config: Config, path: str) -> None:
    """ValueError naming the closest KPI paths when ``path`` is not one of ``config``'s."""
    names = kpi_names(config)
    if path not in names:
        raise ValueError(aggregate.unknown_kpi(path, names))


def summarize(replicated: Replicated, *, precision: dict[str, Any] | None = None) -> dict[str, Any]:
    """The replicated report (README "Capacity studies"): every KPI over the replications, the
    warm-up, the precision reached (when a target was given), overloaded pools, the bottleneck and
    the series averaged per bucket."""
    reports = replicated.reports
    if not reports:
        raise ValueError("no replications to summarize")
    first = reports[0]
    overload = aggregate.aggregate_overload(reports)
    warm_up = {**replicated.warm_up, "warnings": list(replicated.warm_up.get("warnings", []))}
    short = sum(1 for r in reports if r.get("warm_up_s", 0.0) < warm_up["warm_up_s"])
    if short:  # (a run of a lot count can end first)
        warm_up["warnings"].append(f"{short} of {len(reports)} replications ended before the warm-up: their "
                                   "statistics cover the whole run")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "replications",
        "seed": replicated.seed,
        "seeds": list(replicated.seeds),
        "replications": len(reports),
        "jobs": replicated.jobs,
        "confidence": CONFIDENCE,
        "length": replicated.length.as_dict() if replicated.length else {"lots": None, "until_s": None},
        "warm_up": warm_up,
        "precision": precision,
        "kpis": aggregate.aggregate_kpis(reports),
        "overload": overload,
        "steady": not overload and all(r.get("steady", True) for r in reports),
        "bottleneck": aggregate.aggregate_bottleneck(reports),
        "assumptions": first.get("assumptions"),
        "config_fingerprint": first.get("config_fingerprint"),
        "series": aggregate.aggregate_series(reports),
        "charts": replicated.charts,
    }


__all__ = ["Replicated", "RunLength", "Runner", "WarmUp", "WarmUpDecision", "check_kpi", "kpi_names",
           "replication_seed", "run_replications", "summarize"]
