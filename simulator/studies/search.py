"""The what-if search: the fewest machines per pool, within given bounds, that meet every target.

A *pool* is a location's machines of one type (``Vietnam.tornio``); the search changes only the
pools it is given, each between its lower and upper bound.  A *target* is ``PATH OP VALUE``: a KPI
of the replicated report (``lead_time_s.p95``, ``pools.Vietnam.tornio.utilization``, …) or
``max_utilization`` (the highest pool utilisation of the plant), an operator ``<=``, ``<``, ``>=``,
``>`` and a number, a percentage (``85%``) or, for a KPI in seconds (a path part ending in ``_s``),
a duration (``8h``).  Each candidate is *judged* on replications: with ``judge: confident`` (the
default) the 95 % confidence bound on the unfavourable side must meet the target (the upper bound
for ``<=``/``<``, the lower bound for ``>=``/``>``), with ``judge: mean`` the mean must.

The algorithm:

(a) Start at every pool's lower bound.  When a target caps a pool's utilisation
    (``max_utilization <= u`` caps every pool, ``pools.L.T.utilization <= u`` one), evaluate the
    lower bounds once and raise each capped pool to the machines its offered load needs under the
    cap: ``ceil(offered_load / u)`` (offered load = arrivals × mean processing time, the machines
    kept busy on average), within its bounds.
(b) While the targets are not met, add one machine to one pool: to the pool a failed target names
    (``pools.L.T.…``, or the pool over a ``max_utilization`` cap) when there is one, else to the
    bottleneck among the searched pools: the one with the highest load (offered load over the
    machine time left after blocks and maintenance; its utilisation when the report has no load),
    so that a pool that maintenance overloads is seen although its utilisation looks moderate.
    Only pools below their upper bound can grow.  When none can, there is no answer within the
    bounds, and the message says which target failed and by how much.  A failed target that names
    a pool the search does not change (more machines elsewhere cannot lower its utilisation) ends
    the search the same way.
(c) Then prune: try taking one machine away from each pool in turn (the pool with the most
    machines first), keep a removal when the targets still hold, and start over, until no single
    removal keeps them: the answer is locally minimal.

Every evaluation is a scenario run with replications, all with the same seeds (common random
numbers, so that two candidates differ by their machines, not by their luck), evaluated once per
machine count (a cache).  Every step is recorded with the machines, the KPIs, the targets' checks
and why it passed or failed.  The search needs only an ``evaluate`` callback that returns a
replicated summary (see :mod:`simulator.studies.scenarios`); it knows nothing of how it is run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from simulator.durations import parse_duration
from simulator.studies.study_text import format_interval, format_value, is_duration

Judge = Literal["confident", "mean"]
MAX_UTILIZATION = "max_utilization"
OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
}
_TARGET = re.compile(r"^\s*(?P<path>[^\s<>=]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>\S.*?)\s*$")
_UTILISATION_PATH = re.compile(r"^pools\.(?P<pool>[^.]+\.[^.]+)\.utilization$")
_POOL_PATH = re.compile(r"^pools\.(?P<pool>[^.]+\.[^.]+)\.")

# Evaluate machine counts (pool key -> machines) to a replicated summary: {"kpis": {path: {mean,
# ci95, values, ...}}, "overload": [...], "steady": bool, ...}.
Evaluate = Callable[[dict[str, int]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Target:
    """``path op value``, as written (``text``) and parsed."""

    text: str
    path: str
    op: str
    value: float

    @property
    def upper(self) -> bool:
        """An upper limit (``<=``, ``<``): the unfavourable side is the high one."""
        return self.op in ("<=", "<")

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.value)

    def shown(self) -> str:
        return f"{self.path} {self.op} {format_value(self.path, self.value)}"


def parse_target(text: str) -> Target:
    """``lead_time_s.p95 <= 8h`` → Target; a ValueError says what is wrong."""
    match = _TARGET.match(text)
    if match is None:
        raise ValueError(f"not a target: {text!r} (write PATH OP VALUE, e.g. 'lead_time_s.p95 <= 8h' or "
                         f"'max_utilization <= 85%'; OP is one of <=, <, >=, >)")
    path, op, raw = match["path"], match["op"], match["value"]
    if raw.endswith("%"):
        number = _float(raw[:-1])
        value = None if number is None else number / 100.0
    else:
        value = _float(raw)
        if value is None and is_duration(path):
            try:
                value = parse_duration(raw)
            except ValueError:
                value = None
    if value is None:
        kinds = "a number, a percentage (85%) or a duration (8h, 30m)" if is_duration(path) else \
            "a number or a percentage (85%)"
        raise ValueError(f"{text!r}: the value {raw!r} is not {kinds}")
    return Target(text.strip(), path, op, value)


def _float(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def utilisation_cap(targets: Sequence[Target], pool: str) -> tuple[float, bool] | None:
    """The tightest utilisation cap the targets put on ``pool``: (cap, strict), or None."""
    caps = [(t.value, t.op == "<") for t in targets if t.upper and _caps(t.path, pool)]
    return min(caps, key=lambda c: (c[0], not c[1])) if caps else None


def _caps(path: str, pool: str) -> bool:
    if path == MAX_UTILIZATION:
        return True
    match = _UTILISATION_PATH.match(path)
    return match is not None and match["pool"] == pool


def machines_for(offered_load: float, cap: float, strict: bool) -> int:
    """The fewest machines that keep ``offered_load`` within the utilisation ``cap``."""
    if cap <= 0:
        return 10_000
    needed = offered_load / cap
    whole = math.floor(needed + 1e-9)
    if strict:
        return whole + 1
    return whole if abs(needed - whole) <= 1e-9 else whole + 1


# --- judging an evaluation ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Check:
    """One target against one evaluation: the judged value (the mean or the unfavourable bound),
    the KPI's mean and interval, and for ``max_utilization`` the pool it comes from."""

    target: Target
    judged: float | None
    mean: float | None
    ci95: tuple[float, float] | None
    pool: str | None
    meets: bool
    failing_pools: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target.text, "judged": _round(self.judged), "mean": _round(self.mean),
                "ci95": None if self.ci95 is None else [_round(v) for v in self.ci95], "pool": self.pool,
                "meets": self.meets}

    def describe(self, judge: Judge) -> str:
        if self.judged is None:
            return f"{self.target.text}: the run reports no {self.target.path}"
        where = f" ({self.pool})" if self.pool else ""
        which = "mean" if judge == "mean" or self.ci95 is None else \
            ("upper 95 % bound" if self.target.upper else "lower 95 % bound")
        value = format_value(self.target.path, self.judged)
        goal = format_value(self.target.path, self.target.value)
        if self.meets:
            return f"{self.target.path}{where} {which} {value} {self.target.op} {goal}"
        gap = format_value(self.target.path, abs(self.judged - self.target.value))
        side = "over" if self.target.upper else "under"
        return f"{self.target.path}{where} {which} {value}, {gap} {side} the target {self.target.op} {goal}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _ci(kpi: Mapping[str, Any]) -> tuple[float, float] | None:
    ci = kpi.get("ci95")
    return None if ci is None else (float(ci[0]), float(ci[1]))


