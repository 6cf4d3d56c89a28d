"""Replications of `simulate`: seeds, determinism whatever the number of jobs, the replicated
report, the sequential precision procedure, warm-ups, usage errors and Ctrl-C."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from simulator.cli import main
from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.model.randomness import derive_seed
from simulator.programs.offline import run_offline
from simulator.reporting.summary import build_report
from simulator.studies.aggregate import aggregate_bottleneck, aggregate_overload, aggregate_series, numeric_leaves
from simulator.studies.precision import PrecisionTarget, run_to_precision
from simulator.studies.replications import RunLength, WarmUp, replication_seed, run_replications, summarize
from simulator.studies.runs import pilot_seed

ROOT = Path(__file__).resolve().parents[1]


def _plant_data(per_hour: float = 50.4, servers: int = 2) -> dict[str, Any]:
    """An M/M/c station: one stage of exponential 100 s on ``servers`` machines, Poisson arrivals."""
    return {
        "locations": {"A": {"timezone": "UTC", "machines": {"milling": servers}}},
        "route": [{"name": "s", "machine_type": "milling",
                   "processing_time": {"distribution": "exponential", "mean": 100.0}}],
        "arrivals": {"rate_per_hour": per_hour, "process": "poisson", "priority_mix": {"normale": 1}},
        "telemetry": {"cycle_records": False, "lot_events": False},
        "disruptions": {"block_probability": 0.0},
        "simulation": {"seed": 11},
    }


def _plant(**kwargs: Any) -> Config:
    return parse(_plant_data(**kwargs), environ={})


@pytest.fixture
def plant_file(tmp_path: Path) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(_plant_data()), encoding="utf-8")
    return path


def _json(summary: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in summary.items() if k != "jobs"}, option=orjson.OPT_INDENT_2)


# --- seeds ----------------------------------------------------------------------------------------
def test_replication_seeds_derive_from_the_run_seed() -> None:
    assert replication_seed(42, 0) == 42  # replication 0 is the single run of the run seed
    seeds = [replication_seed(42, i) for i in range(1, 2000)]
    assert seeds[0] == derive_seed(42, "replication", "1") & (2**63 - 1)
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    assert 42 not in seeds
    assert [replication_seed(43, i) for i in range(1, 5)] != seeds[:4]  # another run seed, other replications
    assert not set(pilot_seed(42, i) for i in range(5)) & set(seeds)  # the warm-up pilot has its own runs


def test_replication_zero_is_the_single_run_of_the_seed() -> None:
    import asyncio

    config = _plant()
    replicated = run_replications(config, seed=7, count=2, length=RunLength(until_s=5 * 3600),
                                  warm_up=WarmUp("none"), jobs=1)
    single = build_report(asyncio.run(run_offline(config, seed=7, until_s=5 * 3600, timeline=None)).sim)
    assert replicated.seeds == [7, replication_seed(7, 1)]
    assert replicated.reports[0]["lead_time_s"] == single["lead_time_s"]
    assert replicated.reports[0]["lots"] == single["lots"]
    assert replicated.reports[1]["lots"] != single["lots"]


# --- determinism ----------------------------------------------------------------------------------
def test_one_job_and_two_jobs_give_the_same_report_and_a_study_extends() -> None:
    config = _plant()
    length = RunLength(until_s=10 * 3600)
    one = run_replications(config, seed=3, count=4, length=length, warm_up=WarmUp("fixed", 3600), jobs=1)
    two = run_replications(config, seed=3, count=4, length=length, warm_up=WarmUp("fixed", 3600), jobs=2)
    assert (one.jobs, two.jobs) == (1, 2)
    assert _json(summarize(one)) == _json(summarize(two))
    # replications 2 and 3 run on their own are the same as within the four
    later = run_replications(config, seed=3, count=2, first=2, length=length, warm_up=WarmUp("fixed", 3600), jobs=2)
    assert later.seeds == one.seeds[2:]
    assert orjson.dumps(later.reports) == orjson.dumps(one.reports[2:])


# --- the replicated report ------------------------------------------------------------------------
def test_every_numeric_kpi_has_its_interval_and_values() -> None:
    replicated = run_replications(_plant(), seed=5, count=5, length=RunLength(lots=300), warm_up=WarmUp("none"),
                                  jobs=1)
    summary = summarize(replicated)
    assert summary["kind"] == "replications" and summary["replications"] == 5
    assert summary["length"] == {"lots": 300, "until_s": None}
    paths = [p for p, _ in numeric_leaves(replicated.reports[0])]
    assert list(summary["kpis"]) == paths
    assert "lead_time_s.p95" in paths and "throughput_per_hour" in paths and "seed" not in paths
    assert not any(p.startswith(("series.", "assumptions.")) for p in paths)
    lead = summary["kpis"]["lead_time_s.mean"]
    values = [r["lead_time_s"]["mean"] for r in replicated.reports]
    assert lead["values"] == values and lead["n"] == 5
    mean = sum(values) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    half = 2.776445105 * sd / math.sqrt(5)  # t(0.975, 4)
    assert lead["mean"] == pytest.approx(mean) and lead["sd"] == pytest.approx(sd, rel=1e-5)
    assert lead["half_width"] == pytest.approx(half, rel=1e-5)
    assert lead["ci95"] == pytest.approx([mean - half, mean + half], rel=1e-5)
    assert summary["kpis"]["lots.completed"]["values"] == [300] * 5  # a terminating study: every lot done
    assert summary["kpis"]["lots.completed"]["half_width"] == 0.0


def _report(bottleneck: tuple[str, str, str] | None, overload: list[tuple[str, str, float]], series: list[float],
            bucket_s: float = 60.0, utilization: float = 0.5) -> dict[str, Any]:
    return {
        "pools": {"A": {"milling": {"utilization": utilization, "load": 0.9},
                        "lathe": {"utilization": utilization / 2, "load": 1.2}}},
        "bottleneck": None if bottleneck is None else {"stage": bottleneck[2], "stage_busy": 0.9, "pool": {
            "location": bottleneck[0], "machine_type": bottleneck[1], "stage": bottleneck[2], "busy": 0.9,
            "utilization": utilization, "mean_wait_s": 10.0, "queue_share": 0.6}},
        "overload": [{"location": loc, "machine_type": t, "stages": ["s"], "machines": 2, "load": load,
                      "message": f"{loc} {t}: load {load}"} for loc, t, load in overload],
        "steady": not overload,
        "series": {"bucket_s": bucket_s, "warm_up_s": 0.0, "wip": series,
                   "pools": {"A": {"milling": {"queue_length": series, "wait_s": [None] * len(series)}}}},
    }


def test_overload_bottleneck_and_series_are_counted_over_the_replications() -> None:
    reports = [
        _report(("A", "milling", "s"), [("A", "lathe", 1.2)], [1.0, 3.0, 5.0, 7.0], utilization=0.5),
        _report(("A", "milling", "s"), [("A", "lathe", 1.4)], [2.0, 4.0, 6.0, 8.0], utilization=0.7),
        _report(("A", "lathe", "t"), [], [2.0, 6.0], bucket_s=120.0, utilization=0.6),  # a run with wider buckets
    ]
    overload = aggregate_overload(reports)
    assert [(o["location"], o["machine_type"], o["replications"]) for o in overload] == [("A", "lathe", 2)]
    assert overload[0]["message"] == "A lathe: load 1.4"  # from the worst replication
    assert overload[0]["load"]["n"] == 3  # the pool's load in every replication
    bottleneck = aggregate_bottleneck(reports)
    assert bottleneck is not None
    assert (bottleneck["location"], bottleneck["machine_type"], bottleneck["replications"]) == ("A", "milling", 2)
    assert bottleneck["utilization"]["mean"] == pytest.approx(0.6)  # over all three replications
    assert bottleneck["queue_share"]["n"] == 2  # over the two that named it
    series = aggregate_series(reports)
    assert series is not None and series["bucket_s"] == 120.0
    assert series["wip"]["mean"] == pytest.approx([(2 + 3 + 2) / 3, (6 + 7 + 6) / 3], abs=1e-4)
    assert series["wip"]["low"][0] < series["wip"]["mean"][0] < series["wip"]["high"][0]
    assert series["pools"]["A"]["milling"]["wait_s"]["mean"] == [None, None]


# --- sequential precision -------------------------------------------------------------------------
def test_precision_stops_when_reached_and_at_the_cap() -> None:
    config = _plant()
    length = RunLength(until_s=20 * 3600)
    loose, info = run_to_precision(config, seed=1, start=3, target=PrecisionTarget("throughput_per_hour", 0.5, 20),
                                   length=length, warm_up=WarmUp("none"), jobs=1)
    assert info["reached"] and info["replications"] == 3 == len(loose.reports)

    grown, info = run_to_precision(config, seed=1, start=3, target=PrecisionTarget("lead_time_s.mean", 0.06, 60),
                                   length=length, warm_up=WarmUp("none"), jobs=2)
    assert info["reached"] and 3 < info["replications"] < 60
    assert info["achieved_relative"] <= 0.06
    summary = summarize(grown, precision=info)
    assert summary["precision"] == info and summary["replications"] == info["replications"]
    # the replications added are the next of the same study
    assert grown.seeds == [replication_seed(1, i) for i in range(info["replications"])]

    capped, info = run_to_precision(config, seed=1, start=3, target=PrecisionTarget("lead_time_s.mean", 0.001, 7),
                                    length=length, warm_up=WarmUp("none"), jobs=1)
    assert not info["reached"] and info["replications"] == 7 == info["cap"] == len(capped.reports)
    assert info["achieved_relative"] > 0.001


# --- warm-up --------------------------------------------------------------------------------------
def test_a_fixed_warm_up_counts_statistics_after_it() -> None:
    replicated = run_replications(_plant(), seed=2, count=2, length=RunLength(until_s=20 * 3600),
                                  warm_up=WarmUp("fixed", 4 * 3600), jobs=1)
    summary = summarize(replicated)
    assert summary["warm_up"] == {"method": "fixed", "warm_up_s": 14400.0, "pilot": None, "warnings": []}
    assert all(r["warm_up_s"] == 14400.0 and r["observed_s"] == pytest.approx(16 * 3600) for r in replicated.reports)
    with pytest.raises(ValueError, match="must be shorter than the run"):
        run_replications(_plant(), seed=2, count=2, length=RunLength(until_s=3600), warm_up=WarmUp("fixed", 3600))
    # a terminating run can end before its warm-up: the report says so
    short = summarize(run_replications(_plant(), seed=2, count=2, length=RunLength(lots=20),
                                       warm_up=WarmUp("fixed", 30 * 86400), jobs=1))
    assert short["warm_up"]["warnings"] == ["2 of 2 replications ended before the warm-up: their statistics cover "
                                            "the whole run"]


def test_auto_warm_up_runs_a_pilot_and_cuts_at_a_bucket_boundary() -> None:
    calls: list[tuple[int, int]] = []
    replicated = run_replications(_plant(per_hour=64.8), seed=4, count=3, length=RunLength(until_s=40 * 3600),
                                  warm_up="auto", jobs=1, progress=lambda d, t: calls.append((d, t)))
    warm = summarize(replicated)["warm_up"]
    assert warm["method"] == "mser-5"
    pilot = warm["pilot"]
    assert pilot["replications"] == 3 and len(pilot["truncation_s"]) == 3 and pilot["series"] == "wip"
    assert warm["warm_up_s"] == max(pilot["truncation_s"])
    assert all(t % pilot["bucket_s"] == 0 and t < 20 * 3600 for t in pilot["truncation_s"])
    assert calls[-1] == (6, 6) and calls[0] == (1, 6)  # three pilot runs, then three replications
    assert all(r["warm_up_s"] == warm["warm_up_s"] for r in replicated.reports)
    with pytest.raises(ValueError, match="fixed simulated length"):
        run_replications(_plant(), seed=4, count=3, length=RunLength(lots=100), warm_up="auto", jobs=1)


# --- the command line -----------------------------------------------------------------------------
def test_simulate_replications_end_to_end(plant_file: Path, tmp_path: Path) -> None:
    report = tmp_path / "replicated.json"
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "simulate", "--config", str(plant_file), "--until", "12h",
         "--replications", "4", "--jobs", "2", "--seed", "9", "--warm-up", "1h", "--report-json", str(report),
         "--progress"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(report.read_bytes())
    assert summary["replications"] == 4 and summary["jobs"] == 2 and summary["seed"] == 9
    assert summary["seeds"] == [replication_seed(9, i) for i in range(4)]
    assert summary["length"] == {"lots": None, "until_s": 43200.0}
    assert summary["warm_up"]["method"] == "fixed" and summary["warm_up"]["warm_up_s"] == 3600.0
    assert summary["precision"] is None
    lead = summary["kpis"]["lead_time_s.mean"]
    assert lead["n"] == 4 and len(lead["values"]) == 4 and lead["ci95"][0] < lead["mean"] < lead["ci95"][1]
    out = done.stdout
    assert "4 replications of 12h 00m each (run seed 9, 2 jobs)" in out
    assert "warm-up: 1h 00m (fixed)" in out
    assert "lead time mean" in out and " ± " in out
    assert "4/4 replications" in done.stderr  # the progress bar


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_precision_and_a_single_run_warm_up(plant_file: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "precision.json"
    code, out, _ = _run(capsys, "simulate", "--config", str(plant_file), "--until", "12h", "--precision", "40%",
                        "--replications", "3", "--max-replications", "12", "--precision-kpi", "wip.mean",
                        "--jobs", "1", "--report-json", str(report))
    assert code == 0
    precision = orjson.loads(report.read_bytes())["precision"]
    assert precision["kpi"] == "wip.mean" and precision["target_relative"] == 0.4 and precision["cap"] == 12
    assert "precision: wip.mean ±" in out and "target ±40.0%" in out
    single = tmp_path / "single.json"
    code, out, _ = _run(capsys, "simulate", "--config", str(plant_file), "--until", "12h", "--warm-up", "2h",
                        "--report-json", str(single))
    assert code == 0
    assert orjson.loads(single.read_bytes())["warm_up_s"] == 7200.0
    assert "warm-up: 2h 00m: statistics cover the 10h 00m after it" in out
    code, out, _ = _run(capsys, "simulate", "--config", str(plant_file), "--until", "12h", "--warm-up", "auto",
                        "--report-json", str(single))
    assert code == 0
    report = orjson.loads(single.read_bytes())
    assert report["warm_up_s"] % report["series"]["bucket_s"] == 0 and report["warm_up_s"] < 6 * 3600
    assert "(MSER-5 on the WIP of a pilot run)" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--until", "1d", "--replications", "0"], "--replications must be at least 1, got 0"),
    (["--until", "1d", "--replications", "3", "--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--until", "1d", "--jobs", "2"], "--jobs runs replications in parallel"),
    (["--until", "1d", "--precision", "0%"], "--precision: a relative half-width above 0% and below 100%"),
    (["--until", "1d", "--precision", "150%"], "got '150%'"),
    (["--until", "1d", "--precision", "five"], "--precision: a relative half-width"),
    (["--until", "1d", "--precision", "5%", "--precision-kpi", "lead_time.p95"],
     "--precision-kpi: no KPI 'lead_time.p95' (closest: lead_time_s.p95"),
    (["--until", "1d", "--precision", "5%", "--replications", "2"], "--precision starts with at least 3"),
    (["--until", "1d", "--precision", "5%", "--max-replications", "5"], "--max-replications (5) must be at least"),
    (["--until", "1d", "--max-replications", "5"], "--max-replications belongs to --precision"),
    (["--lots", "50", "--warm-up", "auto"], "--warm-up auto needs --until"),
    (["--until", "1d", "--warm-up", "1d"], "--warm-up (1d 00h) must be shorter than --until (1d 00h)"),
    (["--until", "1d", "--warm-up", "soon"], "--warm-up: a simulated duration (e.g. 12h, 2d), auto"),
    (["--until", "1d", "--lots", "50", "--replications", "3"], "give --lots N (a terminating study"),
    (["--lots", "50", "--replications", "3", "--telemetry-out", "t.jsonl"],
     "--replications and --telemetry-out exclude each other"),
])
def test_study_flags_misused_are_usage_errors(argv: list[str], message: str, plant_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "simulate", "--config", str(plant_file), *argv)
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and out == ""


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes in the session ``pid`` leads (from /proc): orphans too."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _wait_for(condition: Any, timeout: float, pause: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(pause)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes in /proc")
@pytest.mark.parametrize("started", [1, 2], ids=["while-workers-start", "workers-running"])
def test_ctrl_c_stops_the_workers_with_exit_130_and_no_tracebacks(plant_file: Path, started: int) -> None:
    """Ctrl-C once the workers run, and also while they are being started (it must not be lost)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "simulate", "--config", str(plant_file), "--until", "3650d",
         "--replications", "4", "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        _wait_for(lambda: len(_workers_of(process.pid)) >= started, timeout=60, pause=0.002)
        workers = _workers_of(process.pid)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert err.strip().endswith("factorysim: interrupted")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    _wait_for(lambda: not _workers_of(process.pid) and not any(Path(f"/proc/{w}").exists() for w in workers),
              timeout=10)


def test_the_progress_bar_counts_pilot_runs_then_replications() -> None:
    import io

    from simulator.studies.progress import ReplicationsBar

    stream = io.StringIO()
    bar = ReplicationsBar(pilots=2, stream=stream)
    for done in range(6):
        bar(done, 6)
    bar.close()
    lines = stream.getvalue().split("\r")
    assert "warm-up pilot 0/2" in lines[1] and "estimating" in lines[1]
    assert "warm-up pilot 2/2" in lines[3]
    assert "1/4 replications" in lines[4] and "elapsed" in lines[4] and "left" in lines[4]
    assert lines[-1].rstrip().endswith("left") and "3/4 replications" in lines[-1]
    assert stream.getvalue().endswith("\n")
