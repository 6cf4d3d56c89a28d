"""Small inline-SVG chart primitives for the HTML report (no JavaScript, no external assets).

Every function returns one ``<svg>`` element as text.  Coordinates are rounded to one decimal
so that the same data always renders to the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from simulator.progress import count_of

WIDTH = 900
STATE_COLOURS = {
    "running": "#2e7d32",
    "blocked": "#c62828",
    "maintenance": "#f9a825",
    "idle": "#cfd8dc",
    "off_shift": "#607d8b",
}


def n(value: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def hours(seconds: float) -> str:
    value = seconds / 3600.0
    return f"{value:.0f} h" if value >= 10 else f"{value:.1f} h"


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _open(chart_id: str, height: float, title: str) -> list[str]:
    return [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {WIDTH} {n(height)}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{n(x)}" y="{n(y)}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    inner = f"<title>{escape(tip)}</title>" if tip else ""
    return (f'<rect x="{n(x)}" y="{n(y)}" width="{n(max(w, 0.0))}" height="{n(max(h, 0.0))}" '
            f'fill="{fill}"{klass}>{inner}</rect>')


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    running: float  # share 0..1
    blocked: float  # share 0..1
    highlight: bool = False


def utilization_bars(chart_id: str, bars: Sequence[Bar], title: str) -> str:
    """Horizontal stacked bars: running and blocked share of scheduled time per pool."""
    label_w, row_h, top = 260.0, 22.0, 28.0
    plot_w = WIDTH - label_w - 70
    height = top + row_h * len(bars) + 30
    out = _open(chart_id, height, title)
    out.append(_text(label_w, 16, "running", cls="legend running"))
    out.append(_text(label_w + 80, 16, "blocked", cls="legend blocked"))
    for i, bar in enumerate(bars):
        y = top + i * row_h
        cls = "bottleneck" if bar.highlight else ""
        label = f"{bar.label} (bottleneck)" if bar.highlight else bar.label
        out.append(_text(label_w - 8, y + 15, label, anchor="end", cls=cls))
        out.append(_rect(label_w, y + 3, plot_w, row_h - 6, "#eceff1"))
        run_w = plot_w * min(bar.running, 1.0)
        block_w = plot_w * min(bar.blocked, max(0.0, 1.0 - bar.running))
        out.append(_rect(label_w, y + 3, run_w, row_h - 6, STATE_COLOURS["running"],
                         f"{bar.label}: running {bar.running:.1%}"))
        out.append(_rect(label_w + run_w, y + 3, block_w, row_h - 6, STATE_COLOURS["blocked"],
                         f"{bar.label}: blocked {bar.blocked:.1%}"))
        out.append(_text(label_w + plot_w + 6, y + 15, f"{bar.running + bar.blocked:.0%}"))
    axis_y = top + row_h * len(bars) + 14
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(_text(label_w + plot_w * tick, axis_y, f"{tick:.0%}", anchor="middle", cls="axis"))
    out.append("</svg>")
    return "\n".join(out)


def step_chart(chart_id: str, points: Sequence[tuple[float, float]], end: float, title: str,
               y_label: str) -> str:
    """A step line (value holds until the next point), x in simulated seconds shown as hours."""
    left, right, top, bottom, height = 60.0, 20.0, 20.0, 40.0, 260.0
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    out = _open(chart_id, height, title)
    span = end if end > 0 else 1.0
    peak = max((v for _, v in points), default=0.0) or 1.0

    def x(t: float) -> float:
        return left + plot_w * t / span

    def y(v: float) -> float:
        return top + plot_h * (1 - v / peak)

    path: list[str] = []
    for i, (t, v) in enumerate(points):
        if i == 0:
            path.append(f"M{n(x(t))},{n(y(v))}")
        else:
            path.append(f"H{n(x(t))}V{n(y(v))}")
    if points:
        path.append(f"H{n(x(span))}")
    out.append(f'<path d="{"".join(path)}" fill="none" stroke="#1565c0" stroke-width="1.5"/>')
    out.extend(_axes(left, top, plot_w, plot_h, span, peak, y_label))
    out.append("</svg>")
    return "\n".join(out)


def _axes(left: float, top: float, plot_w: float, plot_h: float, span: float, peak: float,
          y_label: str) -> list[str]:
    base = top + plot_h
    out = [f'<path d="M{n(left)},{n(top)}V{n(base)}H{n(left + plot_w)}" fill="none" stroke="#455a64"/>']
    for i in range(5):
        t = span * i / 4
        out.append(_text(left + plot_w * i / 4, base + 16, hours(t), anchor="end" if i == 4 else "middle",
                         cls="axis"))
    for i in range(3):
        v = peak * i / 2
        out.append(_text(left - 6, base - plot_h * i / 2 + 4, f"{v:g}", anchor="end", cls="axis"))
    out.append(_text(left, top - 6, y_label, cls="axis"))
    return out


def histogram(chart_id: str, values: Sequence[float], title: str, *, bins: int = 30,
              markers: Sequence[tuple[str, float]] = ()) -> str:
    """A histogram of durations (seconds) with labelled vertical marker lines (e.g. p50, p95)."""
    left, right, top, bottom, height = 60.0, 20.0, 24.0, 40.0, 260.0
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    out = _open(chart_id, height, title)
    if not values:
        out.append(_text(WIDTH / 2, height / 2, "no completed lots", anchor="middle", cls="empty"))
        out.append("</svg>")
        return "\n".join(out)
    ordered = sorted(values)
    low = ordered[0]
    # a long tail would squash the body into a few bars: values beyond 1.5 × p99 share the last bar
    high = min(ordered[-1], 1.5 * ordered[int(0.99 * (len(ordered) - 1))])
    width = (high - low) / bins if high > low else 1.0
    counts = [0] * bins
    for value in ordered:
        counts[max(0, min(int((value - low) / width), bins - 1))] += 1
    overflow = sum(1 for v in ordered if v > high)
    peak = max(counts)
    bar_w = plot_w / bins
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        lo = low + i * width
        upper = f"{duration(lo + width)}" if i < bins - 1 or not overflow else f"{duration(ordered[-1])}"
        out.append(_rect(left + i * bar_w + 0.5, top + plot_h - h, bar_w - 1, h, "#5c6bc0",
                         f"{duration(lo)} – {upper}: {count_of(count, 'lot')}"))
    span = high - low if high > low else 1.0
    for i, (label, value) in enumerate(markers):
        mx = left + plot_w * min(max(value - low, 0.0), span) / span
        out.append(f'<line x1="{n(mx)}" y1="{n(top)}" x2="{n(mx)}" y2="{n(top + plot_h)}" '
                   f'stroke="#d84315" stroke-dasharray="4 3" class="marker"/>')
        out.append(_text(mx + 3, top + 12 + 14 * i, f"{label} {duration(value)}", cls="marker"))
    base = top + plot_h
    out.append(f'<path d="M{n(left)},{n(top)}V{n(base)}H{n(left + plot_w)}" fill="none" stroke="#455a64"/>')
    for i in range(5):
        out.append(_text(left + plot_w * i / 4, base + 16, duration(low + span * i / 4),
                         anchor="end" if i == 4 else "middle", cls="axis"))
    out.append(_text(left - 6, top + 4, str(peak), anchor="end", cls="axis"))
    out.append(_text(left - 6, base + 4, "0", anchor="end", cls="axis"))
    if overflow:
        note = (f"last bar also counts {count_of(overflow, 'lot')} longer than {duration(high)} "
                f"(max {duration(ordered[-1])})")
        out.append(_text(left + plot_w, top - 8, note, anchor="end", cls="axis"))
    out.append("</svg>")
    return "\n".join(out)


def gantt(chart_id: str, machines: Sequence[str],
          intervals: Sequence[tuple[str, float, float, str, str | None]],
          window: tuple[float, float], title: str) -> str:
    """One row per machine, one coloured rectangle per state interval; idle is left blank."""
    label_w, row_h, top = 190.0, 14.0, 26.0
    plot_w = WIDTH - label_w - 10
    height = top + row_h * len(machines) + 26
    start, end = window
    span = end - start if end > start else 1.0
    rows = {m: i for i, m in enumerate(machines)}
    out = _open(chart_id, height, title)
    x0 = label_w
    for i, state in enumerate(s for s in STATE_COLOURS if s != "idle"):
        out.append(_rect(x0 + i * 120, 6, 10, 10, STATE_COLOURS[state]))
        out.append(_text(x0 + i * 120 + 14, 15, state.replace("_", " "), cls="legend"))
    for machine, i in rows.items():
        out.append(_text(label_w - 6, top + i * row_h + 10, machine, anchor="end", cls="gantt-label"))
    for machine, t0, t1, state, lot in intervals:
        if state == "idle" or machine not in rows:
            continue
        y = top + rows[machine] * row_h
        tip = f"{machine} {state} {hours(t0)}–{hours(t1)}" + (f" lot {lot}" if lot else "")
        out.append(_rect(label_w + plot_w * (t0 - start) / span, y + 1,
                         plot_w * (t1 - t0) / span, row_h - 2, STATE_COLOURS.get(state, "#000"), tip))
    base = top + row_h * len(machines)
    for i in range(7):
        out.append(_text(label_w + plot_w * i / 6, base + 16, hours(start + span * i / 6),
                         anchor="end" if i == 6 else "middle", cls="axis"))
    out.append("</svg>")
    return "\n".join(out)
