"""The README's quick start runs as written in a fresh shell: a clean environment (no virtualenv
on PATH), the checkout's ``.venv``, a running service on the real broker to send lots to."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness.service import running_service, service_config

ROOT = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    """The commands of the README's quick start, one per line, without their comments."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start in a fresh shell", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the quick start has no bash block"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


async def test_the_readme_quick_start_runs_as_written_in_a_fresh_shell(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    commands = quick_start()
    assert commands[0] == "make run"  # the service; here it runs in the test, on the test's broker
    config = service_config(default_yaml, kafka_bootstrap, unique)
    # the shell's working directory: a checkout whose config.yaml names this test's topics
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)),
                                          encoding="utf-8")
    for name in (".venv", "tools"):
        (tmp_path / name).symlink_to(ROOT / name)
    host_port = kafka_bootstrap.split(",")[0]
    script = "set -e\n" + "\n".join(c.replace("127.0.0.1:PORT", host_port) for c in commands[1:]) + "\n"
    fresh = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
             "LANG": "C.UTF-8"}
    async with running_service(config) as service:
        done = await asyncio.to_thread(subprocess.run, ["bash", "-c", script], cwd=tmp_path, env=fresh,
                                       capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert service.sim.stats.completed + service.sim.stats.scrapped >= 100
    followed = re.search(r"followed 100 lots: (\d+) completed, (\d+) scrapped, 0 dead-lettered, 0 not finished",
                         done.stdout)
    assert followed and int(followed[1]) + int(followed[2]) == 100, done.stdout  # --follow saw every lot finish
    assert "2000 received" in done.stdout, done.stdout  # the offline study
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert "usage: factorysim" in done.stdout and "usage: lot-sender" in done.stdout