def _judged(kpi: Mapping[str, Any], target: Target, judge: Judge) -> float:
    ci = _ci(kpi)
    if judge == "mean" or ci is None:
        return float(kpi["mean"])
    return ci[1] if target.upper else ci[0]


def pool_utilisations(kpis: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """``Location.type`` -> the utilisation KPI of every pool in the replicated KPIs."""
    found: dict[str, Mapping[str, Any]] = {}
    for path, kpi in kpis.items():
        match = _UTILISATION_PATH.match(path)
        if match is not None:
            found[match["pool"]] = kpi
    return found


def check(target: Target, kpis: Mapping[str, Mapping[str, Any]], judge: Judge) -> Check:
    if target.path == MAX_UTILIZATION:
        pools = pool_utilisations(kpis)
        if not pools:
            return Check(target, None, None, None, None, False)
        judged = {pool: _judged(kpi, target, judge) for pool, kpi in pools.items()}
        worst = max(judged, key=lambda p: judged[p])
        failing = tuple(p for p, v in judged.items() if not target.holds(v))
        return Check(target, judged[worst], float(pools[worst]["mean"]), _ci(pools[worst]), worst,
                     not failing, failing)
    kpi = kpis.get(target.path)
    if kpi is None:
        return Check(target, None, None, None, None, False)
    value = _judged(kpi, target, judge)
    meets = target.holds(value)
    pool = _POOL_PATH.match(target.path)
    return Check(target, value, float(kpi["mean"]), _ci(kpi), None, meets,
                 () if meets or pool is None else (pool["pool"],))


# --- the search ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Evaluation:
    machines: tuple[tuple[str, int], ...]
    summary: Mapping[str, Any]
    checks: tuple[Check, ...]

    @property
    def meets(self) -> bool:
        return all(c.meets for c in self.checks)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.machines)

    def kpi(self, path: str) -> Mapping[str, Any] | None:
        kpis: Mapping[str, Mapping[str, Any]] = self.summary.get("kpis", {})
        return kpis.get(path)

    def utilisation(self, pool: str) -> float:
        kpi = self.kpi(f"pools.{pool}.utilization")
        return float(kpi["mean"]) if kpi is not None else 0.0

    def load(self, pool: str) -> float:
        """The pool's mean load (≥ 1: it cannot keep up), or its utilisation when not reported."""
        kpi = self.kpi(f"pools.{pool}.load")
        return float(kpi["mean"]) if kpi is not None else self.utilisation(pool)


