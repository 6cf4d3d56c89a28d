"""Reports of independent replications into one: every numeric KPI as mean, standard deviation and
Student t 95% interval over the replications (with the values), the series averaged bucket by bucket,
overloaded pools and the bottleneck counted over the replications.

A KPI is named by its dotted path in the single-run report (``lead_time_s.p95``,
``pools.Vietnam.tornio.utilization``).  Every numeric leaf counts except the run's identity
(``schema_version``, ``seed``, ``warm_up_s``), the inputs (``assumptions``) and what has a section of
its own here (``series``, ``overload``, ``bottleneck``).
"""

from __future__ import annotations

import difflib
import statistics
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from simulator.studies.confidence import interval

NOT_KPIS = frozenset({"schema_version", "seed", "warm_up_s", "assumptions", "series", "overload", "bottleneck",
                      "orders_rejected"})
SERIES_DIGITS = 4


def numeric_leaves(report: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted path, value) of every KPI of a single-run report, in the report's order."""
    for key, value in report.items():
        if not prefix and key in NOT_KPIS:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            yield path, value
        elif isinstance(value, dict):
            yield from numeric_leaves(value, path + ".")


def kpi_paths(reports: Sequence[dict[str, Any]]) -> list[str]:
    """Every KPI path of any of ``reports``, in order of first appearance."""
    return list(dict.fromkeys(path for report in reports for path, _ in numeric_leaves(report)))


def lookup(report: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (None when absent)."""
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def closest(path: str, paths: Sequence[str], count: int = 3) -> list[str]:
    """The KPI paths most like ``path`` (for a message about a misspelt one)."""
    return difflib.get_close_matches(path, paths, n=count, cutoff=0.5)


def unknown_kpi(path: str, paths: Sequence[str]) -> str:
    """The message about a KPI path that is not one of ``paths``."""
    near = closest(path, paths)
    hint = f"closest: {', '.join(near)}" if near else "e.g. " + ", ".join(
        p for p in ("lead_time_s.mean", "lead_time_s.p95", "throughput_per_hour", "wip.mean") if p in paths)
    return (f"no KPI {path!r} ({hint}; a KPI is a numeric value of the single-run JSON report named by its "
            "dotted path)")


def kpi_values(reports: Sequence[dict[str, Any]], path: str) -> list[float]:
    values = [lookup(r, path) for r in reports]
    return [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def aggregate_kpis(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    kpis: dict[str, Any] = {}
    for path in kpi_paths(reports):
        values = kpi_values(reports, path)
        kpis[path] = {**interval(values).as_dict(), "values": values}
    return kpis


# --- series -----------------------------------------------------------------------------------
def coarsen(values: Sequence[float | None], factor: int) -> list[float | None]:
    """Buckets ``factor`` times as wide: the mean of each group of ``factor`` (of the non-null ones;
    exact for time averages over equal buckets)."""
    out: list[float | None] = []
    for i in range(0, len(values), factor):
        group = [v for v in values[i:i + factor] if v is not None]
        out.append(statistics.fmean(group) if group else None)
    return out


def _band(columns: Sequence[Sequence[float | None]]) -> dict[str, list[float | None]]:
    """Mean and 95% interval per bucket of series of equal length (one per replication)."""
    mean: list[float | None] = []
    low: list[float | None] = []
    high: list[float | None] = []
    for bucket in zip(*columns, strict=True):
        values = [v for v in bucket if v is not None]
        if not values:
            mean.append(None)
            low.append(None)
            high.append(None)
            continue
        ci = interval(values)
        mean.append(round(ci.mean, SERIES_DIGITS))
        low.append(round(ci.low, SERIES_DIGITS) if ci.defined else None)
        high.append(round(ci.high, SERIES_DIGITS) if ci.defined else None)
    return {"mean": mean, "low": low, "high": high}


def aggregate_series(reports: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The series of every replication averaged per bucket, over the buckets all of them have
    (runs of different lengths have different bucket widths: the narrower are merged up)."""
    series = [r.get("series") for r in reports]
    if not series or not all(isinstance(s, dict) and s.get("bucket_s") for s in series):
        return None
    bucket_s = max(float(s["bucket_s"]) for s in series)  # type: ignore[index]
    factors = [bucket_s / float(s["bucket_s"]) for s in series]  # type: ignore[index]
    if any(f != int(f) for f in factors):
        return None

    def aligned(values_of: list[list[float | None]]) -> list[list[float | None]]:
        merged = [coarsen(v, int(f)) if f > 1 else list(v) for v, f in zip(values_of, factors, strict=True)]
        size = min(len(v) for v in merged)
        return [v[:size] for v in merged]

    pools: dict[str, Any] = {}
    first_pools = series[0].get("pools") or {}  # type: ignore[union-attr]
    for loc, types in first_pools.items():
        for machine_type in types:
            per_run = [((s.get("pools") or {}).get(loc) or {}).get(machine_type) for s in series]  # type: ignore[union-attr]
            if not all(isinstance(p, dict) for p in per_run):
                continue
            queue = _band(aligned([p["queue_length"] for p in per_run]))  # type: ignore[index]
            waits = aligned([p["wait_s"] for p in per_run])  # type: ignore[index]
            wait_mean = [_mean_or_none(bucket) for bucket in zip(*waits, strict=True)]
            pools.setdefault(loc, {})[machine_type] = {"queue_length": queue, "wait_s": {"mean": wait_mean}}
    return {
        "bucket_s": bucket_s,
        "warm_up_s": series[0].get("warm_up_s", 0.0),  # type: ignore[union-attr]
        "wip": _band(aligned([s["wip"] for s in series])),  # type: ignore[index]
        "pools": pools,
    }


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), SERIES_DIGITS) if kept else None


