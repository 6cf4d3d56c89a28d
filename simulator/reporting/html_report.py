"""The self-contained HTML report: KPI cards, charts (inline SVG) and tables.

Built from a finished run and its JSON report (:func:`simulator.reporting.summary.build_report`);
it needs no network, scripts or external files, and the same run renders to the same bytes.
"""

from __future__ import annotations

from html import escape
from typing import Any

from simulator.model.simulation import Simulation
from simulator.reporting import svg

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#263238;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #cfd8dc;padding-bottom:4px}
.meta{color:#607d8b}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #cfd8dc;border-radius:6px;padding:10px 14px;min-width:140px}
.card .v{font-size:1.5em;font-weight:600}.card .k{color:#607d8b;font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{padding:4px 8px;text-align:right;
border-bottom:1px solid #eceff1}th:first-child,td:first-child{text-align:left}
tr.bottleneck td{background:#ffebee;font-weight:600}
svg.chart{font-size:11px;margin:8px 0}svg .axis{fill:#607d8b}svg text.bottleneck{fill:#c62828;font-weight:600}
svg .legend.running{fill:#2e7d32}svg .legend.blocked{fill:#c62828}svg .marker{fill:#d84315}
svg .empty{fill:#90a4ae;font-size:16px}.note{color:#607d8b;font-style:italic}
"""


def _card(label: str, value: str) -> str:
    return f'<div class="card"><div class="v">{escape(value)}</div><div class="k">{escape(label)}</div></div>'


def _table(headers: list[str], rows: list[tuple[list[str], str]], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for cells, cls in rows:
        klass = f' class="{cls}"' if cls else ""
        body.append(f"<tr{klass}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _cards(report: dict[str, Any]) -> str:
    lots = report["lots"]
    lead = report["lead_time_s"]
    bottleneck = report["bottleneck"]
    cards = [
        _card("simulated time", svg.hours(report["sim_duration_s"])),
        _card("lots received", str(lots["received"])),
        _card("lots completed", str(lots["completed"])),
        _card("lots scrapped", str(lots["scrapped"])),
        _card("reworks", str(lots["reworks"])),
        _card("throughput", f"{report['throughput_per_hour']:.2f} lots/h"),
        _card("lead time p50", svg.duration(lead["p50"])),
        _card("lead time p95", svg.duration(lead["p95"])),
        _card("mean WIP", f"{report['wip']['mean']:.1f} lots"),
        _card("bottleneck", bottleneck["stage"] if bottleneck else "none"),
    ]
    return '<div class="cards">' + "".join(cards) + "</div>"


def _utilization_chart(report: dict[str, Any]) -> str:
    bottleneck = report["bottleneck"]
    pool = bottleneck["pool"] if bottleneck else None
    bars = []
    for stage, data in report["stages"].items():
        for loc, loc_data in data["by_location"].items():
            running = loc_data["utilization"]
            highlight = pool is not None and pool["stage"] == stage and pool["location"] == loc
            bars.append(svg.Bar(f"{stage} · {loc}", running, max(0.0, loc_data["busy"] - running), highlight))
    return svg.utilization_bars("chart-utilization", bars, "Utilisation per machine pool")


def _stage_table(report: dict[str, Any]) -> str:
    bottleneck = report["bottleneck"]
    rows = []
    for stage, data in report["stages"].items():
        cls = "bottleneck" if bottleneck and bottleneck["stage"] == stage else ""
        wait = data["wait_s"]
        rows.append(([stage, data["machine_type"], str(data["cycles"]), _pct(data["utilization"]),
                      _pct(data["busy"]), svg.duration(wait["mean"]), svg.duration(wait["p95"]),
                      svg.duration(data["process_s"]["mean"])], cls))
    return _table(["stage", "machine type", "cycles", "utilisation", "busy", "mean wait", "p95 wait",
                   "mean processing"], rows, "table-stages")


def _machine_table(report: dict[str, Any]) -> str:
    rows = []
    for machine_id, m in report["machines"].items():
        rows.append(([machine_id, m["location"], m["type"], str(m["cycles"]), _pct(m["utilization"]),
                      _pct(m["availability"]), _pct(m["performance"]), _pct(m["quality"]), _pct(m["oee"]),
                      svg.hours(m["blocked_s"]), str(m["maintenances"])], ""))
    return _table(["machine", "location", "type", "cycles", "utilisation", "availability", "performance",
                   "quality", "OEE", "blocked", "maintenances"], rows, "table-machines")


def _gantt(sim: Simulation) -> str:
    timeline = sim.timeline
    if timeline is None:
        return '<p class="note" id="chart-gantt">No machine timeline was recorded for this run.</p>'
    end = min(timeline.end, sim.now)
    if end <= timeline.start:
        return '<p class="note" id="chart-gantt">The run ended before the Gantt window began.</p>'
    machines = sorted(sim.plant.machines)
    note = (f'<p class="note">Window {svg.hours(timeline.start)} – {svg.hours(end)} of simulated time; '
            "idle time is blank.</p>")
    return note + svg.gantt("chart-gantt", machines, timeline.intervals, (timeline.start, end),
                            "Machine states over time")


def render_html(sim: Simulation, report: dict[str, Any]) -> str:
    lead = report["lead_time_s"]
    title = f"factorysim report · seed {report['seed']}"
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Start {escape(report["start_utc"])} · {svg.hours(report["sim_duration_s"])} simulated · '
        f'locations {escape(", ".join(sim.config.locations))} · schema v{report["schema_version"]}</p>',
        _cards(report),
        "<h2>Utilisation per pool</h2>",
        '<p class="note">Share of scheduled time each pool spent running (green) and blocked (red).</p>',
        _utilization_chart(report),
        "<h2>Work in progress</h2>",
        svg.step_chart("chart-wip", [(i * report["series"]["bucket_s"], w)
                                     for i, w in enumerate(report["series"]["wip"])], sim.now,
                       "Lots in progress over simulated time", "lots in progress"),
        "<h2>Lead time</h2>",
        svg.histogram("chart-lead-time", sim.stats.lead_time.values, "Lead time of completed lots",
                      markers=[("p50", lead["p50"]), ("p95", lead["p95"])]),
        "<h2>Machine timeline</h2>",
        _gantt(sim),
        "<h2>Stages</h2>",
        _stage_table(report),
        "<h2>Machines</h2>",
        _machine_table(report),
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"
