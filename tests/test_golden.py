"""Golden run: a fixed seed gives a fixed output.  A change in behaviour (model, machines, format)
changes these hashes; when the change is intended, update them with the values the failure shows."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import orjson

from simulator.config.schema import Config
from simulator.programs.offline import run_offline
from simulator.reporting.summary import build_report

GOLDEN_TELEMETRY_SHA256 = "eeb356c154678e07f69e153cec80035661718b76c1605643fdb500ef878fb6fa"
GOLDEN_REPORT_SHA256 = "ee2215021108055d047fae4401fef7104717113df1e38e8612d15b5230f8e87c"


def test_golden_run(default_config: Config, tmp_path: Path) -> None:
    out = tmp_path / "telemetry.jsonl"
    result = asyncio.run(run_offline(default_config, seed=7, lots=150, telemetry_out=out))
    telemetry = hashlib.sha256(out.read_bytes()).hexdigest()
    report = hashlib.sha256(orjson.dumps(build_report(result.sim), option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert (telemetry, report) == (GOLDEN_TELEMETRY_SHA256, GOLDEN_REPORT_SHA256)
