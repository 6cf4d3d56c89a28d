"""The command line: validate-config and simulate, exit codes, outputs a user relies on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from simulator import package_version
from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "config.yaml")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _bad_config(tmp_path: Path, default_yaml: dict[str, Any], **changes: Any) -> str:
    data = {**default_yaml, "simulation": {**default_yaml["simulation"], **changes}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def test_validate_config_prints_the_normalised_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "validate-config", CONFIG)
    assert code == 0
    data = yaml.safe_load(out)
    assert data["simulation"]["speed"] == 60.0
    assert data["locations"]["Vietnam"]["aliases"] == []  # defaults are filled in
    assert err.strip().endswith("config.yaml: valid")


def test_validate_config_reports_every_problem_with_exit_code_2(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, default_yaml: dict[str, Any]) -> None:
    path = _bad_config(tmp_path, default_yaml, speed="fast", seed=-3)
    code, out, err = _run(capsys, "validate-config", path)
    assert code == 2
    assert out == ""
    assert "simulation.seed: must be >= 0 (got -3)" in err
    assert "simulation.speed: must be 'max' or a number of simulated seconds per wall second" in err


def test_validate_config_uses_config_path(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_PATH", str(tmp_path / "missing.yaml"))
    code, _, err = _run(capsys, "validate-config")
    assert code == 2
    assert "missing.yaml: cannot read the config file" in err


def test_simulate_writes_report_and_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report_path, html_path = tmp_path / "r.json", tmp_path / "r.html"
    code, out, _ = _run(capsys, "simulate", "--config", CONFIG, "--lots", "200", "--seed", "5",
                        "--report-json", str(report_path), "--report-html", str(html_path), "--no-progress")
    assert code == 0
    report = orjson.loads(report_path.read_bytes())
    lots = report["lots"]
    assert lots["received"] == 200
    assert lots["completed"] + lots["scrapped"] == 200
    assert report["seed"] == 5
    assert set(report["stages"]) == {"fresa_cnc", "tornio", "assemblaggio", "test"}
    assert report["bottleneck"]["stage"] in report["stages"]
    assert f"lots: 200 received, {lots['completed']} completed" in out
    assert "(seed 5, every lot finished)" in out
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_simulate_until_stops_at_the_simulated_duration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    code, out, _ = _run(capsys, "simulate", "--config", CONFIG, "--until", "2d", "--rate", "6",
                        "--report-json", str(report_path))
    assert code == 0
    report = orjson.loads(report_path.read_bytes())
    assert report["sim_duration_s"] == 2 * 86400
    assert report["lots"]["in_progress"] > 0  # arrivals keep coming; the run stops on time
    assert "reached --until" in out


def test_simulate_mixes_shape_the_generated_lots(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    code, _, _ = _run(capsys, "simulate", "--config", CONFIG, "--lots", "300", "--locations", "Vietnam=1",
                      "--priorities", "alta=1", "--arrivals", "fixed", "--report-json", str(report_path))
    assert code == 0
    report = orjson.loads(report_path.read_bytes())
    assert report["lots"]["by_location"]["Vietnam"]["received"] == 300
    assert report["lead_time_by_priority_s"]["alta"]["mean"] > 0
    assert report["lead_time_by_priority_s"]["normale"]["mean"] == 0


def test_simulate_replays_an_order_file_and_reports_rejections(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    orders = tmp_path / "orders.jsonl"
    orders.write_bytes(b"\n".join([
        orjson.dumps({"codice_lotto": "A-1", "quantita": 100, "location": "Italia", "priorita": "alta",
                      "timestamp": "2025-06-25T08:00:00Z"}),
        orjson.dumps({"lot_code": "A-2", "quantity": 80, "location": "Brazil", "priority": "low",
                      "timestamp": "2025-06-25T08:30:00Z"}),
        b"not json",
        orjson.dumps({"lot_code": "A-3", "quantity": 10, "location": "Atlantis"}),
    ]) + b"\n")
    report_path = tmp_path / "r.json"
    code, _, err = _run(capsys, "simulate", "--config", CONFIG, "--orders", str(orders),
                        "--report-json", str(report_path))
    assert code == 0
    report = orjson.loads(report_path.read_bytes())
    assert report["lots"]["received"] == 2
    assert report["orders_rejected"] == {"count": 2, "by_reason": {"not_json": 1, "unknown_location": 1}}
    assert f"{orders}:3: rejected (not_json)" in err
    assert f"{orders}:4: rejected (unknown_location)" in err


def test_same_seed_gives_byte_identical_telemetry_and_another_seed_differs(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    outputs = []
    for name, seed in (("a", "9"), ("b", "9"), ("c", "10")):
        path = tmp_path / f"{name}.jsonl"
        assert _run(capsys, "simulate", "--config", CONFIG, "--lots", "60", "--seed", seed,
                    "--telemetry-out", str(path))[0] == 0
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]
    lines = outputs[0].splitlines()
    assert len(lines) > 60 * 4
    first = orjson.loads(lines[0])
    assert set(first) == {"topic", "key", "headers", "value"}


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "--config", CONFIG], "simulate needs --lots N, --until DURATION or --orders FILE"),
    (["simulate", "--config", CONFIG, "--lots", "0"], "--lots must be at least 1, got 0"),
    (["simulate", "--config", CONFIG, "--lots", "5", "--orders", "x.jsonl"], "--lots and --orders exclude"),
    (["simulate", "--config", CONFIG, "--until", "soon"], "--until:"),
    (["simulate", "--config", CONFIG, "--until", "0h"], "--until: must be longer than 0"),
    (["simulate", "--config", CONFIG, "--orders", "/nonexistent/orders.jsonl"], "--orders: no such file"),
    (["simulate", "--config", CONFIG, "--lots", "5", "--gantt-window", "5h"], "--gantt-window: expected START,END"),
    (["simulate", "--config", CONFIG, "--lots", "5", "--gantt-window", "5h,1h"], "END must be after START"),
    (["simulate", "--config", CONFIG, "--lots", "5", "--locations", "Italia"], "--locations: expected NAME=WEIGHT"),
    (["simulate", "--config", CONFIG, "--lots", "5", "--priorities", "alta=-1"], "--priorities: expected"),
    (["simulate", "--config", CONFIG, "--lots", "5", "--locations", "Mars=1"],
     "--locations Mars=1 (arrivals.location_mix.Mars): unknown location; allowed: Italia, Brasile, Vietnam"),
    (["simulate", "--config", CONFIG, "--lots", "5", "--rate", "-2"],
     "--rate -2 (arrivals.rate_per_hour): must be > 0"),
])
def test_usage_errors_exit_2_with_one_clear_message(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                    message: str) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert message in err
    assert out == ""


def test_console_script_entry_point_runs(tmp_path: Path) -> None:
    env = {**os.environ, "CONFIG_PATH": CONFIG}
    done = subprocess.run([sys.executable, "-m", "simulator", "simulate", "--lots", "20"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "lots: 20 received" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "simulator", "validate-config", "nope.yaml"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert bad.returncode == 2
    assert "nope.yaml: cannot read the config file" in bad.stderr


def test_version_is_the_installed_packages() -> None:
    done = subprocess.run([sys.executable, "-m", "simulator", "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, f"factorysim {package_version()}")
    assert package_version() != "0+unknown"  # the test environment has the package installed
    sender = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "tools" / "lot_sender.py"), "--version"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (sender.returncode, sender.stdout.strip()) == (0, f"lot-sender (factorysim {package_version()})")
