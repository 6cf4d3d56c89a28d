"""Inline-SVG chart primitives for the HTML reports (no external assets, no scripts).

Every chart function returns one ``<svg>`` element as text.  Coordinates are rounded to one decimal so that
the same data always renders to the same bytes.  Value axes use "nice" ticks (1, 2 or 5 times a power of ten;
whole numbers where the quantity is a count); time axes (:mod:`simulator.reporting.timeaxis`) count hours or
days of simulated time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from simulator.progress import count_of
from simulator.reporting.timeaxis import TimeAxis

WIDTH = 900
STATES = ("running", "blocked", "maintenance", "off_shift", "idle")
STATE_COLOURS = {
    "running": "#2e7d32",
    "blocked": "#c62828",
    "maintenance": "#f9a825",
    "off_shift": "#546e7a",
    "idle": "#cfd8dc",
}
SERIES_COLOUR = "#1565c0"
BAND_COLOUR = "#90caf9"


def state_label(state: str) -> str:
    return state.replace("_", "-") if state == "off_shift" else state


# --- numbers ---------------------------------------------------------------------------------------
def n(value: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros."""
    text = f"{value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


def hours(seconds: float) -> str:
    value = seconds / 3600.0
    return f"{value:.0f} h" if value >= 10 else f"{value:.1f} h"


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def span(seconds: float) -> str:
    """A length of simulated time: in days from two days up ("30 days", "2.5 days"), else :func:`duration`."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f}".removesuffix(".0") + " days"
    return duration(seconds)


def edge_anchor(x: float, right: float) -> str:
    """How to anchor a tick label at ``x`` so that it stays inside a plot ending at ``right``."""
    return "end" if x > right - 12 else "middle"


def duration_unit(seconds: float) -> tuple[str, float]:
    """The unit (and its length in seconds) in which durations up to about ``seconds`` read best."""
    if seconds >= 2 * 3600:
        return "h", 3600.0
    if seconds >= 120:
        return "min", 60.0
    return "s", 1.0


def nice_step(raw: float, *, integer: bool = False) -> float:
    """The smallest of 1, 2, 5 × 10^k that is at least ``raw`` (at least 1 for counts)."""
    if not math.isfinite(raw) or raw <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw * (1 - 1e-9))
    return max(1.0, float(round(step))) if integer else step


def nice_ticks(low: float, high: float, *, count: int = 5, integer: bool = False) -> list[float]:
    """Ticks at a nice step covering ``low``..``high`` in about ``count`` intervals: 0, 5, 10, 15, 20 and
    never 0, 9.5, 19."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:
        high = low + (1.0 if integer or low == 0 else abs(low) * 0.1)
    step = nice_step((high - low) / max(1, count), integer=integer)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [_clean((first + i) * step) for i in range(last - first + 1)]


def _clean(value: float) -> float:
    value = round(value, 9)
    return 0.0 if value == 0 else value


