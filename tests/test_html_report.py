"""The HTML reports: self-contained and well-formed, every chart there, nice ticks and time axes, a Gantt
of the whole run whose cells add up to the machines' times, one machine order everywhere, OEE explained,
the overload banner, and the replicated and study pages built from real runs.  Deterministic bytes."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import tracemalloc
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.config.schema import Config
from simulator.model.machine import MachineState, Timeline
from simulator.programs.offline import OfflineResult, run_offline
from simulator.reporting import svg
from simulator.reporting.gantt_chart import tooltip_text
from simulator.reporting.html_report import render_html
from simulator.reporting.replications_html import render_replications_html
from simulator.reporting.run_charts import CELL_STEPS_S, MAX_LEAD_TIMES, run_charts, thin
from simulator.reporting.study_html import render_study_html
from simulator.reporting.summary import build_report
from simulator.reporting.timeaxis import clock, clock_span, time_axis
from simulator.studies.replications import RunLength, WarmUp, run_replications, summarize
from simulator.studies.scenarios import run_study
from simulator.studies.study_file import load_study

from harness.studies import write_vietnam_study
from plants import plant

ROOT = Path(__file__).resolve().parents[1]
WHOLE_RUN = (0.0, math.inf)
VOID = {"meta", "br", "img", "input", "link", "hr"}
SVG_SELF_CLOSING = {"path", "line", "rect", "circle", "polygon"}
RUN_CHARTS = ("chart-pool-states", "chart-wip", "chart-queues", "chart-waits", "chart-lead-time",
              "chart-lead-time-groups", "chart-gantt")
RUN_TABLES = ("table-pools", "table-lead-time-groups", "table-stages", "table-machines", "table-assumptions",
              "table-route")


class Outline(HTMLParser):
    """Checks nesting and collects ids, external references, text and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ids: dict[str, str] = {}
        self.external: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids[values["id"] or ""] = tag
        for name in ("src", "href"):
            value = values.get(name)
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag == "link" or (tag == "script" and values.get("src")):
            self.external.append(tag)
        if tag == "table":
            self._table = values.get("id") or ""
            self.tables[self._table] = []
        if tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        if tag == "td" and self._table is not None:
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID | SVG_SELF_CLOSING:
            self.errors.append(f"unexpected self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert parser.external == []
    return parser


def chart(page: str, chart_id: str) -> str:
    found = re.search(rf'<svg id="{chart_id}".*?</svg>', page, re.S)
    assert found is not None, chart_id
    return found.group(0)


def axis_labels(svg_text: str) -> list[str]:
    return re.findall(r'<text [^>]*class="axis">([^<]*)</text>', svg_text)


def _run(config: Config, *, lots: int | None = 300, seed: int = 3, until_s: float | None = None,
         timeline: tuple[float, float] | None = WHOLE_RUN) -> OfflineResult:
    return asyncio.run(run_offline(config, seed=seed, lots=lots, until_s=until_s, timeline=timeline))


def _page(result: OfflineResult) -> tuple[str, dict[str, Any], dict[str, Any]]:
    report, charts = build_report(result.sim), run_charts(result.sim)
    return render_html(report, charts), report, charts


def overloaded_plant() -> Config:
    """One machine, 100 s a lot, 60 lots an hour arriving: 1.67 machines of work for 1."""
    return plant(stages=[{"name": "mill", "machine_type": "milling",
                          "processing_time": {"distribution": "constant", "value": 100}}],
                 locations={"A": {"timezone": "Europe/Rome", "machines": {"milling": 1}}},
                 arrivals={"rate_per_hour": 60.0, "process": "fixed", "location_mix": {"A": 1.0}})


# --- ticks and time -------------------------------------------------------------------------------
@pytest.mark.parametrize("high", [0.4, 1, 2.5, 7, 9.5, 19, 23, 101, 999, 12_345])
def test_count_ticks_are_whole_evenly_spaced_nice_numbers_covering_the_data(high: float) -> None:
    ticks = svg.nice_ticks(0.0, high, integer=True)
    assert ticks[0] == 0 and ticks[-1] >= high
    assert all(t == int(t) for t in ticks)
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    step = steps.pop()
    assert step / 10 ** math.floor(math.log10(step)) in (1, 2, 5)
    assert 2 <= len(ticks) <= 11


def test_wip_ticks_read_0_5_10_15_20_not_0_9_5_19() -> None:
    assert svg.nice_ticks(0.0, 19.0, integer=True) == [0, 5, 10, 15, 20]
    fractional = svg.nice_ticks(0.0, 0.37, count=4)
    assert fractional == [0, 0.1, 0.2, 0.3, 0.4]
    assert [svg.tick_text(t, fractional) for t in fractional] == ["0.0", "0.1", "0.2", "0.3", "0.4"]


def test_instants_read_as_day_and_clock_time() -> None:
    assert clock(0) == "day 1 00:00"
    assert clock(2 * 86400 + 14 * 3600 + 5 * 60) == "day 3 14:05"
    assert clock(86400 + 7) == "day 2 00:00:07"
    assert clock_span(2 * 86400 + 14 * 3600 + 5 * 60, 2 * 86400 + 14 * 3600 + 41 * 60) == "day 3 14:05 – 14:41"
    assert clock_span(86400 - 600, 86400 + 1560) == "day 1 23:50 – day 2 00:26"


def test_the_gantt_tooltip_names_exact_times_and_the_state_shares() -> None:
    start = 2 * 86400 + 14 * 3600
    text = tooltip_text("Italia-tornio-01", ["running", 0.62, "idle", 0.376, "blocked", 0.004], start,
                        start + 3600)
    assert text == "Italia-tornio-01 · day 3 14:00 – 15:00 · running 62 %, idle 38 %, blocked <1 %"


def test_time_axes_count_hours_up_to_two_days_and_days_beyond() -> None:
    hours = time_axis(0.0, 20 * 3600.0)
    assert hours.unit == "h"
    assert [label for _, label in hours.ticks] == ["0 h", "4 h", "8 h", "12 h", "16 h", "20 h"]
    days = time_axis(0.0, 30 * 86400.0, start_utc="2025-06-25T06:00:00Z")
    assert days.unit == "day"
    assert [label for _, label in days.ticks] == ["day 1", "day 8", "day 15", "day 22", "day 29"]
    assert all(t == (int(label.split()[1]) - 1) * 86400 for t, label in days.ticks)
    assert "2025-06-25 06:00 UTC" in days.title


# --- a single run ---------------------------------------------------------------------------------
def test_every_chart_and_table_is_there_and_nothing_is_loaded_from_elsewhere(default_config: Config) -> None:
    page, report, _ = _page(_run(default_config))
    parsed = outline(page)
    for chart_id in RUN_CHARTS:
        assert parsed.ids.get(chart_id) == "svg", chart_id
    for table_id in RUN_TABLES:
        assert parsed.ids.get(table_id) == "table", table_id
    assert report["schema_version"] == 2
    assert "banner-overload" not in parsed.ids  # the reference plant keeps up


def test_thirty_days_read_in_days_with_whole_number_wip_ticks(default_config: Config) -> None:
    result = _run(default_config, lots=None, until_s=30 * 86400.0, seed=5)
    page, report, _ = _page(result)
    wip = chart(page, "chart-wip")
    labels = axis_labels(wip)
    days = [label for label in labels if label.startswith("day ")]
    counts = [label for label in labels if not label.startswith("day ")]
    assert days[0] == "day 1" and len(days) >= 4
    assert int(days[-1].split()[1]) <= 31
    values = [int(c.replace(",", "")) for c in counts]  # whole numbers only: "9.5" would not parse
    steps = {b - a for a, b in itertools.pairwise(values)}
    assert values[0] == 0 and len(steps) == 1 and values[-1] >= max(report["series"]["wip"])
    assert "simulated time (days; day 1 00:00 = 2025-06-25 06:00 UTC)" in wip
    # the line is the report's bucketed series, one point per bucket (merged when there are more buckets
    # than the chart is wide)
    buckets = len(report["series"]["wip"])
    drawn = re.search(r'<path d="M([^"]*)" fill="none" stroke="#1565c0"', wip)
    assert drawn is not None
    assert drawn.group(1).count("L") + 1 == math.ceil(buckets / math.ceil(buckets / 800))
    assert all(label.startswith("day ") for label in axis_labels(chart(page, "chart-gantt")))


def test_the_warm_up_is_shaded_on_the_wip_chart_and_marked_on_the_gantt(default_config: Config) -> None:
    result = asyncio.run(run_offline(default_config, seed=5, until_s=6 * 86400.0, timeline=WHOLE_RUN,
                                     warm_up_s=2 * 86400.0))
    page, report, _ = _page(result)
    assert report["series"]["warm_up_s"] == 2 * 86400.0
    shade = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" fill="#eceff1" '
                      r'class="warm-up">', chart(page, "chart-wip"))
    assert shade is not None
    frame = re.search(r'<path d="M([\d.]+),[\d.]+V[\d.]+H([\d.]+)" class="frame"/>', chart(page, "chart-wip"))
    assert frame is not None
    left, right = float(frame.group(1)), float(frame.group(2))
    assert float(shade.group(1)) == left
    assert float(shade.group(2)) == pytest.approx((right - left) / 3, abs=0.1)
    assert "warm-up (not counted)" in chart(page, "chart-wip")
    assert ">warm-up ends</text>" in chart(page, "chart-gantt")


