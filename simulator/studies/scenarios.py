"""Running a study: every scenario with replications, the pairwise comparisons, the search, and
the study JSON (README "Studies").

Seeds: with common random numbers (the default) replication i of every scenario, and of every
search step, runs on the same seed (the study seed's replication i), so scenarios differ by their
plant, not by their luck; without them scenario k's replications derive from (study seed, scenario
name) and the comparisons use Welch's interval.  The search always shares the study seeds.

Warm-up: decided once for the whole study.  ``auto`` runs the MSER-5 pilot on the first scenario
and every scenario and search step then uses that warm-up, so that all are observed over the same
period and compare fairly; a fixed warm-up is the same for all anyway.

Replications: a fixed count per scenario, or precision mode (replications added until the chosen
KPI's 95 % half-width is within the relative target, up to a cap), decided per scenario and per
search step.  Worker processes are started once for the whole study.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from simulator.config.schema import Config
from simulator.model.randomness import derive_seed
from simulator.studies.comparison import compare
from simulator.studies.precision import DEFAULT_START, PrecisionTarget, run_to_precision
from simulator.studies.replications import Replicated, run_replications, summarize
from simulator.studies.runs import SEED_MASK, RunLength, Runner, WarmUp
from simulator.studies.search import CapacitySearch
from simulator.studies.study_file import Study
from simulator.studies.study_text import StudyProgress
from simulator.studies.warm_up import WarmUpDecision

SCHEMA_VERSION = 2
FAIR_WARM_UP = ("decided once, on the first scenario ({name}), and used for every scenario and search step, so "
                "that all are observed over the same period")


def scenario_seed(study: Study, name: str) -> int:
    """The run seed of a scenario's replications (replication i: its i-th derived seed)."""
    if study.spec.common_random_numbers:
        return study.seed
    return derive_seed(study.seed, "scenario", name) & SEED_MASK


class StudyRunner:
    """Runs the configs of one study: the same length, warm-up and replication rule for all, one
    pool of worker processes, results cached by (plant fingerprint, seed)."""

    def __init__(self, study: Study, runner: Runner, progress: StudyProgress | None) -> None:
        self.study = study
        self.runner = runner
        self.progress = progress
        self.length = RunLength(lots=study.lots, until_s=study.until_s)
        warm = study.spec.warm_up
        self.warm_up: WarmUp | WarmUpDecision | Literal["auto"] = \
            "auto" if warm == "auto" else WarmUp("fixed", float(warm)) if warm else WarmUp("none")
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}

    def summary(self, config: Config, seed: int, label: str) -> dict[str, Any]:
        key = (config.model_fingerprint, seed)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if self.progress is not None:
            self.progress.stage(label)
        spec = self.study.spec
        precision: dict[str, Any] | None = None
        replicated: Replicated
        if spec.precision is None:
            replicated = run_replications(config, seed=seed, count=spec.replication_count or 1, length=self.length,
                                          warm_up=self.warm_up, runner=self.runner, progress=self.progress)
        else:
            target = PrecisionTarget(spec.precision.kpi, spec.precision.relative, spec.precision.max_replications)
            replicated, precision = run_to_precision(
                config, seed=seed, start=min(DEFAULT_START, target.cap), target=target, length=self.length,
                warm_up=self.warm_up, runner=self.runner, progress=self.progress)
        if not isinstance(self.warm_up, WarmUpDecision):
            self.warm_up = replicated.warm_up_decision  # the first run decides the warm-up of all
        summary = summarize(replicated, precision=precision)
        self._cache[key] = summary
        return summary


def run_study(study: Study, *, jobs: int | None = None, progress: StudyProgress | None = None) -> dict[str, Any]:
    """Run every scenario and the search; the study JSON."""
    spec = study.spec
    jobs = jobs if jobs is not None else spec.jobs
    with Runner(jobs) as runner:
        runs = StudyRunner(study, runner, progress)
        results: dict[str, dict[str, Any]] = {}
        for index, scenario in enumerate(study.scenarios):
            results[scenario.name] = runs.summary(
                scenario.config, scenario_seed(study, scenario.name),
                f"scenario {index + 1}/{len(study.scenarios)} {scenario.name!r}")
        search = None if spec.search is None else _search(study, runs)
    warm_up = dict(results[study.scenarios[0].name]["warm_up"])
    if spec.warm_up == "auto":
        warm_up["decided"] = FAIR_WARM_UP.format(name=study.scenarios[0].name)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "study",
        "name": spec.name,
        "file": str(study.path),
        "base": str(study.base),
        "overrides": dict(spec.overrides),
        "common_random_numbers": spec.common_random_numbers,
        "replications": spec.replication_count,
        "precision": None if spec.precision is None else spec.precision.model_dump(),
        "seed": study.seed,
        "jobs": runner.jobs,
        "length": {"lots": study.lots, "until_s": study.until_s},
        "warm_up": warm_up,
        "kpis": list(spec.kpis),
        "scenarios": [{"name": s.name, "overrides": s.overrides, "config_fingerprint": s.config.model_fingerprint,
                       "seed": scenario_seed(study, s.name), "result": results[s.name]} for s in study.scenarios],
        "comparisons": compare(results, spec.kpis, paired=spec.common_random_numbers),
        "search": search,
    }


def _search(study: Study, runs: StudyRunner) -> dict[str, Any]:
    assert study.spec.search is not None
    assert study.search_scenario is not None
    scenario = study.search_scenario
    steps = 0

    def evaluate(machines: Mapping[str, int]) -> Mapping[str, Any]:
        nonlocal steps
        steps += 1
        shown = ", ".join(f"{pool} {n}" for pool, n in machines.items())
        return runs.summary(study.with_machines(scenario, machines), study.seed, f"search step {steps} ({shown})")

    search = CapacitySearch(dict(study.search_pools), list(study.targets), study.spec.search.judge, evaluate,
                            shown_kpis=study.spec.kpis)
    return {"scenario": scenario.name, **search.run()}