def tick_text(value: float, ticks: Sequence[float]) -> str:
    """A tick label with as many decimals as the step needs (none for a whole step), thousands separated."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = 0 if step >= 1 else min(6, -math.floor(math.log10(step) + 1e-9))
    return f"{value:,.{decimals}f}"


# --- elements --------------------------------------------------------------------------------------
def open_svg(chart_id: str, height: float, title: str, *, width: float = WIDTH) -> list[str]:
    return [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {n(width)} {n(height)}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]


def text(x: float, y: float, content: str, *, anchor: str = "start", cls: str = "", rotate: bool = False) -> str:
    klass = f' class="{cls}"' if cls else ""
    turn = f' transform="rotate(-90 {n(x)} {n(y)})"' if rotate else ""
    return f'<text x="{n(x)}" y="{n(y)}" text-anchor="{anchor}"{klass}{turn}>{escape(content)}</text>'


def rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    inner = f"<title>{escape(tip)}</title>" if tip else ""
    return (f'<rect x="{n(x)}" y="{n(y)}" width="{n(max(w, 0.0))}" height="{n(max(h, 0.0))}" '
            f'fill="{fill}"{klass}>{inner}</rect>')


def line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    return f'<line x1="{n(x1)}" y1="{n(y1)}" x2="{n(x2)}" y2="{n(y2)}" class="{cls}"/>'


def legend(x: float, y: float, entries: Sequence[tuple[str, str]], *, spacing: float = 110) -> list[str]:
    """Coloured squares with their labels, in a row starting at ``x``."""
    out = []
    for i, (label, colour) in enumerate(entries):
        out.append(rect(x + i * spacing, y - 9, 10, 10, colour))
        out.append(text(x + i * spacing + 14, y, label, cls="legend"))
    return out


@dataclass(frozen=True, slots=True)
class Frame:
    """A plot area and its scales: x over a time axis, y over nice ticks."""

    left: float
    top: float
    width: float
    height: float
    axis: TimeAxis
    y_ticks: Sequence[float]

    def x(self, t: float) -> float:
        span = self.axis.end - self.axis.start
        return self.left + self.width * ((t - self.axis.start) / span if span > 0 else 0.0)

    def y(self, v: float) -> float:
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return self.top + self.height * (1 - (v - low) / (high - low))

    @property
    def base(self) -> float:
        return self.top + self.height

    def draw_axes(self, y_title: str, *, x_title: bool = True, y_labels: bool = True) -> list[str]:
        out = []
        for tick in self.y_ticks:
            y = self.y(tick)
            out.append(line(self.left, y, self.left + self.width, y, "grid"))
            if y_labels:
                out.append(text(self.left - 5, y + 4, tick_text(tick, self.y_ticks), anchor="end", cls="axis"))
        out.append(f'<path d="M{n(self.left)},{n(self.top)}V{n(self.base)}H{n(self.left + self.width)}" '
                   'class="frame"/>')
        for t, label in self.axis.ticks:
            x = self.x(t)
            out.append(line(x, self.base, x, self.base + 4, "frame"))
            out.append(text(x, self.base + 16, label, anchor=edge_anchor(x, self.left + self.width), cls="axis"))
        if x_title:
            out.append(text(self.left + self.width / 2, self.base + 34, self.axis.title, anchor="middle",
                            cls="axis-title"))
        if y_title:
            out.append(text(self.left - 44, self.top + self.height / 2, y_title, anchor="middle", cls="axis-title",
                            rotate=True))
        return out

    def shade(self, until: float, label: str) -> list[str]:
        """A grey span from the axis start to ``until`` (e.g. the warm-up), labelled."""
        if until <= self.axis.start:
            return []
        x1 = self.x(min(until, self.axis.end))
        return [rect(self.left, self.top, x1 - self.left, self.height, "#eceff1", cls="warm-up"),
                text(self.left + 4, self.top + 12, label, cls="warm-up-label")]


# --- line charts -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Line:
    """A series over time: ``points`` (t, value or None for a gap), optionally a band (t, low, high)."""

    label: str
    points: Sequence[tuple[float, float | None]]
    band: Sequence[tuple[float, float | None, float | None]] = ()
    colour: str = SERIES_COLOUR


def _runs(items: Sequence[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """Consecutive items without a None, as separate runs (a None is a gap in the line)."""
    runs: list[list[tuple[Any, ...]]] = [[]]
    for item in items:
        if any(v is None for v in item[1:]):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(item)
    return [r for r in runs if r]


def _draw_line(frame: Frame, series: Line) -> list[str]:
    out = []
    for run in _runs(series.band):
        upper = " ".join(f"{n(frame.x(t))},{n(frame.y(hi))}" for t, _, hi in run)
        lower = " ".join(f"{n(frame.x(t))},{n(frame.y(lo))}" for t, lo, _ in reversed(run))
        out.append(f'<polygon points="{upper} {lower}" fill="{BAND_COLOUR}" class="band"/>')
    for run in _runs(series.points):
        if len(run) == 1:
            t, v = run[0]
            out.append(f'<circle cx="{n(frame.x(t))}" cy="{n(frame.y(v))}" r="1.5" fill="{series.colour}"/>')
            continue
        d = "M" + "L".join(f"{n(frame.x(t))},{n(frame.y(v))}" for t, v in run)
        out.append(f'<path d="{d}" fill="none" stroke="{series.colour}" stroke-width="1.5" class="series"/>')
    return out


def _peak(lines: Sequence[Line]) -> float:
    values = [v for s in lines for _, v in s.points if v is not None]
    values += [hi for s in lines for _, _, hi in s.band if hi is not None]
    return max(values, default=0.0)


def line_chart(chart_id: str, series: Line, axis: TimeAxis, *, title: str, y_title: str,
               integer: bool = False, warm_up_s: float = 0.0) -> str:
    """One series over simulated time (with its confidence band, if any), the warm-up shaded."""
    height = 280.0
    frame = Frame(70.0, 24.0, WIDTH - 70.0 - 20.0, height - 24.0 - 56.0, axis,
                  nice_ticks(0.0, _peak([series]), integer=integer))
    out = open_svg(chart_id, height, title)
    out += frame.shade(warm_up_s, "warm-up (not counted)")
    out += frame.draw_axes(y_title)
    out += _draw_line(frame, series)
    if series.band:
        out += legend(frame.left + frame.width - 300, 14, [(series.label, series.colour),
                                                           ("95% confidence band", BAND_COLOUR)], spacing=150)
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    series: Line
    highlight: bool = False


def small_multiples(chart_id: str, panels: Sequence[Panel], axis: TimeAxis, *, title: str, y_title: str,
                    integer: bool = False, warm_up_s: float = 0.0, columns: int = 3) -> str:
    """One small line chart per panel, on a grid, all on the same scales so that they compare at a glance."""
    if not panels:
        return empty_chart(chart_id, title, "no pools")
    cell_w, cell_h = WIDTH / columns, 170.0
    rows = math.ceil(len(panels) / columns)
    ticks = nice_ticks(0.0, _peak([p.series for p in panels]), count=3, integer=integer)
    out = open_svg(chart_id, rows * cell_h + 24, title)
    out.append(text(8, 14, y_title, cls="axis-title"))
    for i, panel in enumerate(panels):
        x0, y0 = (i % columns) * cell_w, 24 + (i // columns) * cell_h
        frame = Frame(x0 + 50, y0 + 20, cell_w - 66, cell_h - 62, axis, ticks)
        out.append(text(frame.left, y0 + 12, panel.title + (" (bottleneck)" if panel.highlight else ""),
                        cls="panel-title bottleneck" if panel.highlight else "panel-title"))
        out += frame.shade(warm_up_s, "")
        out += frame.draw_axes("", x_title=False)
        out += _draw_line(frame, panel.series)
    out.append("</svg>")
    return "\n".join(out)


def empty_chart(chart_id: str, title: str, message: str) -> str:
    out = open_svg(chart_id, 80, title)
    out.append(text(WIDTH / 2, 46, message, anchor="middle", cls="empty"))
    out.append("</svg>")
    return "\n".join(out)


# --- histogram -------------------------------------------------------------------------------------
def histogram(chart_id: str, values: Sequence[float], title: str, *, total: int | None = None,
              markers: Sequence[tuple[str, float]] = (), x_name: str = "lead time", count_noun: str = "lot",
              target_bins: int = 30) -> str:
    """A histogram of durations (seconds) on nice bin edges, with axis titles and marker lines (p50, p95).

    ``values`` may be an even sample of ``total`` values: bar heights are then scaled to ``total``."""
    if not values:
        return empty_chart(chart_id, title, f"no completed {count_noun}s")
    ordered = sorted(values)
    weight = (total or len(ordered)) / len(ordered)
    # a long tail would squash the body into a few bars: values beyond 1.5 × p99 share the last bar
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    high = min(ordered[-1], 1.5 * p99) if p99 > 0 else ordered[-1]
    unit, scale = duration_unit(high)
    width = nice_step((high - ordered[0]) / scale / target_bins) * scale if high > ordered[0] else scale
    low = math.floor(ordered[0] / width) * width
    bins = max(1, math.ceil((high - low) / width - 1e-9))
    if low + bins * width <= high:
        bins += 1
    raw = [0] * bins
    for value in ordered:
        raw[max(0, min(int((value - low) / width), bins - 1))] += 1
    counts = [round(c * weight) for c in raw]
    overflow = ordered[-1] >= low + bins * width
    x_ticks = nice_ticks(low / scale, (low + bins * width) / scale, count=6)
    start, end = x_ticks[0] * scale, x_ticks[-1] * scale
    y_ticks = nice_ticks(0.0, max(counts), count=4, integer=True)
    height = 290.0
    left, top = 70.0, 28.0
    plot_w, plot_h = WIDTH - left - 20.0, height - top - 60.0

    def x(v: float) -> float:
        return left + plot_w * (v - start) / (end - start)

    def y(c: float) -> float:
        return top + plot_h * (1 - c / y_ticks[-1])

    out = open_svg(chart_id, height, title)
    for tick in y_ticks:
        out.append(line(left, y(tick), left + plot_w, y(tick), "grid"))
        out.append(text(left - 5, y(tick) + 4, tick_text(tick, y_ticks), anchor="end", cls="axis"))
    for i, count in enumerate(counts):
        lo = low + i * width
        last = i == bins - 1 and overflow
        span = f"≥ {duration(lo)}" if last else f"{duration(lo)} – {duration(lo + width)}"
        out.append(rect(x(lo) + 0.5, y(count), x(lo + width) - x(lo) - 1, top + plot_h - y(count), "#5c6bc0",
                        f"{span}: {count_of(count, count_noun)}", cls="bar"))
    base = top + plot_h
    out.append(f'<path d="M{n(left)},{n(top)}V{n(base)}H{n(left + plot_w)}" class="frame"/>')
    for tick in x_ticks:
        out.append(line(x(tick * scale), base, x(tick * scale), base + 4, "frame"))
        out.append(text(x(tick * scale), base + 16, tick_text(tick, x_ticks), anchor="middle", cls="axis"))
    out.append(text(left + plot_w / 2, base + 36, f"{x_name} ({unit})", anchor="middle", cls="axis-title"))
    out.append(text(left - 48, top + plot_h / 2, f"{count_noun}s", anchor="middle", cls="axis-title", rotate=True))
    for i, (label, value) in enumerate(markers):
        mx = x(min(max(value, start), end))
        out.append(line(mx, top, mx, base, "marker"))
        out.append(text(mx + 3, top + 10 + 13 * i, f"{label} {duration(value)}", cls="marker"))
    if overflow:
        note = (f"last bar: {duration(low + (bins - 1) * width)} and longer "
                f"(max {duration(ordered[-1])})")
        out.append(text(left + plot_w, top - 10, note, anchor="end", cls="axis"))
    if weight > 1:
        out.append(text(left, top - 10, f"from an even sample of {len(ordered):,} of {total:,} values",
                        cls="axis"))
    out.append("</svg>")
    return "\n".join(out)


# --- bars ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stack:
    """One horizontal bar made of segments (state, share 0..1, tooltip)."""

    label: str
    segments: Sequence[tuple[str, float, str]]
    highlight: bool = False


def stacked_bars(chart_id: str, stacks: Sequence[Stack], title: str) -> str:
    """Horizontal 100 % bars: the share of each state per row (e.g. per machine pool), with a legend."""
    label_w, row_h, top = 240.0, 22.0, 30.0
    plot_w = WIDTH - label_w - 20
    height = top + row_h * len(stacks) + 44
    out = open_svg(chart_id, height, title)
    out += legend(label_w, 14, [(state_label(s), STATE_COLOURS[s]) for s in STATES])
    for i, stack in enumerate(stacks):
        y = top + i * row_h
        label = f"{stack.label} (bottleneck)" if stack.highlight else stack.label
        out.append(text(label_w - 8, y + 15, label, anchor="end", cls="bottleneck" if stack.highlight else ""))
        x = label_w
        for state, share, tip in stack.segments:
            w = plot_w * max(0.0, share)
            if w > 0:
                out.append(rect(x, y + 3, w, row_h - 6, STATE_COLOURS[state], tip, cls="segment"))
            x += w
    base = top + row_h * len(stacks)
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    for tick in ticks:
        out.append(line(label_w + plot_w * tick, base, label_w + plot_w * tick, base + 4, "frame"))
        out.append(text(label_w + plot_w * tick, base + 16, f"{tick:.0%}", anchor="middle", cls="axis"))
    out.append(text(label_w + plot_w / 2, base + 34, "share of the pool's machine time", anchor="middle",
                    cls="axis-title"))
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class Interval:
    """One row of an interval chart: a value, its 95% interval (or None) and an optional marker."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None
    marker: tuple[str, float] | None = None
    tip: str = ""
    highlight: bool = False


