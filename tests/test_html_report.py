"""The HTML report: self-contained, well-formed, faithful to the run, deterministic."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser

from simulator.config.schema import Config
from simulator.programs.offline import OfflineResult, run_offline
from simulator.reporting import svg
from simulator.reporting.html_report import render_html
from simulator.reporting.summary import build_report

from plants import plant

VOID = {"meta", "br", "img", "input", "link", "hr"}
SVG_SELF_CLOSING = {"path", "line", "rect"}


class Outline(HTMLParser):
    """Checks nesting and collects ids, element titles and text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ids: dict[str, str] = {}
        self.external: list[str] = []
        self.titles: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self._in_title = False
        self.row_classes: list[tuple[str | None, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids[values["id"] or ""] = tag
        for name in ("src", "href"):
            if values.get(name):
                self.external.append(values[name] or "")
        if tag == "script":
            self.external.append("<script>")
        if tag == "tr":
            self.row_classes.append((values.get("class"), []))
        if tag not in VOID:
            self.stack.append(tag)
        self._in_title = tag == "title"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID | SVG_SELF_CLOSING:
            self.errors.append(f"unexpected self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)
        if self.stack and self.stack[-1] == "td" and self.row_classes:
            self.row_classes[-1][1].append(data)
        self.text.append(data)


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def _run(config: Config, *, lots: int = 300, seed: int = 3,
         timeline: tuple[float, float] | None = (0.0, 72 * 3600.0)) -> OfflineResult:
    return asyncio.run(run_offline(config, seed=seed, lots=lots, timeline=timeline))


def test_report_has_every_chart_and_table_and_needs_nothing_external(default_config: Config) -> None:
    result = _run(default_config)
    page = render_html(result.sim, build_report(result.sim))
    parsed = outline(page)
    for chart in ("chart-utilization", "chart-wip", "chart-lead-time", "chart-gantt"):
        assert parsed.ids.get(chart) == "svg", chart
    assert parsed.ids.get("table-stages") == "table"
    assert parsed.ids.get("table-machines") == "table"
    assert parsed.external == []


def test_lead_time_histogram_counts_every_completed_lot(default_config: Config) -> None:
    result = _run(default_config)
    page = render_html(result.sim, build_report(result.sim))
    histogram = re.search(r'<svg id="chart-lead-time".*?</svg>', page, re.S)
    assert histogram is not None
    bars = re.findall(r": ([\d,]+) (lots?)</title>", histogram.group(0))
    counts = [int(count.replace(",", "")) for count, _ in bars]
    assert sum(counts) == result.sim.stats.completed > 0
    assert all((noun == "lot") == (count == 1) for count, (_, noun) in zip(counts, bars, strict=True))


def test_a_histogram_bar_of_one_lot_says_1_lot() -> None:
    chart = svg.histogram("chart-lead-time", [60.0, 60.0, 120.0], "Lead time", bins=2)
    assert re.findall(r"<title>[^<]*: ([\d,]+ lots?)</title>", chart) == ["2 lots", "1 lot"]


def test_bottleneck_is_highlighted_in_chart_and_stage_table(default_config: Config) -> None:
    result = _run(default_config)
    report = build_report(result.sim)
    parsed = outline(render_html(result.sim, report))
    bottleneck = report["bottleneck"]
    highlighted = [cells[0] for cls, cells in parsed.row_classes if cls == "bottleneck"]
    assert highlighted == [bottleneck["stage"]]
    pool = bottleneck["pool"]
    assert f"{pool['stage']} · {pool['location']} (bottleneck)" in parsed.text


def test_gantt_draws_every_non_idle_interval_of_the_window(default_config: Config) -> None:
    result = _run(default_config, lots=100, timeline=(3600.0, 10 * 3600.0))
    page = render_html(result.sim, build_report(result.sim))
    gantt = re.search(r'<svg id="chart-gantt".*?</svg>', page, re.S)
    assert gantt is not None
    assert result.sim.timeline is not None
    busy = [i for i in result.sim.timeline.intervals if i[3] != "idle"]
    drawn = re.findall(r"<title>(\S+) (running|blocked|maintenance|off_shift) ", gantt.group(0))
    assert len(drawn) == len(busy) > 0
    assert {m for m, _ in drawn} <= set(result.sim.plant.machines)


def test_without_a_timeline_the_report_says_so() -> None:
    config = plant()
    result = _run(config, lots=20, timeline=None)
    parsed = outline(render_html(result.sim, build_report(result.sim)))
    assert parsed.ids["chart-gantt"] == "p"
    assert "No machine timeline was recorded for this run." in parsed.text


def test_names_from_the_config_are_escaped() -> None:
    config = plant(locations={'R&D <lab> "x"': {"timezone": "Europe/Rome", "machines": {"milling": 1}}})
    result = _run(config, lots=10)
    page = render_html(result.sim, build_report(result.sim))
    outline(page)
    assert "<lab>" not in page
    assert "R&amp;D &lt;lab&gt; &quot;x&quot;" in page


def test_same_seed_renders_identical_bytes(default_config: Config) -> None:
    first = _run(default_config, lots=150, seed=11)
    second = _run(default_config, lots=150, seed=11)
    page = render_html(first.sim, build_report(first.sim))
    assert page == render_html(second.sim, build_report(second.sim))
    other = _run(default_config, lots=150, seed=12)
    assert page != render_html(other.sim, build_report(other.sim))


def test_a_run_without_completed_lots_still_renders() -> None:
    config = plant(stages=[{"name": "slow", "machine_type": "milling",
                            "processing_time": {"distribution": "constant", "value": 10 * 3600}}])
    result = asyncio.run(run_offline(config, seed=1, lots=5, until_s=600.0))
    parsed = outline(render_html(result.sim, build_report(result.sim)))
    assert result.sim.stats.completed == 0
    assert "no completed lots" in parsed.text