def test_a_short_run_reads_in_hours(default_config: Config) -> None:
    page, _, _ = _page(_run(default_config, lots=30))
    labels = axis_labels(chart(page, "chart-wip"))
    assert any(label.endswith(" h") for label in labels)
    assert not any(label.startswith("day") for label in labels)


def test_the_histogram_has_axis_titles_nice_ticks_and_counts_every_lot(default_config: Config) -> None:
    result = _run(default_config)
    page, _, charts = _page(result)
    histogram = chart(page, "chart-lead-time")
    assert ">lead time (h)</text>" in histogram and ">lots</text>" in histogram
    bars = re.findall(r": ([\d,]+) (lots?)</title></rect>", histogram)
    assert sum(int(c.replace(",", "")) for c, _ in bars) == result.sim.stats.completed == charts["lead_times_total"]
    assert all((noun == "lot") == (c == "1") for c, noun in bars)
    ticks = [float(t.replace(",", "")) for t in axis_labels(histogram) if re.fullmatch(r"[\d,.]+", t)]
    assert ticks and all(t == int(t) for t in ticks)


def test_lead_times_are_thinned_evenly_and_deterministically() -> None:
    values = [float((i * 7919) % 120_001) for i in range(120_001)]
    thinned = thin(values)
    assert len(thinned) == MAX_LEAD_TIMES
    assert thinned == sorted(thinned) == thin(list(reversed(values)))
    assert thinned[0] == min(values) and thinned[-1] == max(values)
    assert abs(thinned[MAX_LEAD_TIMES // 2] - sorted(values)[60_000]) <= 3
    page = svg.histogram("chart-lead-time", thinned, "Lead time", total=len(values))
    counted = sum(int(c.replace(",", "")) for c in re.findall(r": ([\d,]+) lots?</title>", page))
    assert abs(counted - len(values)) <= 30  # bars scaled back to every value (rounded per bar)
    assert "from an even sample of 50,000 of 120,001 values" in page


def test_the_gantt_covers_the_whole_run_and_its_cells_add_up_to_each_machines_time(default_config: Config) -> None:
    result = _run(default_config, lots=400)
    sim = result.sim
    charts = run_charts(sim)
    gantt = charts["gantt"]
    assert gantt["start_s"] == 0.0 and gantt["end_s"] == pytest.approx(sim.now, abs=1e-3)
    cell = gantt["cell_s"]
    assert cell in CELL_STEPS_S and math.ceil(sim.now / cell) == len(gantt["machines"][0]["cells"]) <= 600
    for row in gantt["machines"]:
        machine = sim.plant.machines[row["id"]]
        booked = dict.fromkeys((s.value for s in MachineState), 0.0)
        for i, cells in enumerate(row["cells"]):
            span = min(sim.now, (i + 1) * cell) - i * cell
            for state, share in zip(cells[0::2], cells[1::2], strict=True):
                booked[state] += share * span
        for state in MachineState:
            assert booked[state.value] == pytest.approx(machine.time_in(state, sim.now), abs=1e-4 * sim.now), \
                (row["id"], state)
    page = render_html(build_report(sim), charts)
    data = json.loads(re.search(r'<script type="application/json">(.*?)</script>', page, re.S).group(1))
    assert (data["start"], data["end"]) == (0.0, gantt["end_s"])
    assert [r["id"] for r in data["rows"]] == [m["id"] for m in gantt["machines"]]


def test_simulate_draws_the_gantt_over_the_whole_run_unless_a_window_is_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def gantt_of(*extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
        html, report = tmp_path / "r.html", tmp_path / "r.json"
        code = main(["simulate", "--config", str(ROOT / "config.yaml"), "--lots", "400", "--seed", "4",
                     "--report-html", str(html), "--report-json", str(report), "--no-progress", *extra])
        capsys.readouterr()
        assert code == 0
        page = html.read_text(encoding="utf-8")
        found = re.search(r'<script type="application/json">(.*?)</script>', page, re.S)
        assert found is not None
        return json.loads(found.group(1)), json.loads(report.read_text(encoding="utf-8"))

    data, report = gantt_of()
    assert report["sim_duration_s"] > 4 * 86400  # well beyond the 72 h the Gantt used to stop at
    assert (data["start"], data["end"]) == (0.0, pytest.approx(report["sim_duration_s"], abs=1e-3))
    data, _ = gantt_of("--gantt-window", "1h,10h")
    assert (data["start"], data["end"]) == (3600.0, 36000.0)


def test_machines_are_listed_in_one_order_in_the_json_the_table_and_the_gantt() -> None:
    # config order of the machine types is not the route's, and ids do not sort like the locations
    config = plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "exponential", "mean": 300}},
                {"name": "check", "machine_type": "inspection",
                 "processing_time": {"distribution": "exponential", "mean": 200}}],
        locations={"Zeta": {"timezone": "Europe/Rome", "machines": {"inspection": 1, "milling": 2}},
                   "Alpha": {"timezone": "Europe/Rome", "machines": {"inspection": 2, "milling": 1}}},
        arrivals={"rate_per_hour": 6.0, "location_mix": {"Zeta": 0.5, "Alpha": 0.5}})
    result = _run(config, lots=60)
    page, report, charts = _page(result)
    expected = ["Zeta-milling-01", "Zeta-milling-02", "Zeta-inspection-01",
                "Alpha-milling-01", "Alpha-inspection-01", "Alpha-inspection-02"]
    assert list(report["machines"]) == expected
    assert [m["id"] for m in charts["gantt"]["machines"]] == expected
    parsed = outline(page)
    assert [row[0] for row in parsed.tables["table-machines"] if row] == expected
    assert re.findall(r'class="gantt-label">([^<]*)<', page) == expected
    pools = [(row[0], row[1]) for row in parsed.tables["table-pools"] if row]
    assert pools == [("Zeta", "milling"), ("Zeta", "inspection"), ("Alpha", "milling"), ("Alpha", "inspection")]


