"""The three HTML reports (a run, replications, a study), generated from real small runs, looked at in a
real headless Chromium: each loads without console errors or requests, every chart and table is drawn
with a non-zero size, and pointing at a Gantt cell shows its exact times and state shares."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from simulator.config.schema import Config
from simulator.programs.offline import run_offline
from simulator.reporting.gantt_chart import LABEL_W, PLOT_W, ROW_H, TOP, tooltip_text
from simulator.reporting.html_report import render_html
from simulator.reporting.replications_html import render_replications_html
from simulator.reporting.run_charts import run_charts
from simulator.reporting.study_html import render_study_html
from simulator.reporting.summary import build_report
from simulator.studies.replications import RunLength, WarmUp, run_replications, summarize
from simulator.studies.scenarios import run_study
from simulator.studies.study_file import load_study

from harness.dependencies import require_executable
from harness.studies import write_vietnam_study

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
RUN_CHARTS = ["chart-pool-states", "chart-wip", "chart-queues", "chart-waits", "chart-lead-time",
              "chart-lead-time-groups", "chart-gantt"]
RUN_TABLES = ["table-pools", "table-lead-time-groups", "table-stages", "table-machines", "table-assumptions"]
EXPECTED = {
    "run": RUN_CHARTS + RUN_TABLES,
    "replications": [*RUN_CHARTS, "chart-replications", *RUN_TABLES, "table-replications", "table-headline"],
    "study": ["chart-kpi-1", "chart-kpi-2", "table-scenarios", "table-differences", "table-search"],
}


def single_run(config: Config) -> tuple[str, dict[str, Any]]:
    result = asyncio.run(run_offline(config, seed=3, lots=200, timeline=(0.0, math.inf)))
    charts = run_charts(result.sim)
    return render_html(build_report(result.sim), charts), charts


def replicated(config: Config) -> str:
    runs = run_replications(config, seed=3, count=3, length=RunLength(lots=100), warm_up=WarmUp("none"), jobs=1,
                            charts=True)
    return render_replications_html(summarize(runs))


def study(tmp_path: Path) -> str:
    path = tmp_path / "study.yaml"
    write_vietnam_study(path, replications=2, lots=80)
    return render_study_html(run_study(load_study(path), jobs=1))


class Watched:
    """A page in Chromium with its console errors, page errors and every request it made."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(str(e)))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        page.on("request", lambda r: self.requests.append(r.url))


def _open(playwright: Any, chromium: str, html: str, tmp_path: Path, name: str) -> tuple[Any, Watched]:
    path = tmp_path / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = Watched(page)
    response = page.goto(path.as_uri())
    assert response is not None and response.ok
    page.wait_for_load_state("load")
    return browser, watched


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["run", "replications", "study"])
def test_the_report_loads_and_draws_every_chart(kind: str, default_config: Config, tmp_path: Path) -> None:
    chromium = require_executable("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    html = {"run": lambda: single_run(default_config)[0], "replications": lambda: replicated(default_config),
            "study": lambda: study(tmp_path)}[kind]()
    with sync_playwright() as playwright:
        browser, watched = _open(playwright, chromium, html, tmp_path, kind)
        try:
            drawn = watched.page.eval_on_selector_all(
                "[id^='chart-'], [id^='table-']",
                """els => els.map(e => {
                    const box = e.getBoundingClientRect();
                    const marks = [...e.querySelectorAll('path, rect, circle, polygon, td')]
                        .filter(m => { const b = m.getBoundingClientRect(); return b.width > 0 || b.height > 0; });
                    return [e.id, e.tagName.toLowerCase(), box.width, box.height, marks.length];
                })""")
        finally:
            browser.close()
    seen = {chart_id: (tag, width, height, marks) for chart_id, tag, width, height, marks in drawn}
    for expected in EXPECTED[kind]:
        assert expected in seen, f"{expected} missing from the {kind} report"
        tag, width, height, marks = seen[expected]
        assert tag == ("table" if expected.startswith("table-") else "svg"), expected
        assert width > 100 and height > 40 and marks > 0, (expected, seen[expected])
    assert watched.problems == []
    assert all(url.startswith("file:") for url in watched.requests), watched.requests


@pytest.mark.timeout(300)
def test_pointing_at_a_gantt_cell_shows_its_exact_times_and_shares(default_config: Config,
                                                                           tmp_path: Path) -> None:
    chromium = require_executable("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    html, charts = single_run(default_config)
    gantt = charts["gantt"]
    start, end, cell = gantt["start_s"], gantt["end_s"], gantt["cell_s"]
    assert start == 0.0 and end > 72 * 3600  # the whole run, beyond the old 72 h window
    with sync_playwright() as playwright:
        browser, watched = _open(playwright, chromium, html, tmp_path, "gantt")
        try:
            watched.page.locator("#chart-gantt").scroll_into_view_if_needed()
            tip = watched.page.locator(".gantt .tip")
            assert tip.is_hidden()
            first = int(start // cell)
            for row, index in ((0, 3), (5, len(gantt["machines"][5]["cells"]) // 2),
                               (len(gantt["machines"]) - 1, len(gantt["machines"][-1]["cells"]) - 2)):
                lo, hi = max(start, index * cell), min(end, (index + 1) * cell)
                x = LABEL_W + PLOT_W * ((lo + hi) / 2 - start) / (end - start)
                y = TOP + row * ROW_H + ROW_H / 2
                a, e = watched.page.evaluate(
                    "() => { const m = document.getElementById('chart-gantt').getScreenCTM(); return [m.a, m.e]; }")
                f, d = watched.page.evaluate(
                    "() => { const m = document.getElementById('chart-gantt').getScreenCTM(); return [m.f, m.d]; }")
                px, py = round(x * a + e), round(y * d + f)
                # the cell under that whole pixel (a cell is one or two pixels wide)
                t = start + ((px - e) / a - LABEL_W) / PLOT_W * (end - start)
                under = min(math.floor(t / cell) - first, len(gantt["machines"][row]["cells"]) - 1)
                assert abs(under - index) <= 1
                lo, hi = max(start, (first + under) * cell), min(end, (first + under + 1) * cell)
                machine = gantt["machines"][row]
                watched.page.mouse.move(px, py)
                tip.wait_for(state="visible", timeout=5000)
                assert tip.text_content() == tooltip_text(machine["id"], machine["cells"][under], lo, hi)
            assert "day " in (tip.text_content() or "")
            watched.page.mouse.move(5, 5)
            tip.wait_for(state="hidden", timeout=5000)
        finally:
            browser.close()
    assert watched.problems == []
