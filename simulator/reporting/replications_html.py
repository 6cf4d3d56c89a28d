"""The HTML report of replicated runs (``simulate --replications N --report-html``).

The sections of the single-run report, every value the mean over the replications with its 95%
confidence interval (a second line in table cells, whiskers on bars, a band around the WIP and queue
series), preceded by how the replications were run: their number, the warm-up and how it was chosen,
the precision reached, and a dot plot of the per-replication values of the headline KPIs.  The
lead-time histogram and the Gantt are those of replication 1 (``replicated["charts"]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from simulator.reporting import html_sections as sections
from simulator.reporting import svg
from simulator.reporting.html_report import NAV, meta_line, page, report_sections
from simulator.reporting.report_view import Stat, View, interval_stat, replications_view

HEADLINE = (
    ("throughput_per_hour", "throughput (lots/h)"),
    ("lead_time_s.mean", "lead time mean"),
    ("lead_time_s.p95", "lead time p95"),
    ("wip.mean", "mean WIP (lots)"),
)


def kpi_label(path: str) -> str:
    """A KPI path in words where it has well-known ones ("lead time p95"), else the path itself."""
    return dict(HEADLINE).get(path) or {"max_utilization": "highest pool utilisation",
                                        "lead_time_s.p50": "lead time p50", "wip.max": "max WIP (lots)"}.get(path, path)


def _formatter(path: str, stat: Stat) -> sections.Formatter:
    fmt, is_duration = sections.kpi_format(path)
    if not is_duration:
        return fmt
    unit, scale = sections.duration_unit(abs(stat.mean))
    return lambda v: f"{v / scale:,.2f} {unit}"


def headline(view: View, replicated: Mapping[str, Any]) -> list[tuple[str, str, Stat]]:
    """(path, label, stat) of the headline KPIs, and the bottleneck pool's utilisation."""
    out = [(path, label, stat) for path, label in HEADLINE if (stat := view.get(tuple(path.split(".")))) is not None]
    b = view.bottleneck
    if b is not None:
        path = f"pools.{b.location}.{b.machine_type}.utilization"
        stat = interval_stat((replicated.get("kpis") or {}).get(path), nonnegative=True)
        if stat is not None:
            out.append((path, f"utilisation {b.location} · {b.machine_type}", stat))
    return out


def _warm_up_text(warm_up: Mapping[str, Any]) -> str:
    method = warm_up.get("method", "none")
    value = float(warm_up.get("warm_up_s") or 0.0)
    if method == "none":
        text = "none: statistics count from time 0, the empty plant included"
    elif method == "fixed":
        text = f"fixed: statistics count from {svg.span(value)} of simulated time"
    else:
        pilot = warm_up.get("pilot") or {}
        cuts = ", ".join(svg.span(float(t)) for t in pilot.get("truncation_s") or [])
        text = (f"automatic (MSER-5 on the {pilot.get('series', 'wip')} series of a pilot of "
                f"{pilot.get('replications', '?')} runs; truncation points {cuts or 'none'}): statistics count "
                f"from {svg.span(value)}, the largest truncation point")
        if pilot.get("rule"):
            text += f" — {pilot['rule']}"
    if warm_up.get("decided"):
        text += f"; {warm_up['decided']}"
    return escape(text)


def _precision_text(precision: Mapping[str, Any] | None, count: int) -> str:
    if not precision:
        return escape(f"a fixed number of replications ({count})")
    target = float(precision.get("target_relative") or 0.0)
    achieved = precision.get("achieved_relative")
    reached = precision.get("reached")
    kpi = str(precision.get("kpi"))
    text = (f"{kpi_label(kpi)}: 95% half-width within {target:.1%} of the mean asked; "
            + (f"{float(achieved):.1%} reached" if achieved is not None else "no interval")
            + f" after {precision.get('replications', count)} replications")
    if not reached:
        text += f" — the target was NOT reached within the cap of {precision.get('cap')} replications"
    return f'<span class="{"" if reached else "warning"}">{escape(text)}</span>'


def replications_section(view: View, replicated: Mapping[str, Any]) -> str:
    count = int(replicated.get("replications") or 0)
    seeds = [str(s) for s in replicated.get("seeds") or []]
    warm_up = replicated.get("warm_up") or {}
    rows: list[tuple[Sequence[str], str]] = [
        (["replications", escape(f"{count} (on {replicated.get('jobs', '?')} worker processes)")], ""),
        (["seeds", escape(", ".join(seeds[:8]) + (f", … ({len(seeds)} in all)" if len(seeds) > 8 else ""))], ""),
        (["run length", sections._length(replicated.get("length"))], ""),
        (["warm-up", _warm_up_text(warm_up)], ""),
        (["precision", _precision_text(replicated.get("precision"), count)], ""),
    ]
    rows += [(["warning", f'<span class="warning">{escape(str(w))}</span>'], "") for w in warm_up.get("warnings") or []]
    kpis = headline(view, replicated)
    headline_rows = []
    dots = []
    for path, label, stat in kpis:
        fmt = _formatter(path, stat)
        data = (replicated.get("kpis") or {}).get(path) or {}
        half = data.get("half_width")
        relative = f"{float(half) / abs(stat.mean):.1%}" if half is not None and stat.mean else "—"
        headline_rows.append(([escape(label), escape(fmt(stat.mean)),
                               escape(fmt(float(data["sd"]))) if data.get("sd") is not None else "—",
                               escape(f"{fmt(stat.low)} – {fmt(stat.high)}") if stat.low is not None
                               and stat.high is not None else "—", escape(relative),
                               escape(str(data.get("n", len(stat.values)))), ], ""))
        dots.append(svg.Dots(label, stat.values, stat.mean, stat.low, stat.high, fmt))
    return sections.section(
        "replications", "Replications, warm-up and precision",
        sections.table("table-replications", ["how the replications ran", ""], rows),
        sections.table("table-headline", ["KPI", "mean", "sd", "95% CI", "half-width / mean", "n"], headline_rows),
        sections.note("Each dot is one replication; the bar is their mean and the whiskers its 95% confidence "
                      "interval (Student t over the replications). Throughout the report an interval of a "
                      "quantity that cannot be negative is shown cut at 0."),
        svg.dot_rows("chart-replications", dots, "Headline KPIs per replication"),
    )


def render_replications_html(replicated: Mapping[str, Any]) -> str:
    """The HTML report of a replicated run, from its JSON (README "Capacity studies")."""
    view = replications_view(replicated)
    count = replicated.get("replications")
    title = f"factorysim replicated report · {count} replications · seed {replicated.get('seed')}"
    meta = meta_line(view, f"{escape(str(count))} replications", "95% confidence intervals (Student t)")
    body = [sections.overload_banner(view), sections.cards(view), replications_section(view, replicated),
            *report_sections(view)]
    return page(title, meta, body, [("replications", "replications"), *NAV])
