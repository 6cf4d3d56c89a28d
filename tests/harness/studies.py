"""A small study file of the reference plant (two scenarios and a lathe search) for report tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_vietnam_study(path: Path, *, replications: int, lots: int) -> Path:
    """Write a study of Vietnam's lathes (today and one lathe; search 1..3 lathes) to ``path``."""
    path.write_text(f"""
name: Vietnam lathes
base: {ROOT / "config.yaml"}
replications: {replications}
seed: 2
lots: {lots}
warm_up: 0
jobs: 1
kpis: [lead_time_s.p95, throughput_per_hour]
scenarios:
  - name: today
  - name: one lathe
    overrides: {{locations.Vietnam.machines.tornio: 1}}
search:
  scenario: today
  pools: {{Vietnam.tornio: [1, 3]}}
  targets: ["lead_time_s.p95 <= 30d"]
""", encoding="utf-8")
    return path
