"""The text summary of replications (what `factorysim simulate --replications N` prints): the
headline KPIs as mean ± half-width [low, high], the warm-up, the precision reached, overloaded pools
and the bottleneck."""

from __future__ import annotations

import math
from typing import Any

from simulator.progress import count_of, human_duration

HEADLINE = (
    ("throughput_per_hour", "throughput", "lots/h"),
    ("lead_time_s.mean", "lead time mean", "duration"),
    ("lead_time_s.p50", "lead time p50", "duration"),
    ("lead_time_s.p95", "lead time p95", "duration"),
    ("wip.mean", "WIP mean", "lots"),
    ("lots.completed", "lots completed", "lots"),
)
_UNITS = ((120.0, 1.0, "s"), (7200.0, 60.0, "min"), (172800.0, 3600.0, "h"), (float("inf"), 86400.0, "d"))


def _duration_unit(seconds: float) -> tuple[float, str]:
    return next((scale, name) for limit, scale, name in _UNITS if abs(seconds) < limit)


def _decimals(spread: float, value: float) -> int:
    """Decimals that show two significant digits of ``spread`` (of ``value`` when there is none)."""
    reference = abs(spread) or abs(value) / 10
    if reference == 0:
        return 0
    return min(6, max(0, 1 - math.floor(math.log10(reference))))


def interval_text(entry: dict[str, Any], unit: str) -> str:
    """``mean ± half-width unit [low, high]`` (durations in one unit chosen by the mean; as many
    decimals as the half-width's two significant digits need)."""
    scale, name = _duration_unit(entry["mean"]) if unit == "duration" else (1.0, unit)
    mean = entry["mean"] / scale
    if entry.get("ci95") is None:
        return f"{mean:,.{_decimals(0.0, mean)}f} {name} (one replication: no interval)"
    half = entry["half_width"] / scale
    places = _decimals(half, mean)
    low, high = (f"{v / scale:,.{places}f}" for v in entry["ci95"])
    return f"{mean:,.{places}f} ± {half:,.{places}f} {name}  [{low}, {high}]"


def warm_up_text(warm_up: dict[str, Any]) -> str:
    method, seconds = warm_up["method"], float(warm_up["warm_up_s"])
    if method == "none":
        return "warm-up: none (statistics from time 0, the empty plant included)"
    if method == "fixed":
        return f"warm-up: {human_duration(seconds)} (fixed)"
    runs = int((warm_up.get("pilot") or {}).get("replications", 1))
    pilot = "a pilot run" if runs == 1 else f"a pilot of {runs} runs, the longest of their cuts"
    return f"warm-up: {human_duration(seconds)} (MSER-5 on the WIP of {pilot})"


def precision_text(precision: dict[str, Any]) -> str:
    achieved = precision["achieved_relative"]
    got = "undefined" if achieved is None else f"±{achieved:.1%}"
    target = f"target ±{precision['target_relative']:.1%}"
    if precision["reached"]:
        return (f"precision: {precision['kpi']} {got} ({target}) reached with "
                f"{count_of(precision['replications'], 'replication')}")
    return (f"precision: {precision['kpi']} {got} ({target}) NOT reached: stopped at the cap of "
            f"{count_of(precision['cap'], 'replication')}")


def replications_text(replicated: dict[str, Any]) -> str:
    length = replicated["length"]
    how_long = (f"{human_duration(length['until_s'])} each" if length["until_s"] is not None
                else f"{count_of(length['lots'], 'lot')} each")
    lines = [f"{count_of(replicated['replications'], 'replication')} of {how_long} (run seed {replicated['seed']}, "
             f"{count_of(replicated['jobs'], 'job')}), {replicated['confidence']:.0%} confidence intervals",
             warm_up_text(replicated["warm_up"])]
    lines += [f"warning: {w}" for w in replicated["warm_up"].get("warnings", [])]
    if replicated.get("precision"):
        lines.append(precision_text(replicated["precision"]))
    kpis = replicated["kpis"]
    width = max(len(label) for _, label, _ in HEADLINE)
    lines += [f"  {label:<{width}}  {interval_text(kpis[path], unit)}" for path, label, unit in HEADLINE
              if path in kpis]
    bottleneck = replicated.get("bottleneck")
    if bottleneck:
        share = bottleneck.get("queue_share")
        lines.append(
            f"bottleneck: {bottleneck['location']} {bottleneck['machine_type']} (stage {bottleneck['stage']}), "
            f"named in {bottleneck['replications']} of {replicated['replications']} replications; utilisation "
            f"{_percent(bottleneck['utilization'])}"
            + (f", share of all waiting {_percent(share)}" if share else ""))
    for pool in replicated.get("overload") or []:
        lines.append(f"OVERLOAD in {pool['replications']} of {replicated['replications']} replications: "
                     f"{pool['message']}")
    if not replicated.get("steady", True):
        lines.append("not steady: the means of lead time and WIP grow with the run length and describe the run, "
                     "not the plant")
    return "\n".join(lines)


def _percent(entry: dict[str, Any]) -> str:
    if entry.get("ci95") is None:
        return f"{entry['mean']:.1%}"
    return f"{entry['mean']:.1%} ± {entry['half_width']:.1%}"
