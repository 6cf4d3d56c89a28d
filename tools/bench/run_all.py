"""Run every benchmark and rewrite the results table and the MQTT client section in BENCHMARKS.md
(`make bench`)."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine
import mqtt_clients
from bench_common import machine

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


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

    # the MQTT client choice: its own section of BENCHMARKS.md
    mqtt_block = mqtt_clients.measure()
    mqtt_clients.write_section(mqtt_block, path)
    print("\n".join(line for line in mqtt_block if not line.startswith("<!--")))


if __name__ == "__main__":
    main()