def test_oee_is_explained_next_to_the_machine_table(default_config: Config) -> None:
    page, _, _ = _page(_run(default_config, lots=50))
    found = re.search(r'<p class="note" id="oee-explained">(.*?)</p>', page, re.S)
    assert found is not None
    text = re.sub(r"<[^>]+>", "", found.group(1))
    assert "OEE (overall equipment effectiveness) = availability × performance × quality" in text
    assert "mean of its processing-time distribution" in text and "ideal_cycle_time_s" in text


def test_an_overloaded_plant_gets_a_banner_with_each_overload_message() -> None:
    result = _run(overloaded_plant(), lots=None, until_s=2 * 86400.0)
    page, report, _ = _page(result)
    assert report["steady"] is False and report["overload"]
    parsed = outline(page)
    assert parsed.ids.get("banner-overload") == "div"
    banner = re.search(r'<div id="banner-overload".*?</div>', page, re.S)
    assert banner is not None and "OVERLOADED" in banner.group(0)
    for overload in report["overload"]:
        assert escape(overload["message"]) in banner.group(0)


def test_names_from_the_config_are_escaped() -> None:
    config = plant(locations={'R&D <lab> "x"': {"timezone": "Europe/Rome", "machines": {"milling": 1}}})
    page, _, _ = _page(_run(config, lots=10))
    outline(page)
    assert "<lab>" not in page.replace("&lt;lab&gt;", "")
    assert "R&amp;D &lt;lab&gt; &quot;x&quot;" in page


