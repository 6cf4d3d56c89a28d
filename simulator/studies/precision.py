"""Replications until a KPI is known to a relative precision (a sequential procedure).

Start with ``start`` replications; while the 95% interval's half-width of the KPI is wider than
``relative`` × |mean|, estimate the replications needed from the current one (the half-width shrinks
as 1/sqrt(n): n × (achieved / target)², Law & Kelton's approximation) and add the missing ones in a
batch — at most as many as there are already, so that a noisy early estimate does not overshoot —
until the target is reached or ``cap`` replications have run.  The batches do not depend on the
number of jobs, so neither does the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from simulator.config.schema import Config
from simulator.studies.aggregate import kpi_values
from simulator.studies.confidence import interval
from simulator.studies.replications import Replicated, run_replications
from simulator.studies.runs import RunLength, Runner, WarmUp, default_jobs
from simulator.studies.warm_up import WarmUpDecision

DEFAULT_KPI = "lead_time_s.mean"
DEFAULT_START = 10
MIN_START = 3
DEFAULT_CAP = 100


@dataclass(frozen=True, slots=True)
class PrecisionTarget:
    """The KPI path, the relative half-width to reach (0.05 = 5%) and the most replications to run."""

    kpi: str = DEFAULT_KPI
    relative: float = 0.05
    cap: int = DEFAULT_CAP

    def __post_init__(self) -> None:
        if not 0 < self.relative < 1:
            raise ValueError(f"the relative precision is between 0 and 1 (exclusive), got {self.relative}")
        if self.cap < MIN_START:
            raise ValueError(f"the cap must be at least {MIN_START}, got {self.cap}")


def achieved(replicated: Replicated, kpi: str) -> float:
    """The relative half-width of ``kpi``'s interval over the replications (inf when undefined)."""
    values = kpi_values(replicated.reports, kpi)
    if len(values) < 2:
        return math.inf
    return interval(values).relative_half_width


def next_batch(n: int, relative: float, target: PrecisionTarget) -> int:
    """How many replications to add after ``n`` whose KPI has relative half-width ``relative``."""
    room = target.cap - n
    if relative <= target.relative or room <= 0:
        return 0
    needed = math.ceil(n * (relative / target.relative) ** 2) if math.isfinite(relative) else 2 * n
    return min(room, max(1, min(needed - n, n)))


def _after(before: int, progress: Callable[[int, int], None] | None) -> Callable[[int, int], None] | None:
    """``progress`` of a batch counted after the ``before`` replications already run."""
    if progress is None:
        return None
    report = progress
    return lambda done, total: report(before + done, before + total)


def run_to_precision(config: Config, *, seed: int, start: int, target: PrecisionTarget, length: RunLength,
                     warm_up: WarmUp | WarmUpDecision | Literal["auto"], jobs: int | None = None,
                     charts: bool = False, progress: Callable[[int, int], None] | None = None,
                     runner: Runner | None = None) -> tuple[Replicated, dict[str, Any]]:
    """The replications and the ``precision`` section of their summary."""
    if start < MIN_START:
        raise ValueError(f"a sequential procedure starts with at least {MIN_START} replications, got {start}")
    if start > target.cap:
        raise ValueError(f"the start ({start} replications) is above the cap ({target.cap})")
    active = Runner(min(jobs or default_jobs(), target.cap)) if runner is None else runner
    try:
        replicated = run_replications(config, seed=seed, count=start, length=length, warm_up=warm_up, charts=charts,
                                      progress=progress, runner=active)
        relative = achieved(replicated, target.kpi)
        while batch := next_batch(len(replicated.reports), relative, target):
            more = run_replications(config, seed=seed, count=batch, length=length,
                                    warm_up=replicated.warm_up_decision, first=len(replicated.reports),
                                    runner=active, progress=_after(len(replicated.reports), progress))
            replicated = replicated.extended(more)
            relative = achieved(replicated, target.kpi)
    except BaseException as exc:
        if runner is None:
            active.close(interrupted=isinstance(exc, KeyboardInterrupt))
        raise
    if runner is None:
        active.close()
    return replicated, {
        "kpi": target.kpi, "target_relative": target.relative,
        "achieved_relative": round(relative, 6) if math.isfinite(relative) else None,
        "reached": relative <= target.relative, "cap": target.cap, "replications": len(replicated.reports),
    }
