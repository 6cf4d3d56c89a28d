"""Shared by the benchmark scripts: the machine description and a private Mosquitto broker."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from simulator.net import free_port


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
    if found is None:
        raise SystemExit("mosquitto not found: `sudo apt-get install mosquitto` (or `make system-deps` as root)")
    return found


def mosquitto_version(binary: str) -> str:
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10, check=False)
    match = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def _answers(host: str, port: int) -> bool:
    """A CONNACK to an MQTT 3.1.1 CONNECT (client id "bench-probe")."""
    connect = b"\x10\x17\x00\x04MQTT\x04\x02\x00\x05\x00\x0bbench-probe"
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(connect)
            answer = sock.recv(4)
            sock.sendall(b"\xe0\x00")
            return answer[:1] == b"\x20"
    except OSError:
        return False


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    version: str
    config: tuple[str, ...]


@contextmanager
def local_mosquitto(config: Sequence[str] = (), timeout_s: float = 10.0) -> Iterator[Broker]:
    """A private Mosquitto on a free loopback port (persistence off, anonymous, errors logged only),
    with extra global ``config`` lines; stopped with SIGTERM on exit."""
    binary = mosquitto_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as directory:
        conf = Path(directory) / "mosquitto.conf"
        lines = ["user root" if os.geteuid() == 0 else "",  # as root it would switch to `mosquitto`
                 "persistence false", "allow_anonymous true", "log_dest stderr", "log_type error",
                 *config, f"listener {port} 127.0.0.1"]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log = (Path(directory) / "mosquitto.log").open("wb")
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not _answers("127.0.0.1", port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start: "
                                       + (Path(directory) / "mosquitto.log").read_text(errors="replace"))
                time.sleep(0.02)  # poll interval of the readiness probe
            yield Broker("127.0.0.1", port, mosquitto_version(binary), tuple(config))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            log.close()