def test_the_same_seed_renders_identical_bytes(default_config: Config) -> None:
    first, _, _ = _page(_run(default_config, lots=150, seed=11))
    second, _, _ = _page(_run(default_config, lots=150, seed=11))
    assert first == second
    other, _, _ = _page(_run(default_config, lots=150, seed=12))
    assert first != other


def test_a_run_without_completed_lots_or_timeline_still_renders() -> None:
    config = plant(stages=[{"name": "slow", "machine_type": "milling",
                            "processing_time": {"distribution": "constant", "value": 10 * 3600}}])
    result = asyncio.run(run_offline(config, seed=1, lots=5, until_s=600.0, timeline=None))
    page, _, charts = _page(result)
    parsed = outline(page)
    assert result.sim.stats.completed == 0 and charts["gantt"] is None
    assert "no completed lots" in parsed.text
    assert "No machine timeline was recorded for this run." in parsed.text


# --- the timeline stays small ---------------------------------------------------------------------
def test_a_timeline_of_a_million_intervals_takes_a_few_tens_of_megabytes() -> None:
    timeline = Timeline(0.0, math.inf)
    machines = [f"Plant-type-{i:02d}" for i in range(26)]
    states = ["running", "idle", "blocked", "idle"]
    tracemalloc.start()
    try:
        for i in range(1_000_000):
            timeline.add(machines[i % 26], i * 10.0, i * 10.0 + 9.0, states[i % 4], f"L-{i}")
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(timeline) == 1_000_000
    assert used < 40 * 2**20, f"{used / 2**20:.0f} MiB"
    assert list(timeline.intervals_of(machines[0]))[:2] == [(0.0, 9.0, "running"), (260.0, 269.0, "blocked")]


