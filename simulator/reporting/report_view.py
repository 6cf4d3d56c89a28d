"""One reading of a single-run report (schema 2) and of a replicated one, for the HTML sections.

A KPI is a :class:`Stat`: the run's value, or over replications the mean with its 95% interval and the
per-replication values.  The structure (locations, pools, stages, machines, priorities) comes in the
report's own order, so that every section lists machines and pools the same way as the JSON does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Stat:
    mean: float
    low: float | None = None
    high: float | None = None
    values: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Bottleneck:
    location: str
    machine_type: str
    stage: str
    utilization: Stat | None
    queue_share: Stat | None
    busy: Stat | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Band:
    """A bucketed series: the mean (or the run's value) per bucket, and its 95% band when replicated."""

    mean: Sequence[float | None]
    low: Sequence[float | None] = ()
    high: Sequence[float | None] = ()


@dataclass(frozen=True, slots=True)
class Series:
    bucket_s: float
    end_s: float
    wip: Band
    queues: Mapping[tuple[str, str], Band]
    waits: Mapping[tuple[str, str], Band]

    def times(self, count: int) -> list[float]:
        """The middle of each bucket (of the last, partly filled one: the middle of its filled part)."""
        out = []
        for i in range(count):
            lo = i * self.bucket_s
            hi = min((i + 1) * self.bucket_s, max(self.end_s, lo))
            out.append((lo + hi) / 2)
        return out


@dataclass(slots=True)
class View:
    replicated: bool
    get: Callable[[Path], Stat | None]
    seed: int | None
    start_utc: str | None
    duration_s: float
    warm_up_s: float
    fingerprint: str | None
    locations: list[str]
    pools: list[tuple[str, str]]
    pool_stages: dict[tuple[str, str], list[str]]
    stages: list[tuple[str, str]]
    machines: list[tuple[str, str, str]]
    priorities: list[str]
    bottleneck: Bottleneck | None
    overload: list[str]
    steady: bool
    assumptions: dict[str, Any] | None
    series: Series | None
    charts: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, *path: str) -> Stat | None:
        return self.get(path)


# --- a single run ----------------------------------------------------------------------------------
def _walk(report: Mapping[str, Any], path: Path) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _number(value: Any) -> Stat | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Stat(float(value))


def run_view(report: Mapping[str, Any], charts: Mapping[str, Any] | None) -> View:
    """The view of a single-run report (and its :func:`~simulator.reporting.run_charts.run_charts`)."""
    pools_json = report.get("pools") or {}
    pools = [(loc, mtype) for loc, types in pools_json.items() for mtype in types]
    stages = [(name, data["machine_type"]) for name, data in report["stages"].items()]
    locations = list(pools_json) or list(dict.fromkeys(
        loc for data in report["stages"].values() for loc in data.get("by_location", {})))
    bottleneck = None
    if report.get("bottleneck"):
        pool = report["bottleneck"]["pool"]
        bottleneck = Bottleneck(pool["location"], pool.get("machine_type") or _type_of(report, pool["stage"]),
                                pool["stage"], _number(pool.get("utilization")), _number(pool.get("queue_share")),
                                _number(pool.get("busy")))
    return View(
        replicated=False,
        get=lambda path: _number(_walk(report, path)),
        seed=report.get("seed"),
        start_utc=report.get("start_utc"),
        duration_s=float(report["sim_duration_s"]),
        warm_up_s=float(report.get("warm_up_s") or 0.0),
        fingerprint=report.get("config_fingerprint"),
        locations=locations,
        pools=pools,
        pool_stages={(loc, t): list(pools_json[loc][t].get("stages", [])) for loc, t in pools},
        stages=stages,
        machines=[(mid, m["location"], m["type"]) for mid, m in report["machines"].items()],
        priorities=list(report.get("lead_time_by_priority_s", {})),
        bottleneck=bottleneck,
        overload=[o["message"] for o in report.get("overload") or []],
        steady=bool(report.get("steady", True)),
        assumptions=report.get("assumptions"),
        series=_run_series(report),
        charts=dict(charts) if charts else None,
    )


def _type_of(report: Mapping[str, Any], stage: str) -> str:
    return str(report["stages"].get(stage, {}).get("machine_type", ""))


def _run_series(report: Mapping[str, Any]) -> Series | None:
    series = report.get("series")
    if not series:
        return None
    queues, waits = {}, {}
    for loc, types in (series.get("pools") or {}).items():
        for mtype, data in types.items():
            queues[(loc, mtype)] = Band(data.get("queue_length") or [])
            waits[(loc, mtype)] = Band(data.get("wait_s") or [])
    return Series(float(series["bucket_s"]), float(report["sim_duration_s"]), Band(series.get("wip") or []),
                  queues, waits)