class NoAnswer(Exception):
    """The targets cannot be met within the bounds; the message says why."""


@dataclass
class CapacitySearch:
    """See the module docstring.  ``pools``: ``Location.type`` -> (lower, upper), in the order the
    study names them; ``shown_kpis``: KPI paths recorded with every step besides the targets'."""

    pools: dict[str, tuple[int, int]]
    targets: list[Target]
    judge: Judge
    evaluate: Evaluate
    shown_kpis: Sequence[str] = ()
    on_step: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        self._cache: dict[tuple[tuple[str, int], ...], tuple[Evaluation, int]] = {}
        self.steps: list[dict[str, Any]] = []

    def run(self) -> dict[str, Any]:
        """The search's JSON: pools, targets, judge, steps, answer (or None) and a message."""
        try:
            answer = self._search()
        except NoAnswer as exc:
            return self._result(None, str(exc))
        return self._result(answer, self.answer_sentence(answer))

    def _result(self, answer: Evaluation | None, message: str) -> dict[str, Any]:
        return {
            "pools": {pool: list(bounds) for pool, bounds in self.pools.items()},
            "targets": [t.text for t in self.targets],
            "judge": self.judge,
            "steps": self.steps,
            "evaluations": len(self._cache),
            "answer": None if answer is None else {"machines": answer.counts, "kpis": self._kpis(answer)},
            "message": message,
        }

    # -- the three phases
    def _search(self) -> Evaluation:
        lower = {pool: bounds[0] for pool, bounds in self.pools.items()}
        current = self._evaluate(lower, "the lower bounds")
        start, why = self._start(current)
        if start != lower and not current.meets:
            current = self._evaluate(start, why)
        while not current.meets:
            pool, why = self._grow(current)
            counts = current.counts
            counts[pool] += 1
            current = self._evaluate(counts, why)
        return self._prune(current)

    def _start(self, first: Evaluation) -> tuple[dict[str, int], str]:
        counts = first.counts
        raised: list[str] = []
        for pool, (low, high) in self.pools.items():
            cap = utilisation_cap(self.targets, pool)
            if cap is None:
                continue
            offered = self._offered_load(first, pool)
            needed = min(high, max(low, machines_for(offered, *cap)))
            if needed != counts[pool]:
                raised.append(f"{pool} {counts[pool]} → {needed} (offered load {offered:.2f} / "
                              f"{cap[0]:.2f}{', strictly' if cap[1] else ''})")
                counts[pool] = needed
        return counts, "the lower bounds raised to the machines the offered load needs under the " \
                       "utilisation cap: " + "; ".join(raised)

    def _offered_load(self, evaluation: Evaluation, pool: str) -> float:
        kpi = evaluation.kpi(f"pools.{pool}.offered_load")
        if kpi is not None:
            return float(kpi["mean"])
        return evaluation.utilisation(pool) * evaluation.counts[pool]

    def _grow(self, current: Evaluation) -> tuple[str, str]:
        """The pool to add a machine to, and why; NoAnswer when none can help."""
        failed = [c for c in current.checks if not c.meets]
        counts = current.counts
        unknown = [c for c in failed if c.judged is None]
        if unknown:
            raise NoAnswer(f"no answer: {unknown[0].describe(self.judge)}")
        for failure in failed:
            for pool in failure.failing_pools:
                if pool not in self.pools:
                    raise NoAnswer(f"no answer: {failure.describe(self.judge)}, and {pool} is not among the "
                                   f"searched pools ({', '.join(self.pools)}): more machines there cannot "
                                   f"bring it down")
        named = [pool for failure in failed for pool in failure.failing_pools]
        if named:
            growable = [p for p in dict.fromkeys(named) if counts[p] < self.pools[p][1]]
            if not growable:
                raise NoAnswer(self._no_answer(current, f"{', '.join(dict.fromkeys(named))} at its upper bound"))
            pool = max(growable, key=current.load)
            return pool, f"one more machine at {pool}, named by the failed target " \
                         f"({'; '.join(c.target.text for c in failed if pool in c.failing_pools)})"
        growable = [p for p in self.pools if counts[p] < self.pools[p][1]]
        if not growable:
            raise NoAnswer(self._no_answer(current, "every searched pool at its upper bound"))
        pool = max(growable, key=current.load)
        return pool, f"one more machine at {pool}, the bottleneck of the searched pools that can grow " \
                     f"(load {current.load(pool):.2f}, utilisation " \
                     f"{format_value('max_utilization', current.utilisation(pool))})"

    def _no_answer(self, current: Evaluation, where: str) -> str:
        failed = [c for c in current.checks if not c.meets]
        machines = ", ".join(f"{p} {n}" for p, n in current.machines)
        return f"no answer within the bounds: with {where} ({machines}) " + \
            "; ".join(c.describe(self.judge) for c in failed)

    def _prune(self, current: Evaluation) -> Evaluation:
        order = list(self.pools)
        removed = True
        while removed:
            removed = False
            counts = current.counts
            for pool in sorted(order, key=lambda p: (-counts[p], order.index(p))):
                if counts[pool] <= self.pools[pool][0]:
                    continue
                fewer = dict(counts)
                fewer[pool] -= 1
                trial = self._evaluate(fewer, f"pruning: one machine fewer at {pool} (the largest pools first)")
                if trial.meets:
                    current, removed = trial, True
                    break
        return current

    # -- evaluations and steps
    def _evaluate(self, counts: Mapping[str, int], action: str) -> Evaluation:
        key = tuple((pool, counts[pool]) for pool in self.pools)
        cached = self._cache.get(key)
        if cached is None:
            summary = self.evaluate(dict(key))
            kpis = summary.get("kpis", {})
            evaluation = Evaluation(key, summary, tuple(check(t, kpis, self.judge) for t in self.targets))
            self._cache[key] = (evaluation, len(self.steps))
        else:
            evaluation = cached[0]
        step = {
            "step": len(self.steps),
            "machines": dict(key),
            "action": action,
            "evaluated_at_step": None if cached is None else cached[1],
            "replications": _replications(evaluation.summary),
            "kpis": self._kpis(evaluation),
            "checks": [c.as_dict() for c in evaluation.checks],
            "overloaded": [f"{o['location']}.{o['machine_type']}" for o in evaluation.summary.get("overload", [])],
            "meets": evaluation.meets,
            "failed": [c.target.text for c in evaluation.checks if not c.meets],
            "reason": self._reason(evaluation),
        }
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return evaluation

    def _reason(self, evaluation: Evaluation) -> str:
        if evaluation.meets:
            return "meets every target: " + "; ".join(c.describe(self.judge) for c in evaluation.checks)
        failed = [c for c in evaluation.checks if not c.meets]
        text = "fails " + "; ".join(c.describe(self.judge) for c in failed)
        overload = evaluation.summary.get("overload", [])
        if overload:
            text += " — overloaded: " + "; ".join(f"{o['location']} {o['machine_type']}" for o in overload)
        return text

    def _kpis(self, evaluation: Evaluation) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        for c in evaluation.checks:
            if c.target.path == MAX_UTILIZATION and c.mean is not None:
                shown[MAX_UTILIZATION] = {"mean": _round(c.mean), "ci95": c.as_dict()["ci95"], "pool": c.pool}
        paths = [t.path for t in self.targets if t.path != MAX_UTILIZATION]
        paths += [f"pools.{pool}.{kpi}" for pool in self.pools for kpi in ("utilization", "offered_load", "load")]
        paths += list(self.shown_kpis)
        for path in dict.fromkeys(paths):
            kpi = evaluation.kpi(path)
            if kpi is not None:
                shown[path] = {"mean": kpi["mean"], "ci95": kpi.get("ci95")}
        return shown

    def answer_sentence(self, answer: Evaluation) -> str:
        """``Vietnam needs 4 tornio (p95 lead time 6.9 h [6.5, 7.3], max utilisation 81 %)``."""
        by_location: dict[str, list[str]] = {}
        for pool, count in answer.machines:
            location, _, machine_type = pool.partition(".")
            by_location.setdefault(location, []).append(f"{count} {machine_type}")
        needs = "; ".join(f"{loc} needs {_and(parts)}" for loc, parts in by_location.items())
        facts = []
        for c in answer.checks:
            if c.mean is None:
                continue
            facts.append(f"{_kpi_words(c.target.path)} {format_interval(c.target.path, c.mean, c.ci95)}"
                         + (f" at {c.pool}" if c.pool else ""))
        return f"{needs} ({', '.join(facts)})" if facts else needs


def _replications(summary: Mapping[str, Any]) -> int | None:
    count = summary.get("replications")
    return int(count) if isinstance(count, int) else None


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


_WORDS = {"lead_time_s": "lead time", "wait_s": "wait", "throughput_per_hour": "throughput (lots/h)",
          "max_utilization": "max utilisation", "utilization": "utilisation", "wip": "WIP"}


def _kpi_words(path: str) -> str:
    """``lead_time_s.p95`` → ``p95 lead time``; other paths as they are."""
    parts = path.split(".")
    if parts[0] in ("lead_time_s", "wip") and len(parts) == 2:
        return f"{parts[1]} {_WORDS[parts[0]]}"
    if path == MAX_UTILIZATION:
        return _WORDS[path]
    match = _UTILISATION_PATH.match(path)
    if match is not None:
        return f"{match['pool']} utilisation"
    return path