def test_the_timeline_clips_to_its_window_and_joins_an_unbroken_state() -> None:
    timeline = Timeline(100.0, 200.0)
    timeline.add("m", 50.0, 120.0, "running", "L-1")
    timeline.add("m", 120.0, 150.0, "running", "L-2")  # the next lot, no gap: one interval
    timeline.add("m", 150.0, 260.0, "idle", None)
    timeline.add("m", 260.0, 300.0, "running", "L-3")  # after the window
    assert list(timeline.intervals_of("m")) == [(100.0, 150.0, "running"), (150.0, 200.0, "idle")]


# --- replications and studies ---------------------------------------------------------------------
def test_the_replicated_report_shows_every_section_with_intervals(default_config: Config) -> None:
    replicated = run_replications(default_config, seed=3, count=3, length=RunLength(lots=150),
                                  warm_up=WarmUp("none"), jobs=1, charts=True)
    summary = summarize(replicated)
    page = render_replications_html(summary)
    parsed = outline(page)
    for chart_id in (*RUN_CHARTS, "chart-replications"):
        assert parsed.ids.get(chart_id) == "svg", chart_id
    for table_id in (*RUN_TABLES, "table-replications", "table-headline"):
        assert parsed.ids.get(table_id) == "table", table_id
    cards = dict((label, value) for value, label in re.findall(
        r'<div class="card"><div class="v">(.*?)</div><div class="k">([^<]*)</div></div>', page))
    for label in ("throughput (lots/h)", "lead time mean", "lead time p95", "mean WIP (lots)"):
        value = r"[\d.,]+( (h|min|s))?"
        assert re.fullmatch(rf'{value}<span class="ci">{value} – {value}</span>', cards[label]), label
    assert cards["lots received"] == "150"  # every replication received 150: no interval to show
    dots = chart(page, "chart-replications")
    assert len(re.findall(r'<circle [^>]*class="dot"><title>replication \d+:', dots)) == 3 * 4 + 3 * (
        summary["bottleneck"] is not None)
    assert 'class="band"' in chart(page, "chart-wip")  # the 95% band around the mean series
    assert [row[0] for row in parsed.tables["table-machines"] if row] == \
        [m["id"] for m in summary["charts"]["gantt"]["machines"]]
    assert page == render_replications_html(summary)


def test_the_study_page_compares_scenarios_with_intervals_and_shows_the_search(tmp_path: Path) -> None:
    study_file = tmp_path / "study.yaml"
    write_vietnam_study(study_file, replications=3, lots=120)
    study = run_study(load_study(study_file), jobs=1)
    page = render_study_html(study)
    parsed = outline(page)
    assert [row[0] for row in parsed.tables["table-scenarios"] if row] == ["today", "one lathe"]
    for k in (1, 2):
        rows = re.findall(r'<text [^>]*text-anchor="end">([^<]*)</text>', chart(page, f"chart-kpi-{k}"))
        assert rows == ["today", "one lathe"]
    differences = [row for row in parsed.tables["table-differences"] if row]
    assert len(differences) == len(study["comparisons"]) == 2
    assert all(row[-1] in ("yes", "no") for row in differences)
    steps = [row for row in parsed.tables["table-search"] if row]
    assert len(steps) == len(study["search"]["steps"]) >= 1
    answer = re.search(r'<div id="search-answer".*?</div>', page, re.S)
    assert answer is not None and escape(study["search"]["message"]) in answer.group(0)
    assert page == render_study_html(study)
