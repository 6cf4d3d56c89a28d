"""The sections of the HTML reports, shared by the single-run and the replicated report.

Each section reads a :class:`~simulator.reporting.report_view.View`; where the view is replicated every
value comes with its 95% confidence interval (a second line in a table cell, whiskers on bars, a band
around a series).  Tables and charts carry ids (``table-…``, ``chart-…``) and list machines and pools in
the report's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from simulator.reporting import svg
from simulator.reporting.gantt_chart import gantt_html
from simulator.reporting.report_view import Band, Series, Stat, View
from simulator.reporting.timeaxis import time_axis

Cell = str  # an HTML fragment, already escaped


# --- values ----------------------------------------------------------------------------------------
def _pct(v: float) -> str:
    return f"{v:.1%}".replace("%", " %")


def _dur_in(seconds: float, unit: str, scale: float) -> str:
    return f"{seconds / scale:,.1f} {unit}"


def duration_unit(seconds: float) -> tuple[str, float]:
    """Hours from an hour up, minutes from a minute up, else seconds."""
    if seconds >= 3600:
        return "h", 3600.0
    return ("min", 60.0) if seconds >= 60 else ("s", 1.0)


def _dur(seconds: float) -> str:
    unit, scale = duration_unit(abs(seconds))
    return _dur_in(seconds, unit, scale)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h"


Formatter = Callable[[float], str]


def fmt_pct(v: float) -> str:
    return _pct(v)


def fmt_num(digits: int) -> Formatter:
    return lambda v: f"{v:,.{digits}f}"


_PERCENT_WORDS = ("utilization", "busy", "share", "availability", "performance", "quality", "oee", "states.")


def kpi_format(path: str) -> tuple[Formatter, bool]:
    """How a KPI of this dotted path reads: (formatter, is a duration in seconds)."""
    leaf = path.rsplit(".", 1)[-1]
    if "_s." in path or leaf.endswith("_s") or path.endswith("_s"):
        return _dur, True
    if any(word in path for word in _PERCENT_WORDS):
        return fmt_pct, False
    if "per_hour" in leaf:
        return fmt_num(3), False
    return fmt_num(2), False


def kpi_cell(stat: Stat | None, path: str) -> Cell:
    fmt, is_duration = kpi_format(path)
    return cell(stat, fmt, duration=is_duration)


def cell(stat: Stat | None, fmt: Formatter, *, duration: bool = False) -> Cell:
    """A value, and under it its 95% interval when it has one ("—" when the report lacks it)."""
    if stat is None:
        return "—"
    if duration:
        unit, scale = duration_unit(abs(stat.mean))

        def fmt(v: float) -> str:
            return _dur_in(v, unit, scale)
    main = escape(fmt(stat.mean))
    if stat.low is not None and stat.high is not None and stat.high > stat.low:  # (equal values: no interval to show)
        return f'{main}<span class="ci">{escape(fmt(stat.low))} – {escape(fmt(stat.high))}</span>'
    return main


def inline(stat: Stat | None, fmt: Formatter) -> Cell:
    """A value in a sentence: "8.96 (95% CI 5.26 – 12.66)" when it has an interval."""
    if stat is None:
        return "—"
    if stat.low is not None and stat.high is not None and stat.high > stat.low:  # (equal values: no interval to show)
        return escape(f"{fmt(stat.mean)} (95% CI {fmt(stat.low)} – {fmt(stat.high)})")
    return escape(fmt(stat.mean))


def table(table_id: str, headers: Sequence[str], rows: Sequence[tuple[Sequence[Cell], str]], *,
          caption: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for cells, cls in rows:
        klass = f' class="{cls}"' if cls else ""
        body.append(f"<tr{klass}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table id="{escape(table_id)}">{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def note(content: str, *, element_id: str = "") -> str:
    ident = f' id="{element_id}"' if element_id else ""
    return f'<p class="note"{ident}>{content}</p>'


def section(section_id: str, title: str, *parts: str) -> str:
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def pool_name(location: str, machine_type: str) -> str:
    return f"{location} · {machine_type}"


def _is_bottleneck(view: View, location: str, machine_type: str) -> bool:
    b = view.bottleneck
    return b is not None and (b.location, b.machine_type) == (location, machine_type)


# --- banner, cards, bottleneck ---------------------------------------------------------------------
def overload_banner(view: View) -> str:
    if view.steady:
        return ""
    items = "".join(f"<li>{escape(m)}</li>" for m in view.overload) or "<li>a pool cannot keep up</li>"
    return ('<div id="banner-overload" class="overload" role="alert"><strong>OVERLOADED</strong> — '
            "at least one machine pool receives more work than it can do: its queue grows for as long as the "
            f"run lasts.<ul>{items}</ul>The lead-time and WIP means below therefore describe this run's length, "
            "not the plant; add machines or lower the arrival rate (see the pools table).</div>")


def _card(label: str, stat: Stat | None, fmt: Formatter, *, duration: bool = False) -> str:
    return f'<div class="card"><div class="v">{cell(stat, fmt, duration=duration)}</div><div class="k">' \
           f"{escape(label)}</div></div>"


def cards(view: View) -> str:
    v = view.value
    bottleneck = view.bottleneck
    name = pool_name(bottleneck.location, bottleneck.machine_type) if bottleneck else "none"
    items = [
        _card("lots received", v("lots", "received"), fmt_num(0)),
        _card("lots completed", v("lots", "completed"), fmt_num(0)),
        _card("lots scrapped", v("lots", "scrapped"), fmt_num(0)),
        _card("throughput (lots/h)", v("throughput_per_hour"), fmt_num(3)),
        _card("lead time mean", v("lead_time_s", "mean"), _dur, duration=True),
        _card("lead time p95", v("lead_time_s", "p95"), _dur, duration=True),
        _card("mean WIP (lots)", v("wip", "mean"), fmt_num(1)),
        _card("max WIP (lots)", v("wip", "max"), fmt_num(0)),
        f'<div class="card"><div class="v">{escape(name)}</div><div class="k">bottleneck</div></div>',
    ]
    return '<div class="cards" id="kpi-cards">' + "".join(items) + "</div>"


def bottleneck_section(view: View) -> str:
    b = view.bottleneck
    if b is None:
        return section("bottleneck", "Bottleneck", note("No pool worked in this run."))
    parts = [
        f"<p><strong>{escape(pool_name(b.location, b.machine_type))}</strong>"
        f"{' (stage ' + escape(b.stage) + ')' if b.stage else ''}: utilisation "
        f"{inline(b.utilization, fmt_pct)}, and {inline(b.queue_share, fmt_pct)} of all the time lots spent waiting "
        "was spent in its queue.</p>",
        note("The bottleneck is the busiest pool (running and blocked share of its scheduled time); its queue "
             "share tells how much of the plant's waiting it causes." + (f" It was {escape(b.note)}." if b.note
                                                                         else "")),
    ]
    return section("bottleneck", "Bottleneck", *parts)


# --- pools -----------------------------------------------------------------------------------------
def pools_section(view: View) -> str:
    v = view.value
    stacks = []
    rows = []
    for loc, mtype in view.pools:
        base = ("pools", loc, mtype)
        segments = []
        for state in svg.STATES:
            share = v(*base, "states", state)
            hours_ = v(*base, "state_hours", state)
            if share is None:
                continue
            tip = f"{pool_name(loc, mtype)}: {svg.state_label(state)} {_pct(share.mean)}"
            if hours_ is not None:
                tip += f" ({hours_.mean:,.1f} machine-h)"
            segments.append((state, share.mean, tip))
        highlight = _is_bottleneck(view, loc, mtype)
        stacks.append(svg.Stack(pool_name(loc, mtype), segments, highlight))
        rows.append(([escape(loc), escape(mtype), escape(", ".join(view.pool_stages.get((loc, mtype), []))),
                      cell(v(*base, "machines"), fmt_num(0)), cell(v(*base, "utilization"), fmt_pct),
                      cell(v(*base, "load"), fmt_num(2)),
                      *(cell(v(*base, "state_hours", s), fmt_num(1)) for s in svg.STATES),
                      cell(v(*base, "queue_length_mean"), fmt_num(2)), cell(v(*base, "queue_length_max"), fmt_num(0)),
                      cell(v(*base, "wait_s", "mean"), _dur, duration=True),
                      cell(v(*base, "wait_s", "p95"), _dur, duration=True)],
                     "bottleneck" if highlight else ""))
    headers = ["location", "machine type", "stages", "machines", "utilisation", "load",
               *(f"{svg.state_label(s)} (machine-h)" for s in svg.STATES),
               "mean queue", "max queue", "mean wait", "p95 wait"]
    return section(
        "pools", "Machine pools",
        note("Where each pool's machine time went over the observed period (after any warm-up): running, "
             "blocked (breakdowns, stoppages), maintenance, off-shift and idle. Load = work offered / machine "
             "time available; at 1 or more the pool cannot keep up."),
        svg.stacked_bars("chart-pool-states", stacks, "Machine time per pool by state"),
        table("table-pools", headers, rows),
    )


# --- series over time ------------------------------------------------------------------------------
def _merge(values: Sequence[float | None], factor: int) -> list[float | None]:
    """Means of ``factor`` neighbouring buckets (the time-average of the wider bucket when they are equally
    wide; the missing ones left out, None when all are)."""
    if factor <= 1:
        return list(values)
    out: list[float | None] = []
    for i in range(0, len(values), factor):
        known = [v for v in values[i:i + factor] if v is not None]
        out.append(sum(known) / len(known) if known else None)
    return out


def _line(series: Series, band: Band, label: str, *, max_points: int, scale: float = 1.0) -> tuple[svg.Line, float]:
    """A bucketed series as a line (its neighbouring buckets merged so that at most ``max_points`` remain, as
    a chart cannot show more than its width) and the width of the buckets drawn."""
    count = len(band.mean)
    factor = max(1, -(-count // max_points))
    coarse = Series(series.bucket_s * factor, series.end_s, series.wip, {}, {})
    mean = _merge(band.mean, factor)
    times = coarse.times(len(mean))
    points = [(t, None if v is None else v / scale) for t, v in zip(times, mean, strict=True)]
    edges: list[tuple[float, float | None, float | None]] = []
    if band.low and band.high:
        low, high = _merge(band.low, factor), _merge(band.high, factor)
        edges = [(t, None if lo is None else lo / scale, None if hi is None else hi / scale)
                 for t, lo, hi in zip(times, low, high, strict=False)]
    return svg.Line(label, points, edges), coarse.bucket_s


def wip_section(view: View) -> str:
    series = view.series
    if series is None or not series.wip.mean:
        return section("wip", "Work in progress", note("This report carries no WIP series.", element_id="chart-wip"))
    axis = time_axis(0.0, series.end_s, start_utc=view.start_utc)
    line, bucket = _line(series, series.wip, "mean over replications" if view.replicated else "WIP", max_points=800)
    chart = svg.line_chart("chart-wip", line, axis, title="Lots in the plant over simulated time",
                           y_title="lots in progress", integer=True, warm_up_s=view.warm_up_s)
    v = view.value
    text = (f"Time-average number of lots in the plant per {svg.duration(bucket)} bucket"
            f"{', the mean of the replications with its 95% band' if view.replicated else ''}. Over the observed "
            f"period the exact time-weighted mean is {inline(v('wip', 'mean'), fmt_num(2))} lots and the maximum "
            f"{inline(v('wip', 'max'), fmt_num(0))}.")
    if view.warm_up_s > 0:
        text += f" The shaded warm-up ({escape(svg.span(view.warm_up_s))}) is shown but not counted."
    return section("wip", "Work in progress", chart, note(text))


def queues_section(view: View) -> str:
    series = view.series
    if series is None or not series.queues:
        return section("queues", "Queues over time",
                       note("This report carries no per-pool series.", element_id="chart-queues"))
    pools = [p for p in view.pools if p in series.queues] or list(series.queues)
    axis = time_axis(0.0, series.end_s, start_utc=view.start_utc, max_ticks=4)
    queue_panels, wait_panels = [], []
    bucket = series.bucket_s
    peak_wait = max((w for p in pools for w in series.waits.get(p, Band([])).mean if w is not None), default=0.0)
    unit, scale = svg.duration_unit(peak_wait)
    for pool in pools:
        queue, bucket = _line(series, series.queues[pool], "queue", max_points=240)
        wait, _ = _line(series, series.waits.get(pool, Band([])), "wait", max_points=240, scale=scale)
        queue_panels.append(svg.Panel(pool_name(*pool), queue, _is_bottleneck(view, *pool)))
        wait_panels.append(svg.Panel(pool_name(*pool), wait, _is_bottleneck(view, *pool)))
    return section(
        "queues", "Queues over time",
        note(f"Lots waiting in each pool's queue: the time-average per {escape(svg.duration(bucket))} "
             f"(one panel per pool, all on the same scale; time axis: {escape(axis.title)})."),
        svg.small_multiples("chart-queues", queue_panels, axis, title="Queue length per pool",
                            y_title="lots waiting", integer=True, warm_up_s=view.warm_up_s),
        note(f"Mean waiting time of the lots that started service in each {escape(svg.duration(bucket))} "
             "(a gap: none started)."),
        svg.small_multiples("chart-waits", wait_panels, axis, title="Waiting time per pool",
                            y_title=f"waiting time ({unit})", warm_up_s=view.warm_up_s),
    )


# --- lead time -------------------------------------------------------------------------------------
def lead_time_section(view: View) -> str:
    v = view.value
    charts = view.charts or {}
    lead_times = charts.get("lead_times")
    markers: list[tuple[str, float]] = []
    for q in ("p50", "p95"):
        stat = v("lead_time_s", q)
        if stat is not None:
            markers.append((q, stat.values[0] if view.replicated and stat.values else stat.mean))
    parts = []
    if lead_times is None:
        parts.append(note("The lead times of single lots were not kept for this report.",
                          element_id="chart-lead-time"))
    else:
        title = "Lead time of completed lots" + (" (replication 1)" if view.replicated else "")
        parts.append(svg.histogram("chart-lead-time", lead_times, title, total=charts.get("lead_times_total"),
                                   markers=markers))
    groups: list[tuple[str, tuple[str, ...]]] = [
        (f"location {loc}", ("lead_time_by_location_s", loc)) for loc in view.locations]
    groups += [(f"priority {p}", ("lead_time_by_priority_s", p)) for p in view.priorities]
    rows, bars = [], []
    longest = max((s.mean for _, path in groups if (s := v(*path, "p95")) is not None), default=0.0)
    unit, scale = svg.duration_unit(longest)
    for label, path in groups:
        mean, p95 = v(*path, "mean"), v(*path, "p95")
        rows.append(([escape(label), cell(mean, _dur, duration=True), cell(v(*path, "p50"), _dur, duration=True),
                      cell(p95, _dur, duration=True), cell(v(*path, "max"), _dur, duration=True)], ""))
        if mean is not None and mean.mean > 0:
            bars.append(svg.Interval(label, mean.mean, mean.low, mean.high,
                                     ("p95", p95.mean) if p95 is not None else None))
    legend = [("mean", "#7986cb"), ("p95 (diamond)", "#d84315")]
    if view.replicated:
        legend.append(("95% CI of the mean (whiskers)", "#263238"))
    parts.append(svg.interval_chart("chart-lead-time-groups", bars,
                                    svg.Scale(f"lead time ({unit})", scale, lambda s: _dur_in(s, unit, scale)),
                                    "Lead time by location and by priority", legend_items=legend))
    parts.append(table("table-lead-time-groups", ["group", "mean", "p50", "p95", "max"], rows))
    return section("lead-time", "Lead time", *parts)


# --- stages ----------------------------------------------------------------------------------------
def stages_section(view: View) -> str:
    v = view.value
    rows = []
    b = view.bottleneck
    for stage, mtype in view.stages:
        base = ("stages", stage)
        rows.append(([f"<strong>{escape(stage)}</strong>", "all", escape(mtype), "",
                      cell(v(*base, "cycles"), fmt_num(0)), cell(v(*base, "utilization"), fmt_pct),
                      cell(v(*base, "busy"), fmt_pct), cell(v(*base, "wait_s", "mean"), _dur, duration=True),
                      cell(v(*base, "wait_s", "p95"), _dur, duration=True),
                      cell(v(*base, "process_s", "mean"), _dur, duration=True), ""],
                     "bottleneck" if b is not None and b.stage == stage else ""))
        for loc in view.locations:
            at = (*base, "by_location", loc)
            if v(*at, "machines") is None and v(*at, "cycles") is None:
                continue
            queue = v(*at, "queue_length_mean") or v(*at, "queue_length")
            rows.append(([escape(stage), escape(loc), escape(mtype), cell(v(*at, "machines"), fmt_num(0)),
                          cell(v(*at, "cycles"), fmt_num(0)), cell(v(*at, "utilization"), fmt_pct),
                          cell(v(*at, "busy"), fmt_pct), cell(v(*at, "wait_s", "mean"), _dur, duration=True),
                          cell(v(*at, "wait_s", "p95"), _dur, duration=True),
                          cell(v(*at, "process_s", "mean"), _dur, duration=True), cell(queue, fmt_num(2))],
                         "sub bottleneck" if _is_bottleneck(view, loc, mtype) and b and b.stage == stage else "sub"))
    headers = ["stage", "location", "machine type", "machines", "cycles", "utilisation", "busy", "mean wait",
               "p95 wait", "mean processing", "mean queue"]
    return section("stages", "Stages", note("One row per stage over all locations, then one per location."),
                   table("table-stages", headers, rows))


# --- Gantt, machines -------------------------------------------------------------------------------
def gantt_section(view: View) -> str:
    gantt = (view.charts or {}).get("gantt")
    if not gantt:
        return section("gantt", "Machine timeline",
                       note("No machine timeline was recorded for this run.", element_id="chart-gantt"))
    order = [mid for mid, _, _ in view.machines]
    title = "Machine states over time" + (" (replication 1)" if view.replicated else "")
    window = svg.span(float(gantt["end_s"]) - float(gantt["start_s"]))
    return section(
        "gantt", "Machine timeline",
        note(f"Every machine over {escape(window)} of simulated time, in cells of "
             f"{escape(svg.duration(float(gantt['cell_s'])))}: each cell is stacked by the share of its time in "
             "each state (running at the bottom). Point at a cell for its exact times (day 1 00:00 is the "
             "start of the run) and shares."),
        gantt_html("chart-gantt", gantt, order, title, warm_up_s=view.warm_up_s),
    )


OEE_EXPLAINED = (
    "<strong>OEE</strong> (overall equipment effectiveness) = availability × performance × quality. "
    "<em>Availability</em> = running time / planned production time (scheduled time less planned "
    "maintenance): breakdowns, stoppages and waiting for work are availability losses. "
    "<em>Performance</em> = ideal cycle time × cycles / running time, where the ideal cycle time is the "
    "stage's configured <code>ideal_cycle_time_s</code> or else the mean of its processing-time "
    "distribution, so a machine that runs at its usual pace scores about 100 %. "
    "<em>Quality</em> = good cycles / cycles (a test that sends a lot to rework or scrap is not good). "
    "Utilisation = running time / scheduled time (off-shift time excluded)."
)


def machines_section(view: View) -> str:
    v = view.value
    rows = []
    for mid, loc, mtype in view.machines:
        base = ("machines", mid)
        rows.append(([escape(mid), escape(loc), escape(mtype), cell(v(*base, "cycles"), fmt_num(0)),
                      cell(v(*base, "utilization"), fmt_pct), cell(v(*base, "availability"), fmt_pct),
                      cell(v(*base, "performance"), fmt_pct), cell(v(*base, "quality"), fmt_pct),
                      cell(v(*base, "oee"), fmt_pct), cell(v(*base, "blocked_s"), _hours),
                      cell(v(*base, "maintenances"), fmt_num(0 if not view.replicated else 1))],
                     "bottleneck" if _is_bottleneck(view, loc, mtype) else ""))
    headers = ["machine", "location", "type", "cycles", "utilisation", "availability", "performance", "quality",
               "OEE", "blocked", "maintenances"]
    return section("machines", "Machines", note(OEE_EXPLAINED, element_id="oee-explained"),
                   table("table-machines", headers, rows))


# --- inputs ----------------------------------------------------------------------------------------
def _mix(mix: Any) -> str:
    if not isinstance(mix, dict):
        return "—" if mix is None else escape(str(mix))
    total = sum(float(w) for w in mix.values()) or 1.0
    return escape(", ".join(f"{k} {float(w) / total:.0%}" for k, w in mix.items()))


def _length(length: Any) -> str:
    if not isinstance(length, dict):
        return "—"
    parts = []
    if length.get("lots") is not None:
        parts.append(f"{int(length['lots']):,} lots")
    if length.get("until_s") is not None:
        parts.append(f"until {svg.span(float(length['until_s']))}")
    return escape(" or ".join(parts) or "—")


def assumptions_section(view: View) -> str:
    a = view.assumptions
    if not a:
        return section("assumptions", "Input assumptions",
                       note("This report carries no input assumptions.", element_id="table-assumptions"))
    arrivals = a.get("arrivals") or {}
    quantity = arrivals.get("quantity")
    if isinstance(quantity, dict):
        quantity = "–".join(str(quantity[k]) for k in ("min", "max") if k in quantity) or str(quantity)
    rate = arrivals.get("rate_per_hour")
    rows: list[tuple[Sequence[Cell], str]] = [
        (["seed", escape(str(a.get("seed", view.seed)))], ""),
        (["config fingerprint", f"<code>{escape(str(a.get('config_fingerprint') or view.fingerprint or '—'))}</code>"],
         ""),
        (["warm-up", escape(svg.span(float(a.get("warm_up_s") or view.warm_up_s))
                            if (a.get("warm_up_s") or view.warm_up_s) else "none")], ""),
        (["run length", _length(a.get("length"))], ""),
        (["arrival process", escape(str(arrivals.get("process", "—")))], ""),
        (["arrival rate", escape(f"{float(rate):g} lots/h ({float(rate) * 24:.1f} lots/day)" if rate is not None
                                 else "—")], ""),
        (["location mix", _mix(arrivals.get("location_mix"))], ""),
        (["priority mix", _mix(arrivals.get("priority_mix"))], ""),
        (["lot quantity", escape(str(quantity) if quantity is not None else "—")], ""),
    ]
    shifts = a.get("shifts") or {}
    if shifts:
        rows.append((["shifts", escape(", ".join(f"{loc}: {cal or 'around the clock'}"
                                                 for loc, cal in shifts.items()))], ""))
    route_rows = [([escape(str(r.get("stage"))), escape(str(r.get("machine_type"))),
                    escape(str(r.get("processing", "—"))),
                    escape(svg.duration(float(r["mean_s"])) if r.get("mean_s") is not None else "—")], "")
                  for r in a.get("route") or []]
    machines = a.get("machines") or {}
    types = list(dict.fromkeys(t for per in machines.values() for t in per))
    machine_rows = [([escape(loc), *(escape(str(per.get(t, 0))) for t in types)], "") for loc, per in machines.items()]
    return section(
        "assumptions", "Input assumptions",
        table("table-assumptions", ["input", "value"], rows),
        table("table-route", ["stage", "machine type", "processing time", "mean"], route_rows,
              caption="Route"),
        table("table-machine-counts", ["location", *types], machine_rows, caption="Machines per pool"),
    )
