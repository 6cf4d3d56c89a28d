"""Running ``python -m simulator`` in a subprocess, as a user does, with a clean environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from simulator.config.loader import CONFIG_PATH_VARIABLES, ENV_OVERRIDES, GENERIC_PREFIX

ROOT = Path(__file__).resolve().parents[2]
# what the profiles' environment blocks declare (a developer's shell may set TENANT_ID, say)
PROFILE_VARIABLES = frozenset(var for path in [ROOT / "config.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]
                              for var in (yaml.safe_load(path.read_text(encoding="utf-8")).get("environment") or {}))


@dataclass(frozen=True)
class Ended:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    @property
    def message(self) -> str:
        """The one ``factorysim: …`` line on stderr (asserting there is exactly one, and no traceback)."""
        assert "Traceback" not in self.stderr, self.stderr
        said = [line for line in self.lines if line.startswith("factorysim")]
        assert len(said) == 1, self.stderr
        assert self.lines[-1] == said[0], self.stderr  # the last word
        return said[0]


def factorysim(*argv: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
               timeout_s: float = 60) -> Ended:
    """Run ``python -m simulator ARGV`` to its end; the environment has no factorysim overrides (nor
    a profile's variables) except ``env``."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ENV_OVERRIDES and k not in CONFIG_PATH_VARIABLES and k not in PROFILE_VARIABLES
             and not k.startswith(GENERIC_PREFIX)}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "simulator", *argv], env={**clean, **(env or {})},
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
    return Ended(done.returncode, done.stdout, done.stderr)


@contextmanager
def busy_port() -> Iterator[int]:
    """A port another process (this test) listens on, on every interface."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - as the service binds by default
        sock.listen()
        yield sock.getsockname()[1]
