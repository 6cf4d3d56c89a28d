"""Scenarios run with common random numbers compare more precisely than with independent seeds; the
study runs end to end from the command line and writes its JSON and HTML."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator.cli import main
from simulator.studies.scenarios import run_study
from simulator.studies.study_file import load_study

# Poisson arrivals, exponential processing: turning on 2 lathes (62.5 % busy; 3 would be 42 %), then
# testing on 20 test rigs whose long, variable times make most of the lead time's variance
PLANT = """\
simulation: {seed: 11}
locations:
  A: {timezone: UTC, machines: {lathe: 2, test: 20}}
route:
  - {name: turning, machine_type: lathe, processing_time: {distribution: exponential, mean: 100}}
  - {name: testing, machine_type: test, processing_time: {distribution: exponential, mean: 1000}}
disruptions: {block_probability: 0.0}
arrivals: {rate_per_hour: 45, process: poisson, location_mix: {A: 1}, priority_mix: {normale: 1}}
telemetry: {cycle_records: false, lot_events: false}
"""


def _study_file(tmp_path: Path, body: str, name: str = "study.yaml") -> Path:
    (tmp_path / "plant.yaml").write_text(PLANT, encoding="utf-8")
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _two_pools(tmp_path: Path, seed: int, crn: bool) -> dict[str, Any]:
    path = _study_file(tmp_path, f"""\
        name: two or three lathes
        base: plant.yaml
        replications: 8
        lots: 400
        seed: {seed}
        common_random_numbers: {str(crn).lower()}
        kpis: [lead_time_s.mean, wip.mean]
        scenarios:
          - name: two
          - name: three
            overrides: {{locations.A.machines.lathe: 3}}
        """, f"study-{seed}-{crn}.yaml")
    return run_study(load_study(path), jobs=1)


def _difference(study: dict[str, Any], kpi: str) -> dict[str, Any]:
    comparison = next(c for c in study["comparisons"] if (c["a"], c["b"], c["kpi"]) == ("two", "three", kpi))
    return dict(comparison)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_common_random_numbers_give_a_narrower_difference_interval(tmp_path: Path, seed: int) -> None:
    paired = _two_pools(tmp_path, seed, crn=True)
    independent = _two_pools(tmp_path, seed, crn=False)
    # the same seeds for both scenarios with CRN, seeds of their own without
    assert paired["scenarios"][0]["result"]["seeds"] == paired["scenarios"][1]["result"]["seeds"]
    assert not set(independent["scenarios"][0]["result"]["seeds"]) & set(independent["scenarios"][1]["result"]["seeds"])
    for kpi in ("lead_time_s.mean", "wip.mean"):
        with_crn, without = _difference(paired, kpi), _difference(independent, kpi)
        assert with_crn["paired"] and not without["paired"]
        # a third lathe shortens the lead time; CRN sees it with an interval at most half as wide
        assert with_crn["difference"]["mean"] < 0 and with_crn["significant"]
        assert with_crn["difference"]["half_width"] < 0.5 * without["difference"]["half_width"], (kpi, seed)


def test_precision_mode_replicates_each_scenario_until_its_interval_is_narrow(tmp_path: Path) -> None:
    path = _study_file(tmp_path, """\
        name: precise
        base: plant.yaml
        precision: {kpi: lead_time_s.mean, relative: 8%, max_replications: 40}
        lots: 300
        scenarios:
          - name: two
          - name: three
            overrides: {locations.A.machines.lathe: 3}
        """)
    study = run_study(load_study(path), jobs=1)
    assert study["replications"] is None
    assert study["precision"] == {"kpi": "lead_time_s.mean", "relative": 0.08, "max_replications": 40}
    for scenario in study["scenarios"]:
        result = scenario["result"]
        assert result["precision"]["reached"], result["precision"]
        assert result["kpis"]["lead_time_s.mean"]["half_width"] <= 0.08 * result["kpis"]["lead_time_s.mean"]["mean"]
    counts = [s["result"]["replications"] for s in study["scenarios"]]
    comparison = _difference(study, "lead_time_s.mean")
    assert comparison["difference"]["n"] == min(counts)  # pairs: the replications both ran (the same seeds)


def test_an_automatic_warm_up_is_decided_once_for_every_scenario(tmp_path: Path) -> None:
    path = _study_file(tmp_path, """\
        name: warm
        base: plant.yaml
        replications: 3
        until: 2d
        warm_up: auto
        scenarios:
          - name: two
          - name: three
            overrides: {locations.A.machines.lathe: 3}
        """)
    study = run_study(load_study(path), jobs=1)
    warm_up = study["warm_up"]
    assert warm_up["method"] == "mser-5"
    assert "decided once, on the first scenario (two)" in warm_up["decided"]
    for scenario in study["scenarios"]:
        assert scenario["result"]["warm_up"]["warm_up_s"] == warm_up["warm_up_s"]


def test_the_study_command_writes_json_and_html_and_prints_the_comparison(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _study_file(tmp_path, """\
        name: command line
        base: plant.yaml
        replications: 3
        lots: 200
        kpis: [lead_time_s.mean, pools.A.lathe.utilization]
        scenarios:
          - name: two
          - name: three
            overrides: {locations.A.machines.lathe: 3}
        search:
          pools: {A.lathe: [1, 4]}
          targets: ["pools.A.lathe.utilization <= 50%"]
          judge: mean
        """)
    out_dir = tmp_path / "out" / "study"
    code = main(["study", str(path), "--out", str(out_dir), "--jobs", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    study = orjson.loads((out_dir / "study.json").read_bytes())
    assert study["kind"] == "study" and study["name"] == "command line"
    assert [s["name"] for s in study["scenarios"]] == ["two", "three"]
    assert study["search"]["answer"]["machines"] == {"A.lathe": 3}  # 1.25 lathes of work under 50 %: 3
    html = (out_dir / "study.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") or html.startswith("<!doctype html>")
    assert "command line" in html
    lines = out.splitlines()
    assert lines[0].startswith("study 'command line': 2 scenarios, 3 replications each of 200 lots")
    assert any(line.startswith("three ") for line in lines)
    assert any(line.startswith("  vs two ") and "*" in line for line in lines)  # a third lathe: significant
    assert lines[-1].startswith("search (") and "A needs 3 lathe (A.lathe utilisation " in lines[-1]
