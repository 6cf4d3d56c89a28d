"""The self-contained HTML report of a single run: KPI cards, the bottleneck, pools, WIP and queues over
time, lead time, stages, the machine Gantt, machines with OEE, and the input assumptions.

Rendered from the run's JSON report (:func:`simulator.reporting.summary.build_report`) and its chart data
(:func:`simulator.reporting.run_charts.run_charts`) only; it loads nothing from elsewhere, and the same
input renders to the same bytes.  :func:`page` is the shell that the replicated and the study reports share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from simulator.reporting import html_sections as sections
from simulator.reporting import svg
from simulator.reporting.gantt_chart import SCRIPT
from simulator.reporting.report_view import View, run_view

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#263238;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #cfd8dc;padding-bottom:4px}
nav{margin:10px 0;font-size:.9em}nav a{margin-right:12px;color:#1565c0;text-decoration:none}
.meta{color:#607d8b}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #cfd8dc;border-radius:6px;padding:10px 14px;min-width:140px}
.card .v{font-size:1.4em;font-weight:600}.card .k{color:#607d8b;font-size:.85em}
.ci{display:block;color:#78909c;font-size:.78em;font-weight:400;white-space:nowrap}
.scroll{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:.86em}caption{text-align:left;font-weight:600;padding:6px 0}
th,td{padding:4px 7px;text-align:right;border-bottom:1px solid #eceff1;vertical-align:top}
th{background:#f5f7f8}th:first-child,td:first-child{text-align:left}
#table-assumptions td,#table-assumptions th,#table-replications td,#table-replications th,#table-route td,
#table-route th,#table-search td:nth-last-child(-n+2),#table-differences td:nth-last-child(-n+2){text-align:left}
#table-assumptions,#table-route,#table-replications,#table-machine-counts{width:auto;min-width:60%}
tr.sub td:first-child{padding-left:22px;color:#607d8b}
tr.bottleneck td{background:#ffebee}tr.answer td{background:#e8f5e9;font-weight:600}
tr.first td{background:#f5f7f8}
.overload{border:2px solid #c62828;background:#ffebee;color:#b71c1c;border-radius:6px;padding:12px 16px;
margin:16px 0}.overload strong{font-size:1.2em;letter-spacing:.05em}
.answer-box{border:2px solid #2e7d32;background:#e8f5e9;border-radius:6px;padding:10px 14px;margin:12px 0}
.no-answer{border-color:#c62828;background:#ffebee}
.warning{color:#b71c1c}
svg.chart{font-size:11px;margin:8px 0;display:block}svg .axis{fill:#607d8b}svg .axis-title{fill:#455a64;
font-size:12px}svg .legend{fill:#455a64}svg .grid{stroke:#eceff1}svg .frame{stroke:#90a4ae;fill:none}
svg text.bottleneck{fill:#c62828;font-weight:600}svg .marker{stroke:#d84315;stroke-dasharray:4 3;fill:#d84315}
svg text.marker{stroke:none}svg .empty{fill:#90a4ae;font-size:16px}svg .warm-up-label{fill:#78909c}
svg .band{opacity:.45}svg .panel-title{fill:#263238;font-weight:600}svg .separator{stroke:#90a4ae}
svg .whisker,svg .ci{stroke:#263238;stroke-width:1.5;fill:none}svg .diamond{fill:#d84315}
svg .point{fill:#1565c0}svg .dot{fill:#5c6bc0;opacity:.6}svg .mean{stroke:#263238;stroke-width:2.5}
svg .ci{stroke:#d84315}svg .zero{stroke:#455a64;stroke-dasharray:3 3}svg .gantt-label{font-size:10px}
.gantt{position:relative}.gantt .tip{position:absolute;background:#263238;color:#fff;padding:4px 8px;
border-radius:4px;font-size:12px;pointer-events:none;white-space:nowrap;z-index:2}
.note{color:#607d8b;font-size:.92em}code{font-size:.9em}
"""


def page(title: str, meta: str, body: Sequence[str], nav: Sequence[tuple[str, str]] = (), *,
         script: bool = True) -> str:
    """The document: head with the style, title, a line of facts, links to the sections, the sections, and
    the Gantt tooltip script when a Gantt is on the page."""
    links = "".join(f'<a href="#{escape(anchor)}">{escape(label)}</a>' for anchor, label in nav)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{meta}</p>',
        f"<nav>{links}</nav>" if links else "",
        *body,
        f"<script>{SCRIPT}</script>" if script else "",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def meta_line(view: View, *extra: str) -> str:
    facts = []
    if view.start_utc:
        facts.append(f"start {escape(view.start_utc)}")
    facts.append(f"{escape(svg.span(view.duration_s))} simulated")
    if view.seed is not None:
        facts.append(f"seed {escape(str(view.seed))}")
    facts.append(f"warm-up {escape(svg.span(view.warm_up_s)) if view.warm_up_s > 0 else 'none'}")
    if view.fingerprint:
        facts.append(f"config <code>{escape(view.fingerprint[:12])}</code>")
    facts.extend(extra)
    return " · ".join(facts)


NAV = [("bottleneck", "bottleneck"), ("pools", "pools"), ("wip", "WIP"), ("queues", "queues"),
       ("lead-time", "lead time"), ("stages", "stages"), ("gantt", "timeline"), ("machines", "machines"),
       ("assumptions", "inputs")]


def report_sections(view: View) -> list[str]:
    """The sections both the single-run and the replicated report show, in order."""
    return [
        sections.bottleneck_section(view),
        sections.pools_section(view),
        sections.wip_section(view),
        sections.queues_section(view),
        sections.lead_time_section(view),
        sections.stages_section(view),
        sections.gantt_section(view),
        sections.machines_section(view),
        sections.assumptions_section(view),
    ]


def render_html(report: Mapping[str, Any], charts: Mapping[str, Any] | None = None) -> str:
    """The HTML report of one run, from its JSON report and its chart data."""
    view = run_view(report, charts)
    title = f"factorysim report · seed {report['seed']}"
    body = [sections.overload_banner(view), sections.cards(view), *report_sections(view)]
    return page(title, meta_line(view, f"schema v{escape(str(report.get('schema_version')))}"), body, NAV)