@dataclass(frozen=True, slots=True)
class Scale:
    """How an interval chart shows its values: divide by ``divisor``, name the axis ``title``."""

    title: str
    divisor: float = 1.0
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:,.3g}")
    percent: bool = False


def interval_chart(chart_id: str, rows: Sequence[Interval], scale: Scale, title: str, *, bars: bool = True,
                   legend_items: Sequence[tuple[str, str]] = ()) -> str:
    """Horizontal rows: a bar from zero (or a dot) at the value, whiskers for its 95% interval, a diamond
    for the marker (e.g. p95).  One x scale for all rows."""
    if not rows:
        return empty_chart(chart_id, title, "nothing to show")
    label_w, row_h, top = 220.0, 22.0, 28.0
    plot_w = WIDTH - label_w - 30
    height = top + row_h * len(rows) + 46
    points = [r.value for r in rows] + [v for r in rows for v in (r.low, r.high) if v is not None]
    points += [r.marker[1] for r in rows if r.marker]
    shown = [v / scale.divisor for v in points]
    lo = 0.0 if bars or (min(shown) >= 0 and min(shown) < 0.35 * max(shown)) else min(shown)
    ticks = nice_ticks(min(lo, min(shown)), max(shown), count=6)

    def x(v: float) -> float:
        return label_w + plot_w * (v / scale.divisor - ticks[0]) / (ticks[-1] - ticks[0])

    out = open_svg(chart_id, height, title)
    if legend_items:
        out += legend(label_w, 14, legend_items, spacing=150)
    base = top + row_h * len(rows)
    for tick in ticks:
        xt = label_w + plot_w * (tick - ticks[0]) / (ticks[-1] - ticks[0])
        out.append(line(xt, top, xt, base, "grid"))
        out.append(text(xt, base + 16, f"{tick:.0%}" if scale.percent else tick_text(tick, ticks), anchor="middle",
                        cls="axis"))
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2
        out.append(text(label_w - 8, y + 4, row.label, anchor="end", cls="bottleneck" if row.highlight else ""))
        tip = row.tip or f"{row.label}: {scale.fmt(row.value)}"
        if bars:
            out.append(rect(x(0.0) if ticks[0] <= 0 else label_w, y - 7, x(row.value) - max(label_w, x(0.0)), 14,
                            "#7986cb", tip, cls="bar"))
        else:
            out.append(f'<circle cx="{n(x(row.value))}" cy="{n(y)}" r="4" class="point"><title>{escape(tip)}'
                       "</title></circle>")
        if row.low is not None and row.high is not None:
            out.append(f'<path d="M{n(x(row.low))},{n(y - 5)}v10M{n(x(row.low))},{n(y)}H{n(x(row.high))}'
                       f'M{n(x(row.high))},{n(y - 5)}v10" class="whisker"/>')
        if row.marker:
            mx = x(row.marker[1])
            out.append(f'<path d="M{n(mx)},{n(y - 6)}l5,6l-5,6l-5,-6z" class="diamond"><title>'
                       f"{escape(row.label)}: {escape(row.marker[0])} {escape(scale.fmt(row.marker[1]))}"
                       "</title></path>")
    out.append(f'<path d="M{n(label_w)},{n(top)}V{n(base)}H{n(label_w + plot_w)}" class="frame"/>')
    out.append(text(label_w + plot_w / 2, base + 36, scale.title, anchor="middle", cls="axis-title"))
    out.append("</svg>")
    return "\n".join(out)


