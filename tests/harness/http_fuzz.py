"""A real service in a child process, for synchronous property tests (hypothesis, schemathesis) that
talk to it over HTTP with a blocking client.

A child process, not a thread of the test process: hostile input may crash the service, wedge its
event loop or make it grow memory without end, and none of that may take the test run with it.  The
child has an address-space limit (a runaway shows as a crash, not as a machine swapping), is stopped
with SIGTERM like in production and killed by its pid if it does not stop.  Its log goes to a file
whose tail failure messages quote.

Run as a script it is that child: ``python tests/harness/http_fuzz.py '<json spec>'``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
MEMORY_LIMIT_BYTES = 3 << 30  # address space of the child


class ServiceProcess:
    """``with ServiceProcess(bootstrap, unique, overrides, environ, log_path) as live:`` -- the reference
    plant (harness.service.service_config with ``overrides``) on ``live.base_url``."""

    def __init__(self, bootstrap: str, unique: str, overrides: dict[str, Any], environ: dict[str, str],
                 log_path: Path) -> None:
        from simulator.net import free_port

        self.port = free_port()
        self.spec = {"bootstrap": bootstrap, "unique": unique, "environ": environ,
                     "overrides": {**overrides, "http.port": self.port}}
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.machine_ids: list[str] = []

    def __enter__(self) -> ServiceProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), json.dumps(self.spec)], cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_healthy()
        except BaseException:
            self._kill()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ended = self.ended()
            if ended is not None:
                raise AssertionError(f"the service did not start: {ended}\n{self.log_tail()}")
            try:
                response = requests.get(f"{self.base_url}/health", timeout=1)
                if response.status_code == 200 and response.json()["state"] == "running":
                    self.machine_ids = sorted(requests.get(f"{self.base_url}/machines", timeout=5).json())
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the service was not healthy within {START_TIMEOUT_S:.0f} s\n"
                                     f"{self.log_tail()}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM, as in production; an AssertionError if it does not exit 0 in time (then killed)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError(f"the service did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM; killed\n"
                                 f"{self.log_tail()}") from None
        assert code == 0, f"the service exited {code} after SIGTERM\n{self.log_tail()}"

    def _kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    # -- checks ---------------------------------------------------------------------------------------
    def ended(self) -> str | None:
        """None while the service runs, else how it ended."""
        process = self.process
        assert process is not None
        code = process.poll()
        if code is None:
            return None
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"the service process ended ({how})"

    def responsive_error(self, http: requests.Session, timeout_s: float = 1.0) -> str | None:
        """None when the service runs and GET /health answers 200 within ``timeout_s``."""
        started = time.monotonic()
        try:
            response = http.get(f"{self.base_url}/health", timeout=timeout_s)
        except requests.RequestException as exc:
            return f"GET /health did not answer within {timeout_s:g} s ({exc!r}); {self.ended() or 'still running'}"
        elapsed = time.monotonic() - started
        if elapsed > timeout_s:
            return f"GET /health took {elapsed:.2f} s"
        if response.status_code != 200:
            return f"GET /health answered {response.status_code}: {response.text[:2000]}"
        return self.ended()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "service log (tail):\n  " + "\n  ".join(text.splitlines()[-lines:])


def main(spec: dict[str, Any]) -> None:
    """The child: the service of ``spec`` until SIGTERM."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    from simulator.programs.service import Service

    from harness.service import service_config

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    default_yaml = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config = service_config(default_yaml, spec["bootstrap"], spec["unique"], **spec["overrides"])

    async def run() -> None:
        service = Service(config, environ=spec["environ"])
        service.install_signal_handlers()
        await service.run()

    asyncio.run(run())


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
