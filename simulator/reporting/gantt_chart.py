"""The machine Gantt of the HTML reports: one row per machine over the whole timeline window, each cell of
time stacked by the share of each state in it.

Thousands of cells with a ``<title>`` each would weigh megabytes, so the cells are drawn as one path per
machine and state, and a short script (:data:`SCRIPT`, once per page) shows the tooltip of the cell under
the pointer — "Italia-tornio-01 · day 3 14:00 – 15:00 · running 62 %, idle 38 %" — from the cell shares
embedded beside the chart as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from simulator.reporting import svg
from simulator.reporting.timeaxis import time_axis

_CODES = {"running": "r", "blocked": "b", "maintenance": "m", "off_shift": "o", "idle": "i"}
LABEL_W, ROW_H, TOP = 210.0, 16.0, 30.0
PLOT_W = svg.WIDTH - LABEL_W - 14.0


def _permille(cell: Sequence[Any]) -> dict[str, int]:
    pairs = zip(cell[0::2], cell[1::2], strict=True)
    return {str(state): round(float(share) * 1000) for state, share in pairs}


def gantt_html(chart_id: str, gantt: dict[str, Any], order: Sequence[str], title: str, *,
               warm_up_s: float = 0.0) -> str:
    """The chart, its data and its tooltip box; rows in ``order`` (machine ids; others after them), the end
    of the warm-up marked."""
    by_id = {m["id"]: m for m in gantt["machines"]}
    rows = [by_id[i] for i in order if i in by_id] + [m for m in gantt["machines"] if m["id"] not in order]
    start, end, cell = float(gantt["start_s"]), float(gantt["end_s"]), float(gantt["cell_s"])
    first = int(start // cell)
    axis = time_axis(start, end, start_utc=gantt.get("start_utc"))

    def x(t: float) -> float:
        return LABEL_W + PLOT_W * (t - start) / (end - start)

    height = TOP + ROW_H * len(rows) + 44
    out = svg.open_svg(chart_id, height, f"{title} (point at a cell for its exact times and state shares)")
    out += svg.legend(LABEL_W, 14, [(svg.state_label(s), svg.STATE_COLOURS[s]) for s in svg.STATES])
    encoded = []
    for r, machine in enumerate(rows):
        y = TOP + r * ROW_H
        if r and machine["location"] != rows[r - 1]["location"]:
            out.append(svg.line(8, y, LABEL_W + PLOT_W, y, "separator"))
        out.append(svg.text(LABEL_W - 6, y + 12, machine["id"], anchor="end", cls="gantt-label"))
        shares = [_permille(c) for c in machine["cells"]]
        # idle tops every stack: a row drawn idle underneath needs no idle boxes
        out.append(svg.rect(LABEL_W, y + 1, PLOT_W, ROW_H - 3, svg.STATE_COLOURS["idle"]))
        for state in svg.STATES[:-1]:
            d = _state_path(shares, state, y, first, cell, start, end, x)
            if d:
                out.append(f'<path d="{d}" fill="{svg.STATE_COLOURS[state]}" class="g-{state}"/>')
        encoded.append({"id": machine["id"], "cells": " ".join(
            "".join(f"{_CODES[s]}{v}" for s, v in c.items() if v > 0 and s in _CODES) or "-" for c in shares)})
    base = TOP + ROW_H * len(rows)
    out.append(f'<path d="M{svg.n(LABEL_W)},{svg.n(TOP)}V{svg.n(base)}H{svg.n(LABEL_W + PLOT_W)}" class="frame"/>')
    for t, label in axis.ticks:
        out.append(svg.line(x(t), base, x(t), base + 4, "frame"))
        out.append(svg.text(x(t), base + 16, label, anchor=svg.edge_anchor(x(t), LABEL_W + PLOT_W), cls="axis"))
    out.append(svg.text(LABEL_W + PLOT_W / 2, base + 34, axis.title, anchor="middle", cls="axis-title"))
    if start < warm_up_s < end:
        out.append(svg.line(x(warm_up_s), TOP - 4, x(warm_up_s), base, "marker"))
        out.append(svg.text(x(warm_up_s) - 3, TOP - 6, "warm-up ends", anchor="end", cls="marker"))
    out.append("</svg>")
    data = {"start": start, "end": end, "cell": cell, "first": first, "left": LABEL_W, "width": PLOT_W,
            "top": TOP, "row": ROW_H, "rows": encoded}
    payload = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # inert in HTML
    return (f'<div class="gantt" data-chart="{escape(chart_id)}">' + "\n".join(out)
            + f'<div class="tip" hidden></div><script type="application/json">{payload}</script></div>')


def _state_path(shares: Sequence[dict[str, int]], state: str, y: float, first: int, cell: float,
                start: float, end: float, x: Any) -> str:
    """Sub-rectangles of ``state`` in each cell, stacked in :data:`svg.STATES` order from the bottom of the
    row; neighbouring cells with the same rectangle are drawn as one."""
    height = ROW_H - 3
    parts: list[str] = []
    run: tuple[float, float, float, float] | None = None  # x0, x1, top, height
    for i, cell_shares in enumerate(shares):
        value = cell_shares.get(state, 0)
        below = sum(cell_shares.get(s, 0) for s in svg.STATES[:svg.STATES.index(state)])
        if value <= 0:
            seg = None
        else:
            h = round(height * value / 1000, 1)
            top = round(y + 1 + height * (1 - (below + value) / 1000), 1)
            lo, hi = max(start, (first + i) * cell), min(end, (first + i + 1) * cell)
            seg = (x(lo), x(hi), top, h)
        if run is not None and seg is not None and (run[2], run[3]) == (seg[2], seg[3]) and abs(run[1] - seg[0]) < 1e-9:
            run = (run[0], seg[1], run[2], run[3])
            continue
        if run is not None:
            parts.append(_box(run))
        run = seg
    if run is not None:
        parts.append(_box(run))
    return "".join(parts)


def _box(run: tuple[float, float, float, float]) -> str:
    x0, x1, top, h = run
    w = svg.n(max(0.1, x1 - x0))
    return f"M{svg.n(x0)},{svg.n(top)}h{w}v{svg.n(h)}h-{w}z"


SCRIPT = """(function(){
var names={r:"running",b:"blocked",m:"maintenance",o:"off-shift",i:"idle"};
function pad(v){return(v<10?"0":"")+v;}
function whole(t){return Math.floor(t+0.5);}
function clock(t){var s=whole(t),d=Math.floor(s/86400),r=s-d*86400,h=Math.floor(r/3600),m=Math.floor((r-h*3600)/60),
sec=r-h*3600-m*60;return"day "+(d+1)+" "+pad(h)+":"+pad(m)+(sec?":"+pad(sec):"");}
function span(a,b){var x=clock(a),y=clock(b);
return Math.floor(whole(a)/86400)===Math.floor(whole(b)/86400)?x+" \\u2013 "+y.split(" ")[2]:x+" \\u2013 "+y;}
function pct(v){return v>0&&v<5?"<1 %":Math.round(v/10)+" %";}
document.querySelectorAll(".gantt").forEach(function(wrap){
var chart=wrap.querySelector("svg"),tip=wrap.querySelector(".tip"),
data=JSON.parse(wrap.querySelector("script[type='application/json']").textContent);
data.rows.forEach(function(r){r.list=r.cells.split(" ");});
chart.addEventListener("mousemove",function(e){
var p=new DOMPoint(e.clientX,e.clientY).matrixTransform(chart.getScreenCTM().inverse()),
row=data.rows[Math.floor((p.y-data.top)/data.row)],u=(p.x-data.left)/data.width;
if(!row||u<0||u>1){tip.hidden=true;return;}
var t=data.start+u*(data.end-data.start),i=Math.max(0,Math.min(Math.floor(t/data.cell)-data.first,row.list.length-1)),
lo=Math.max(data.start,(data.first+i)*data.cell),hi=Math.min(data.end,(data.first+i+1)*data.cell),
parts=[],re=/([a-z])(\\d+)/g,c=row.list[i],g;
while((g=re.exec(c))!==null){parts.push([+g[2],names[g[1]]]);}
parts.sort(function(a,b){return b[0]-a[0];});
tip.textContent=row.id+" \\u00b7 "+span(lo,hi)+" \\u00b7 "+(parts.length?parts.map(function(q){
return q[1]+" "+pct(q[0]);}).join(", "):"no record");
var box=wrap.getBoundingClientRect();tip.style.left=(e.clientX-box.left+14)+"px";
tip.style.top=(e.clientY-box.top+14)+"px";tip.hidden=false;});
chart.addEventListener("mouseleave",function(){tip.hidden=true;});});
})();"""


def tooltip_text(machine_id: str, cell: Sequence[Any], lo: float, hi: float) -> str:
    """The tooltip the script shows for a cell (the same words, for tests and for readers of the code)."""
    from simulator.reporting.timeaxis import clock_span

    shares = sorted(((v, s) for s, v in _permille(cell).items() if v > 0), key=lambda item: -item[0])
    text = ", ".join(f"{svg.state_label(s)} {'<1' if v < 5 else int(v / 10 + 0.5)} %" for v, s in shares)
    return f"{machine_id} · {clock_span(lo, hi)} · {text or 'no record'}"
