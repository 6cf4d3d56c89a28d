"""The study in words: values with their units, the comparison table, the search's answer, and a
one-line progress display on stderr while a study runs."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def is_duration(path: str) -> bool:
    """A KPI measured in seconds: some part of its path ends in ``_s`` (``lead_time_s.p95``)."""
    return any(part.endswith("_s") for part in path.split("."))


def is_share(path: str) -> bool:
    """A KPI that is a share of time (shown as a percentage)."""
    parts = path.split(".")
    if path == "max_utilization" or parts[-1] in ("utilization", "busy", "available_share"):
        return True
    return parts[0] == "pools" and "states" in parts[:-1]


def _duration_unit(seconds: float) -> tuple[float, str]:
    size = abs(seconds)
    if size < 120:
        return 1.0, "s"
    if size < 2 * 3600:
        return 60.0, "min"
    if size < 48 * 3600:
        return 3600.0, "h"
    return 86400.0, "d"


def _number(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{min(digits, 6)}f}"


def format_value(path: str, value: float) -> str:
    """``value`` of the KPI ``path`` with its unit: 6.9 h, 81 %, 1.67."""
    if is_duration(path):
        scale, unit = _duration_unit(value)
        return f"{_number(value / scale)} {unit}"
    if is_share(path):
        return f"{value * 100:.0f} %" if abs(value) >= 0.1 else f"{value * 100:.1f} %"
    return _number(value)


def format_interval(path: str, mean: float, ci95: Sequence[float] | None) -> str:
    """``6.9 h [6.5, 7.3]``: the mean with the interval's bounds in the mean's unit."""
    text = format_value(path, mean)
    if ci95 is None:
        return text
    if is_duration(path):
        scale, _ = _duration_unit(mean)
        return f"{text} [{_number(ci95[0] / scale)}, {_number(ci95[1] / scale)}]"
    if is_share(path):
        return f"{text} [{ci95[0] * 100:.0f}, {ci95[1] * 100:.0f}]"
    return f"{text} [{_number(ci95[0])}, {_number(ci95[1])}]"


def format_plus_minus(path: str, kpi: Mapping[str, Any]) -> str:
    """``6.9 h ± 0.4``: the mean and the half-width in one unit (the larger one's)."""
    mean, half = float(kpi["mean"]), kpi.get("half_width")
    if half is None:
        return format_value(path, mean)
    if is_duration(path):
        scale, unit = _duration_unit(max(abs(mean), float(half)))
        return f"{_number(mean / scale)} {unit} ± {_number(float(half) / scale)}"
    text = format_value(path, mean)
    if is_share(path):
        return f"{text} ± {float(half) * 100:.1f}"
    return f"{text} ± {_number(float(half))}"


def format_difference(path: str, difference: Mapping[str, Any]) -> str:
    """A difference with its sign, ``+1.2 h ± 0.3``."""
    mean = float(difference["mean"])
    text = format_plus_minus(path, {"mean": abs(mean), "half_width": difference.get("half_width")})
    return ("−" if mean < 0 else "+") + text


# --- the comparison table ------------------------------------------------------------------------
def comparison_table(study: Mapping[str, Any]) -> str:
    """Scenario × KPI as mean ± half-width; under each scenario but the first, its difference from
    the first (``*`` when the difference's 95 % interval excludes 0)."""
    kpis: list[str] = list(study["kpis"])
    scenarios = study["scenarios"]
    first = scenarios[0]["name"] if scenarios else ""
    against_first = {(c["b"], c["kpi"]): c for c in study["comparisons"] if c["a"] == first}
    header = ["scenario", *kpis]
    rows: list[list[str]] = []
    for scenario in scenarios:
        result = scenario["result"]
        name = scenario["name"] + ("" if result.get("steady", True) else " (overloaded)")
        rows.append([name, *(format_plus_minus(k, result["kpis"][k]) if k in result["kpis"] else "—"
                             for k in kpis)])
        if scenario["name"] != first:
            cells = []
            for k in kpis:
                comparison = against_first.get((scenario["name"], k))
                cells.append("" if comparison is None else
                             format_difference(k, comparison["difference"])
                             + (" *" if comparison["significant"] else ""))
            rows.append([f"  vs {first}", *cells])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def study_summary(study: Mapping[str, Any]) -> str:
    """What ``factorysim study`` prints: how it ran, the table, the overloads, the search's answer."""
    length = study["length"]
    how_long = f"{length['lots']} lots" if length.get("lots") else f"{format_value('until_s', length['until_s'])}"
    warm = study["warm_up"]
    warm_text = "no warm-up" if not warm.get("warm_up_s") else \
        f"warm-up {format_value('warm_up_s', warm['warm_up_s'])} ({warm.get('method')})"
    replications = study["replications"]
    reps = f"{replications} replications" if isinstance(replications, int) else "replications until precise"
    seeds = "common random numbers" if study["common_random_numbers"] else "independent seeds per scenario"
    lines = [f"study {study['name']!r}: {len(study['scenarios'])} scenarios, {reps} each of {how_long}, "
             f"{warm_text}, {seeds} (seed {study['seed']})", "", comparison_table(study)]
    marks = "paired" if study["common_random_numbers"] else "Welch"
    lines.append(f"(mean ± 95 % half-width; vs: difference from the first scenario, {marks} interval, "
                 f"* = the interval excludes 0)")
    for scenario in study["scenarios"]:
        for overload in scenario["result"].get("overload", []):
            lines.append(f"overload in {scenario['name']!r}: {overload['message']}")
    search = study.get("search")
    if search is not None:
        lines += ["", f"search ({len(search['steps'])} steps): {search['message']}"]
    return "\n".join(lines)


# --- progress ------------------------------------------------------------------------------------
class StudyProgress:
    """``[####------] scenario 2/3 '4 lathes': 7/10 replications  12.3s`` on one line of stderr."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 20) -> None:
        self.stream = stream
        self.width = width
        self.started = time.monotonic()
        self.label = ""

    def stage(self, label: str) -> None:
        self.label = label
        self(0, 0)

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 0.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        counted = f": {done}/{total} replications" if total else ""
        self.stream.write(f"\r\x1b[K[{bar}] {self.label}{counted}  {time.monotonic() - self.started:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
