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
GOLDEN_REPORT_SHA256 = "862c023ab37be554efcf888de8f25544dd6bb7a24e8dfd3c792f77272bd9f2ba"


def test_golden_run(default_config: Config, tmp_path: Path) -> None:
    out = tmp_path / "telemetry.jsonl"
    result = asyncio.run(run_offline(default_config, seed=7, lots=150, telemetry_out=out))
    telemetry = hashlib.sha256(out.read_bytes()).hexdigest()
    report = hashlib.sha256(orjson.dumps(build_report(result.sim), option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert (telemetry, report) == (GOLDEN_TELEMETRY_SHA256, GOLDEN_REPORT_SHA256)
