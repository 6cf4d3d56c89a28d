"""Output paths of ``factorysim simulate`` and ``factorysim snapshot`` are checked before any work
starts: one line naming the flag and the path, exit code 2.  What fails only while writing (a full
disk) is one line with exit code 1, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulator.net import free_port

from harness.cli_process import ROOT, factorysim

CONFIG = str(ROOT / "config.yaml")
# ten simulated years: were the paths checked only after the run, the test would time out
LONG_RUN = ("simulate", "--config", CONFIG, "--until", "3650d", "--no-progress")


@pytest.mark.parametrize(("argv", "flag", "says"), [
    (["--report-html", "{tmp}/missing/r.html"], "--report-html",
     "cannot write {tmp}/missing/r.html: the directory {tmp}/missing does not exist"),
    (["--report-json", "{tmp}/missing/r.json"], "--report-json",
     "cannot write {tmp}/missing/r.json: the directory {tmp}/missing does not exist"),
    (["--telemetry-out", "{tmp}/missing/t.jsonl"], "--telemetry-out",
     "cannot write {tmp}/missing/t.jsonl: the directory {tmp}/missing does not exist"),
    (["--report-json", "{tmp}"], "--report-json", "{tmp} is a directory; give a file name"),
    (["--telemetry-out", "{tmp}/file/t.jsonl"], "--telemetry-out",
     "cannot write {tmp}/file/t.jsonl: {tmp}/file is not a directory"),
    (["--report-json", "{tmp}/r", "--report-html", "{tmp}/r"], "--report-html",
     "{tmp}/r is also the file of --report-json"),
], ids=["html-no-dir", "json-no-dir", "telemetry-no-dir", "a-directory", "parent-is-a-file", "same-file"])
def test_a_bad_output_path_is_refused_before_the_run(tmp_path: Path, argv: list[str], flag: str, says: str) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    ended = factorysim(*LONG_RUN, *(a.format(tmp=tmp_path) for a in argv))
    assert ended.code == 2
    assert ended.lines == [ended.message]  # one line, no traceback
    assert ended.message.startswith(f"factorysim: {flag}: {says.format(tmp=tmp_path)}")
    assert ended.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    orders = tmp_path / "orders.jsonl"
    orders.write_text('{"lot_code": "A-1", "quantity": 5, "location": "Italia"}\n', encoding="utf-8")
    ended = factorysim("simulate", "--config", CONFIG, "--orders", str(orders), "--telemetry-out", str(orders))
    assert ended.code == 2
    assert ended.lines == [f"factorysim: --telemetry-out: {orders} is also the file of --orders; give each its "
                           "own file"]
    assert orders.read_text(encoding="utf-8").startswith('{"lot_code": "A-1"')


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    ended = factorysim(*LONG_RUN, "--report-json", str(locked / "r.json"))
    assert ended.code == 2
    assert ended.lines == [f"factorysim: --report-json: cannot write {locked}/r.json: no permission to create "
                           f"files in {locked}"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
@pytest.mark.parametrize("flag", ["--telemetry-out", "--report-json", "--report-html"])
def test_a_write_that_fails_during_the_run_is_one_line_with_exit_code_1(flag: str) -> None:
    ended = factorysim("simulate", "--config", CONFIG, "--lots", "3", "--no-progress", flag, "/dev/full")
    assert ended.code == 1
    assert ended.lines == [f"factorysim: {flag}: cannot write /dev/full: No space left on device"], ended.stderr


def test_snapshot_checks_its_output_before_asking_the_service(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "s.json"
    # nothing listens at the URL: the output is refused first, without a connection attempt
    ended = factorysim("snapshot", "--url", f"http://127.0.0.1:{free_port()}", "-o", str(target))
    assert ended.code == 2
    assert ended.lines == [f"factorysim: --output: cannot write {target}: the directory {target.parent} does not "
                           f"exist (create it first: mkdir -p {target.parent})"]
