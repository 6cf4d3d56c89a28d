"""The HTML comparison page of a study (``factorysim study FILE``).

Scenarios side by side: a scenarios × KPIs table with 95% confidence intervals, a chart per KPI with one
row per scenario (the mean and its interval), the differences against the first scenario (and between
every pair when there are few) with their intervals and whether they are significant, any overloaded
scenario, and the what-if search: every step it evaluated and its answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from simulator.reporting import html_sections as sections
from simulator.reporting import svg
from simulator.reporting.html_report import page
from simulator.reporting.replications_html import kpi_label
from simulator.reporting.report_view import Stat, interval_stat


def _unit(path: str, stats: Sequence[Stat]) -> tuple[svg.Scale, sections.Formatter]:
    """One scale for a KPI across scenarios: durations in a common unit, shares in percent."""
    fmt, is_duration = sections.kpi_format(path)
    label = kpi_label(path)
    if is_duration:
        unit, scale = svg.duration_unit(max((abs(s.mean) for s in stats), default=0.0))
        return (svg.Scale(f"{label} ({unit})", scale, lambda v: f"{v / scale:,.2f} {unit}"),
                lambda v: f"{v / scale:,.2f} {unit}")
    if fmt is sections.fmt_pct:
        return svg.Scale(label, 1.0, fmt, percent=True), fmt
    return svg.Scale(label, 1.0, fmt), fmt


def _with_ci(stat: Stat | None, fmt: sections.Formatter) -> str:
    if stat is None:
        return "—"
    main = escape(fmt(stat.mean))
    if stat.low is not None and stat.high is not None and stat.high > stat.low:  # (equal values: no interval to show)
        return f'{main}<span class="ci">{escape(fmt(stat.low))} – {escape(fmt(stat.high))}</span>'
    return main


def _overrides(overrides: Mapping[str, Any] | None) -> str:
    if not overrides:
        return '<span class="note">none</span>'
    return "<br>".join(f"<code>{escape(str(k))}: {escape(str(v))}</code>" for k, v in overrides.items())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def scenarios_section(study: Mapping[str, Any]) -> str:
    kpis: list[str] = list(study.get("kpis") or [])
    scenarios = study.get("scenarios") or []
    stats = {path: [interval_stat((s["result"].get("kpis") or {}).get(path), nonnegative=True) for s in scenarios]
             for path in kpis}
    formats = {path: _unit(path, [x for x in stats[path] if x is not None])[1] for path in kpis}
    rows = []
    for i, scenario in enumerate(scenarios):
        result = scenario["result"]
        b = result.get("bottleneck") or {}
        bottleneck = f"{b.get('location')} · {b.get('machine_type')}" if b else "—"
        steady = "yes" if result.get("steady", True) else '<strong class="warning">OVERLOADED</strong>'
        rows.append(([f"<strong>{escape(scenario['name'])}</strong>", _overrides(scenario.get("overrides")),
                      escape(str(result.get("replications", "—"))),
                      *(_with_ci(stats[path][i], formats[path]) for path in kpis),
                      escape(bottleneck), steady], "first" if i == 0 else ""))
    headers = ["scenario", "overrides", "replications", *(kpi_label(p) for p in kpis), "bottleneck", "steady"]
    charts = []
    for k, path in enumerate(kpis):
        present = [(s["name"], x) for s, x in zip(scenarios, stats[path], strict=True) if x is not None]
        scale, fmt = _unit(path, [x for _, x in present])
        rows_ = [svg.Interval(name, x.mean, x.low, x.high, tip=f"{name}: {fmt(x.mean)}"
                              + (f" (95% CI {fmt(x.low)} – {fmt(x.high)})" if x.low is not None and x.high is not None
                                 else "")) for name, x in present]
        charts.append(f'<h3 id="kpi-{_slug(path)}">{escape(kpi_label(path))}</h3>')
        charts.append(svg.interval_chart(f"chart-kpi-{k + 1}", rows_, scale, f"{kpi_label(path)} per scenario",
                                         bars=False))
    return sections.section(
        "scenarios", "Scenarios",
        sections.note("The mean over the replications of each scenario and, under it, its 95% confidence interval."),
        sections.table("table-scenarios", headers, rows),
        sections.note("One chart per KPI: a dot at each scenario's mean, whiskers for its 95% confidence interval."),
        *charts,
    )


def _signed(fmt: sections.Formatter, *, points: bool) -> sections.Formatter:
    """A difference with its sign; of shares in percentage points."""
    if points:
        return lambda v: f"{v * 100:+.1f} points"
    return lambda v: fmt(v) if fmt(v).startswith("-") else "+" + fmt(v)


def differences_section(study: Mapping[str, Any]) -> str:
    comparisons = study.get("comparisons") or []
    rows = []
    for c in comparisons:
        path = str(c["kpi"])
        a, b = interval_stat({"mean": c.get("a_mean")}), interval_stat({"mean": c.get("b_mean")})
        diff = interval_stat(c.get("difference"))
        stats = [x for x in (a, b) if x is not None]
        _, fmt = _unit(path, stats)
        fmt_diff = _signed(fmt, points=sections.kpi_format(path)[0] is sections.fmt_pct)
        relative = c.get("relative")
        significant = c.get("significant")
        rows.append(([escape(str(c["a"])), escape(str(c["b"])), escape(kpi_label(path)),
                      escape(fmt(a.mean)) if a else "—", escape(fmt(b.mean)) if b else "—",
                      _with_ci(diff, fmt_diff),
                      escape(f"{float(relative):+.1%}") if relative is not None else "—",
                      "paired (common random numbers)" if c.get("paired") else "Welch (independent seeds)",
                      "<strong>yes</strong>" if significant else "no"], "significant" if significant else ""))
    headers = ["a", "b", "KPI", "mean a", "mean b", "difference b − a (95% CI)", "relative", "interval",
               "significant"]
    return sections.section(
        "differences", "Differences between scenarios",
        sections.note("b − a with its 95% confidence interval; significant when the interval excludes 0. With "
                      "common random numbers replication i of every scenario ran on the same seed, so the "
                      "difference is estimated pair by pair and its interval is narrow."),
        sections.table("table-differences", headers, rows),
    )


def search_section(study: Mapping[str, Any]) -> str:
    search = study.get("search")
    if not search:
        return ""
    steps = search.get("steps") or []
    pools = list(search.get("pools") or {})
    paths = list(dict.fromkeys(p for step in steps for p in (step.get("kpis") or {})))
    rows: list[tuple[Sequence[str], str]] = []
    answer = search.get("answer")
    answer_machines = (answer or {}).get("machines")
    for step in steps:
        machines = step.get("machines") or {}
        kpis = step.get("kpis") or {}
        cells = []
        for path in paths:
            stat = interval_stat(kpis.get(path), nonnegative=True)
            cells.append(_with_ci(stat, _unit(path, [stat] if stat else [])[1]))
        meets = "yes" if step.get("meets") else "no"
        cls = "answer" if answer_machines is not None and machines == answer_machines and step.get("meets") else ""
        number = step["step"] + 1 if isinstance(step.get("step"), int) else len(rows) + 1
        rows.append(([escape(str(number)),
                      *(escape(str(machines.get(p, "—"))) for p in pools),
                      *cells, meets, escape(str(step.get("action") or "")), escape(str(step.get("reason") or ""))],
                     cls))
    headers = ["step", *pools, *(kpi_label(p) for p in paths), "meets", "why this step", "outcome"]
    targets = ", ".join(str(t) for t in search.get("targets") or [])
    judge = search.get("judge", "confident")
    judged = ("the 95% confidence bound must meet each target" if judge == "confident"
              else "the mean must meet each target")
    bounds = ", ".join(f"{p} {lo}–{hi}" for p, (lo, hi) in (search.get("pools") or {}).items())
    box_class = "answer-box" if answer else "answer-box no-answer"
    machines = ", ".join(f"{p}: {n}" for p, n in (answer_machines or {}).items())
    return sections.section(
        "search", "What-if search",
        sections.note(escape(f"The fewest machines per pool within {bounds} that meet {targets} ({judged}), "
                             f"starting from scenario {search.get('scenario', '—')}; each step judged with "
                             "replications.")),
        f'<div id="search-answer" class="{box_class}"><strong>{"Answer" if answer else "No answer"}:</strong> '
        f"{escape(str(search.get('message', '')))}"
        + (f"<br>machines: {escape(machines)}" if machines else "") + "</div>",
        sections.table("table-search", headers, rows),
    )


def _overload_banner(study: Mapping[str, Any]) -> str:
    items = []
    for s in study.get("scenarios") or []:
        result = s["result"]
        if not result.get("steady", True):
            messages = [o.get("message", "") for o in result.get("overload") or []] or ["a pool cannot keep up"]
            items += [f"<li><strong>{escape(s['name'])}</strong>: {escape(m)}</li>" for m in messages]
    if not items:
        return ""
    return ('<div id="banner-overload" class="overload" role="alert"><strong>OVERLOADED</strong> — in these '
            f"scenarios a pool's queue grows without bound:<ul>{''.join(items)}</ul>Their lead-time and WIP "
            "means depend on the run length, not the plant.</div>")


def render_study_html(study: Mapping[str, Any]) -> str:
    """The study's comparison page, from the study JSON (README "Studies")."""
    length = sections._length(study.get("length"))
    warm_up = study.get("warm_up") or {}
    precision = study.get("precision")
    replications = (f"precision {escape(str(precision))}" if precision
                    else f"{escape(str(study.get('replications')))} replications per scenario")
    warm = (escape(svg.span(float(warm_up.get("warm_up_s") or 0.0))) + f" ({escape(str(warm_up.get('method')))})"
            if warm_up.get("warm_up_s") else "none")
    meta = " · ".join([
        f"study file <code>{escape(str(study.get('file')))}</code>",
        f"base <code>{escape(str(study.get('base')))}</code>",
        f"seed {escape(str(study.get('seed')))}",
        replications,
        f"length {length}",
        f"warm-up {warm}",
        "common random numbers" if study.get("common_random_numbers") else "independent seeds per scenario",
    ])
    body = [_overload_banner(study), scenarios_section(study), differences_section(study), search_section(study)]
    nav = [("scenarios", "scenarios"), ("differences", "differences")] + ([("search", "search")]
                                                                        if study.get("search") else [])
    return page(f"Study · {study.get('name')}", meta, body, nav, script=False)