# --- replications ----------------------------------------------------------------------------------
def interval_stat(data: Mapping[str, Any] | None, *, nonnegative: bool = False) -> Stat | None:
    """A KPI interval of the replicated JSON ({n, mean, sd, ci95, values}) as a :class:`Stat`;
    ``nonnegative``: a quantity that cannot be below 0 (a count, a duration, a share), whose interval is
    shown cut at 0 (a t interval of few, spread values can reach below it)."""
    if not data or data.get("mean") is None:
        return None
    ci = data.get("ci95")
    low, high = (float(ci[0]), float(ci[1])) if ci else (None, None)
    if nonnegative and low is not None:
        low = max(0.0, low)
    return Stat(float(data["mean"]), low, high, tuple(float(v) for v in data.get("values") or ()))


def _in_order(candidates: Sequence[Any], keys: Sequence[str], key_of: Callable[[Any], str]) -> list[Any]:
    """``candidates`` in the order in which their key prefixes first appear among ``keys``."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    position = {}
    for candidate in candidates:
        prefix = key_of(candidate)
        position[id(candidate)] = min((i for k, i in first.items() if k.startswith(prefix)), default=len(keys))
    return sorted(candidates, key=lambda c: position[id(c)])


def replications_view(replicated: Mapping[str, Any]) -> View:
    """The view of the replicated JSON: every KPI a mean with its 95% interval."""
    kpis: Mapping[str, Any] = replicated.get("kpis") or {}
    keys = list(kpis)
    assumptions = replicated.get("assumptions") or {}
    charts = replicated.get("charts")
    route = assumptions.get("route") or []
    stages = [(r["stage"], r["machine_type"]) for r in route]
    machines_per_pool: Mapping[str, Mapping[str, int]] = assumptions.get("machines") or {}
    pools = [(loc, t) for loc, types in machines_per_pool.items() for t in types]
    pools = _in_order(pools, keys, lambda p: f"pools.{p[0]}.{p[1]}.")
    locations = list(dict.fromkeys(loc for loc, _ in pools))
    gantt_rows = {m["id"]: (m["location"], m["type"]) for m in ((charts or {}).get("gantt") or {}).get("machines", [])}
    machine_ids = list(dict.fromkeys(k[len("machines."):-len(".oee")] for k in keys
                                     if k.startswith("machines.") and k.endswith(".oee")))
    machines = [(mid, *gantt_rows.get(mid, ("", ""))) for mid in machine_ids]
    priorities = list(dict.fromkeys(k[len("lead_time_by_priority_s."):-len(".mean")] for k in keys
                                    if k.startswith("lead_time_by_priority_s.") and k.endswith(".mean")))
    bottleneck = None
    if replicated.get("bottleneck"):
        b = replicated["bottleneck"]
        count, total = b.get("replications"), replicated.get("replications")
        note = f"named the bottleneck in {count} of {total} replications" if count is not None else ""
        bottleneck = Bottleneck(b["location"], b["machine_type"], b.get("stage", ""),
                                interval_stat(b.get("utilization"), nonnegative=True),
                                interval_stat(b.get("queue_share"), nonnegative=True), note=note)
    total = replicated.get("replications")
    overload = [f"{o['message']} (flagged in {o.get('replications', '?')} of {total} replications)"
                for o in replicated.get("overload") or []]
    duration = interval_stat(kpis.get("sim_duration_s"))
    warm_up = replicated.get("warm_up") or {}
    view = View(
        replicated=True,
        get=lambda path: interval_stat(kpis.get(".".join(path)), nonnegative=True),  # no KPI of a run is negative
        seed=replicated.get("seed"),
        start_utc=(charts or {}).get("gantt", {}).get("start_utc") if charts and charts.get("gantt") else None,
        duration_s=duration.mean if duration else 0.0,
        warm_up_s=float(warm_up.get("warm_up_s") or 0.0),
        fingerprint=replicated.get("config_fingerprint") or assumptions.get("config_fingerprint"),
        locations=locations,
        pools=pools,
        pool_stages={p: [s for s, t in stages if t == p[1]] for p in pools},
        stages=stages,
        machines=machines,
        priorities=priorities,
        bottleneck=bottleneck,
        overload=overload,
        steady=bool(replicated.get("steady", True)),
        assumptions=assumptions or None,
        series=_replicated_series(replicated, duration.mean if duration else None),
        charts=dict(charts) if charts else None,
    )
    view.extra = {"replicated": replicated}
    return view


def _band(data: Mapping[str, Any] | None) -> Band:
    """A series over replications; its band cut at 0 (no series of a run goes below it)."""
    data = data or {}
    low = [None if v is None else max(0.0, float(v)) for v in data.get("low") or []]
    return Band(data.get("mean") or [], low, data.get("high") or [])


def _replicated_series(replicated: Mapping[str, Any], duration: float | None) -> Series | None:
    series = replicated.get("series")
    if not series:
        return None
    wip = _band(series.get("wip"))
    bucket = float(series["bucket_s"])
    end = len(wip.mean) * bucket
    if duration:
        end = min(end, duration)
    queues, waits = {}, {}
    for loc, types in (series.get("pools") or {}).items():
        for mtype, data in types.items():
            queues[(loc, mtype)] = _band(data.get("queue_length"))
            waits[(loc, mtype)] = _band(data.get("wait_s"))
    return Series(bucket, end, wip, queues, waits)