# --- overload and bottleneck ------------------------------------------------------------------
def aggregate_overload(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pool flagged overloaded in at least one replication: in how many, its load over all
    replications, and the message of the replication where its load was highest."""
    flagged: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for report in reports:
        for entry in report.get("overload") or []:
            flagged.setdefault((entry["location"], entry["machine_type"]), []).append(entry)
    result = []
    for (loc, machine_type), entries in flagged.items():
        loads = kpi_values(reports, f"pools.{loc}.{machine_type}.load") or [e["load"] for e in entries]
        worst = max(entries, key=lambda e: e["load"])
        result.append({
            "location": loc, "machine_type": machine_type, "stages": worst.get("stages"),
            "machines": worst.get("machines"), "replications": len(entries),
            "load": interval(loads).as_dict(), "message": worst["message"],
        })
    result.sort(key=lambda e: (-e["replications"], -e["load"]["mean"], e["location"], e["machine_type"]))
    return result


def aggregate_bottleneck(reports: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The pool most replications named the bottleneck: how many did, its utilisation over all
    replications and its share of the waiting time over those that named it."""
    named = [r["bottleneck"]["pool"] for r in reports
             if isinstance(r.get("bottleneck"), dict) and isinstance(r["bottleneck"].get("pool"), dict)]
    if not named:
        return None
    votes = Counter((p["location"], p.get("machine_type"), p["stage"]) for p in named)
    order = {key: i for i, key in reversed(list(enumerate((p["location"], p.get("machine_type"), p["stage"])
                                                          for p in named)))}
    (loc, machine_type, stage), count = min(votes.items(), key=lambda item: (-item[1], order[item[0]]))
    mine = [p for p in named if (p["location"], p.get("machine_type"), p["stage"]) == (loc, machine_type, stage)]
    utilization = kpi_values(reports, f"pools.{loc}.{machine_type}.utilization") if machine_type else []
    if not utilization:
        utilization = [p.get("utilization", p.get("busy", 0.0)) for p in mine]
    shares = [p["queue_share"] for p in mine if isinstance(p.get("queue_share"), int | float)]
    return {
        "location": loc, "machine_type": machine_type, "stage": stage, "replications": count,
        "utilization": interval(utilization).as_dict(),
        "queue_share": interval(shares).as_dict() if shares else None,
    }