# --- dots ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Dots:
    """One KPI's per-replication values with their mean and 95% interval."""

    label: str
    values: Sequence[float]
    mean: float
    low: float | None
    high: float | None
    fmt: Callable[[float], str]


def dot_rows(chart_id: str, rows: Sequence[Dots], title: str) -> str:
    """A dot plot per KPI (each on its own scale): one dot per replication, the mean as a bar, the 95%
    interval as whiskers; the scale's ends are labelled."""
    if not rows:
        return empty_chart(chart_id, title, "no replications")
    label_w, row_h, top = 200.0, 40.0, 24.0
    plot_l, plot_w = label_w + 70, WIDTH - label_w - 150
    out = open_svg(chart_id, top + row_h * len(rows) + 10, title)
    out += legend(plot_l, 14, [("one replication", "#5c6bc0"), ("mean", "#263238"), ("95% CI", "#d84315")],
                  spacing=140)
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2 + 4
        everything = [*row.values, row.mean] + [v for v in (row.low, row.high) if v is not None]
        lo, hi = min(everything), max(everything)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad

        def x(v: float, lo: float = lo, hi: float = hi) -> float:
            return plot_l + plot_w * (v - lo) / (hi - lo)

        out.append(text(label_w - 8, y + 4, row.label, anchor="end"))
        out.append(text(plot_l - 6, y + 4, row.fmt(lo + pad), anchor="end", cls="axis"))
        out.append(text(plot_l + plot_w + 6, y + 4, row.fmt(hi - pad), cls="axis"))
        out.append(line(plot_l, y, plot_l + plot_w, y, "grid"))
        for k, value in enumerate(row.values):
            out.append(f'<circle cx="{n(x(value))}" cy="{n(y)}" r="4" class="dot"><title>replication {k + 1}: '
                       f"{escape(row.fmt(value))}</title></circle>")
        if row.low is not None and row.high is not None:
            out.append(f'<path d="M{n(x(row.low))},{n(y - 12)}v6M{n(x(row.low))},{n(y - 9)}H{n(x(row.high))}'
                       f'M{n(x(row.high))},{n(y - 12)}v6" class="ci"><title>95% CI {escape(row.fmt(row.low))} – '
                       f"{escape(row.fmt(row.high))}</title></path>")
        out.append(f'<path d="M{n(x(row.mean))},{n(y - 9)}v18" class="mean"><title>mean '
                   f"{escape(row.fmt(row.mean))}</title></path>")
    out.append("</svg>")
    return "\n".join(out)
