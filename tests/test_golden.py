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

GOLDEN_TELEMETRY_SHA256 = "d7a3f6d887155dc34dc4157077b3c6f4ae0d20e0049cb6fec587d89854da1a83"
GOLDEN_REPORT_SHA256 = "9d606fe96fb7120270f6ac72d0115d98a5693264217f5c0047a320e22efaf053"


def test_golden_run(default_config: Config, tmp_path: Path) -> None:
    out = tmp_path / "telemetry.jsonl"
    result = asyncio.run(run_offline(default_config, seed=7, lots=150, telemetry_out=out))
    telemetry = hashlib.sha256(out.read_bytes()).hexdigest()
    report = hashlib.sha256(orjson.dumps(build_report(result.sim), option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert (telemetry, report) == (GOLDEN_TELEMETRY_SHA256, GOLDEN_REPORT_SHA256)
