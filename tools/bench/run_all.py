"""Run every benchmark and rewrite the results table in BENCHMARKS.md (`make bench`)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    rows = []
    result = engine.measure()
    rows.append(("engine: lot-stage passes/s, reference route, exponential times, telemetry off",
                 f"{result['factorysim_passes_s']:,.0f}", f"bare SimPy {result['bare_simpy_passes_s']:,.0f}",
                 f"{result['ratio']:.2f}", "≥ 0.5", "yes" if result["ratio"] >= 0.5 else "NO"))
    table = ["| benchmark | factorysim | baseline (same run) | ratio | goal | met |", "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    block = "\n".join([BEGIN, f"Measured {dt.date.today()} on {machine()}.", "", *table, END])
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8")
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    path.write_text(text, encoding="utf-8")
    print("\n".join(table))


if __name__ == "__main__":
    main()
