"""One replication as a task a worker process can run, and the pool that runs a batch of them.

A task carries everything a fresh interpreter needs (the config pickles; the worker imports the
model itself), so the pool works under the ``spawn`` start method, which it uses: nothing of the
parent (threads, event loops, open sockets) leaks into the workers.  Workers ignore SIGINT: Ctrl-C
reaches the parent alone, which stops the workers and raises ``KeyboardInterrupt`` once (no
traceback from every worker).  With one job the tasks run in this process, one after the other.
Results come back in task order whatever the number of jobs, so the output of a study does not
depend on it.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from simulator.config.schema import Config
from simulator.errors import FactorySimError
from simulator.model.randomness import derive_seed

SEED_MASK = 2**63 - 1  # the bounds of simulation.seed


@dataclass(frozen=True, slots=True)
class RunLength:
    """How long each replication runs: ``lots`` generated lots (a terminating study: a shift, a
    week's orders) or ``until_s`` simulated seconds (a steady-state study); exactly one."""

    lots: int | None = None
    until_s: float | None = None

    def __post_init__(self) -> None:
        if (self.lots is None) == (self.until_s is None):
            raise ValueError("a run length is lots or until_s, exactly one")
        if self.lots is not None and self.lots < 1:
            raise ValueError(f"lots must be at least 1, got {self.lots}")
        if self.until_s is not None and not self.until_s > 0:
            raise ValueError(f"until_s must be positive, got {self.until_s}")

    def as_dict(self) -> dict[str, Any]:
        return {"lots": self.lots, "until_s": self.until_s}


@dataclass(frozen=True, slots=True)
class WarmUp:
    """The warm-up of every replication: none, a fixed simulated time, or one found by MSER-5."""

    method: Literal["none", "fixed", "mser-5"]
    warm_up_s: float = 0.0


def replication_seed(run_seed: int, index: int) -> int:
    """The seed of replication ``index``: the run seed itself for the first (so replication 0 is
    the single run of the same seed), a derived one for the others."""
    if index == 0:
        return run_seed
    return derive_seed(run_seed, "replication", str(index)) & SEED_MASK


def pilot_seed(run_seed: int, index: int) -> int:
    """The seed of pilot run ``index`` of an automatic warm-up (streams apart from the replications',
    so the truncation is not chosen on the data it truncates)."""
    return derive_seed(run_seed, "warm-up pilot", str(index)) & SEED_MASK


@dataclass(frozen=True, slots=True)
class Task:
    """One offline run: the report it gives (and, with ``charts``, the charts of the HTML report)."""

    index: int
    config: Config
    seed: int
    length: RunLength
    warm_up_s: float = 0.0
    charts: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    index: int
    report: dict[str, Any]
    charts: dict[str, Any] | None


def run_task(task: Task) -> Outcome:
    """Run ``task`` to the end (in whichever process) and build its report."""
    from simulator.programs.offline import run_offline
    from simulator.reporting.summary import build_report

    result = asyncio.run(run_offline(
        task.config, seed=task.seed, lots=task.length.lots, until_s=task.length.until_s,
        timeline=(0.0, math.inf) if task.charts else None,  # the Gantt of the charts covers the whole run
        warm_up_s=task.warm_up_s,
    ))
    report = build_report(result.sim)
    if isinstance(report.get("assumptions"), dict):
        report["assumptions"]["length"] = task.length.as_dict()
    charts = None
    if task.charts:
        from simulator.reporting.run_charts import run_charts

        charts = run_charts(result.sim)
    return Outcome(task.index, report, charts)


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT held back (blocked, not ignored) while worker processes start.  A spawned interpreter
    inherits the blocked signal, so a Ctrl-C in that moment stays pending in it until its
    initializer ignores SIGINT (which discards it): no worker prints a KeyboardInterrupt of its own.
    The parent gets the Ctrl-C as soon as the workers are started, instead of losing it."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def default_jobs() -> int:
    return os.cpu_count() or 1


class Runner:
    """Runs batches of tasks on ``jobs`` processes; the pool lives as long as the runner (a
    sequential procedure or a study of several scenarios pays the start of the workers once).
    Use as a context manager."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = default_jobs() if jobs is None else jobs
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.close(interrupted=kind is not None and issubclass(kind, KeyboardInterrupt))  # type: ignore[arg-type]

    def close(self, *, interrupted: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if interrupted:  # the workers stop now, not after their replication
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def run(self, tasks: Sequence[Task], progress: Callable[[int], None] | None = None) -> list[Outcome]:
        """The outcomes of ``tasks`` in their order; ``progress(done)`` after each finished task."""
        if self.jobs == 1 or len(tasks) <= 1:
            outcomes = []
            for task in tasks:
                outcomes.append(run_task(task))
                if progress is not None:
                    progress(len(outcomes))
            return outcomes
        pool = self._ensure_pool()
        with _interrupts_held():
            futures: dict[Future[Outcome], int] = {pool.submit(run_task, t): i for i, t in enumerate(tasks)}
        results: list[Outcome | None] = [None] * len(tasks)
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results[futures[future]] = future.result()
                if progress is not None:
                    progress(len(tasks) - len(pending))
        except BrokenProcessPool as exc:
            self.close(interrupted=True)
            raise FactorySimError(f"a replication's worker process died ({exc}); with many jobs on a large "
                                  "plant the memory may not suffice: try fewer --jobs") from exc
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        return [r for r in results if r is not None]

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_ignore_interrupts)
        return self._pool
