"""Real Mosquitto brokers for MQTT tests.

``Mosquitto``: a private broker process (the Debian ``mosquitto`` binary) on a free loopback port,
anonymous or with a password file, optionally with a TLS listener (a ``harness.pki.Pki``); start /
stop / restart on the same port / kill. ``MosquittoContainer`` is the same broker in the
``eclipse-mosquitto`` image (testcontainers) for machines with a Docker engine. Tests normally get
either through the ``mosquitto`` and ``mosquitto_factory`` fixtures (conftest.py), which choose the
backend.

Every wait here is a wait on a condition with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from simulator.net import free_port

from harness.mqtt_wire import LOOPBACK, encode_packet, encode_utf8
from harness.pki import Pki

INSTALL_HINT = ("install the Debian packages: `sudo apt-get install mosquitto mosquitto-clients` "
                "(or `make system-deps` as root)")


def find_mosquitto() -> str | None:
    """The mosquitto broker binary: on PATH, else where Debian puts it (/usr/sbin is often not on PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def mosquitto_version(binary: str) -> str:
    """``"2.0.11"`` from ``mosquitto -h`` (which exits non-zero by design)."""
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10, check=False)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("mosquitto version"):
            return line.split()[-1]
    return "unknown version"


def password_file_line(username: str, password: str) -> str:
    """One line of a Mosquitto 2 password file: PBKDF2-SHA512, 101 rounds, 12-byte salt (the ``$7$``
    format ``mosquitto_passwd`` writes). Computed here so the container backend needs no host tool."""
    if ":" in username:
        raise ValueError("a Mosquitto user name cannot contain ':'")
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"{username}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _probe_connect(client_id: str) -> bytes:
    # MQTT 3.1.1 CONNECT, clean session, keepalive 5 s, no credentials
    return encode_packet(0x10, encode_utf8("MQTT") + bytes([4, 0x02]) + (5).to_bytes(2, "big") + encode_utf8(client_id))


def mqtt_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a broker at host:port answers an MQTT CONNECT with a CONNACK (any return code: a
    broker that refuses anonymous clients is still up). A bare TCP connect is not enough behind a
    Docker port proxy, which accepts before the broker listens."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_probe_connect(f"harness-probe-{uuid.uuid4().hex[:8]}"))
            answer = b""
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    return False
                answer += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean close
            return answer[0] == 0x20
    except OSError:
        return False


class Mosquitto:
    """A private Mosquitto broker process on a free loopback port, persistence off (``persistent=True``:
    on, in its directory, so that clients' sessions and their queued messages outlive a restart).

    ``users`` (name -> password) writes a password file and turns anonymous access off (unless
    ``allow_anonymous=True``). ``tls`` (a ``Pki``) adds a TLS listener on ``tls_port`` with the PKI's
    server certificate; ``require_certificate`` makes it demand a client certificate signed by the test
    CA. The plain listener on ``port`` is always there. ``extra_config`` lines are added as global
    options (e.g. ``"max_inflight_messages 100"``).

    ``start()`` waits until the broker answers an MQTT CONNECT; ``stop()`` sends SIGTERM and waits;
    ``restart()`` is stop + start on the same ports; ``kill()`` is SIGKILL. The blocking calls have
    ``a``-prefixed coroutine twins (``await broker.arestart()``) that run them in a worker thread, so a
    client under test in the same event loop sees the outage as it happens. ``log_text()`` is the
    broker's log (connections, subscriptions, errors) across restarts.
    """

    backend = "local"

    def __init__(self, *, users: Mapping[str, str] | None = None, allow_anonymous: bool | None = None,
                 tls: Pki | None = None, require_certificate: bool = False,
                 extra_config: Sequence[str] = (), binary: str | None = None, host: str = LOOPBACK,
                 port: int | None = None, tls_port: int | None = None, directory: Path | str | None = None,
                 start_timeout_s: float = 10.0, persistent: bool = False) -> None:
        if require_certificate and tls is None:
            raise ValueError("require_certificate needs tls (a Pki)")
        self.users = dict(users or {})
        self.allow_anonymous = (not self.users) if allow_anonymous is None else allow_anonymous
        self.tls = tls
        self.require_certificate = require_certificate
        self.extra_config = list(extra_config)
        self.persistent = persistent
        self.host = host
        self.port = port or free_port(host)
        self.tls_port: int | None = (tls_port or free_port(host)) if tls is not None else None
        self.start_timeout_s = start_timeout_s
        self._owns_directory = directory is None
        self.directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        log_directory = self.directory / "log"
        log_directory.mkdir(exist_ok=True)
        log_directory.chmod(0o777)  # writable by a broker that dropped privileges (container backend)
        self._log_path = log_directory / "mosquitto.log"
        self.binary = binary or self._default_binary()
        self.starts = 0  # how many times the broker was started
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._write_files()

    # the backend-specific part ---------------------------------------------------------------------------
    @staticmethod
    def _default_binary() -> str:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError(f"mosquitto not found: {INSTALL_HINT}")
        return binary

    def _broker_path(self, name: str) -> str:
        """A file of the config directory as the broker sees it."""
        return str(self.directory / name)

    def _broker_log_path(self) -> str:
        """The log file as the broker sees it (a file: mosquitto does not flush stdout per line)."""
        return str(self._log_path)

    def _listen_ports(self) -> tuple[str, int, int | None]:
        """(bind address, plain port, TLS port) as written into the broker's config."""
        return self.host, self.port, self.tls_port

    def _user_line(self) -> list[str]:
        # Started as root, mosquitto would switch to the `mosquitto` user and could not read the files
        # of this directory; naming the current user keeps it (and has no effect for other users).
        return [f"user {pwd.getpwuid(os.geteuid()).pw_name}"]

    def _launch(self) -> None:
        self._log = self._log_path.open("ab")  # start-up errors before the config is read land here too
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.directory / "mosquitto.conf")],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def _exited(self) -> bool:
        return self._process is None or self._process.poll() is not None

    def _terminate(self, sig: signal.Signals, timeout_s: float) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        path = self._log_path
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    @property
    def version(self) -> str:
        return mosquitto_version(self.binary)

    def describe(self) -> str:
        return f"mosquitto {self.version} ({self.binary})"

    # common ----------------------------------------------------------------------------------------------
    def _write_files(self) -> None:
        bind, port, tls_port = self._listen_ports()
        persistence = (["persistence true", f"persistence_location {self._broker_path('')}/"] if self.persistent
                       else ["persistence false"])
        lines = ["# written by tests/harness/mosquitto.py", *self._user_line(), *persistence,
                 f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
                 f"log_dest file {self._broker_log_path()}", "log_timestamp_format %H:%M:%S",
                 "connection_messages true",
                 *(f"log_type {kind}" for kind in ("error", "warning", "notice", "information",
                                                   "subscribe", "unsubscribe"))]
        if self.users:
            passwd = self.directory / "passwd"
            passwd.write_text("".join(password_file_line(u, p) + "\n" for u, p in self.users.items()),
                              encoding="utf-8")
            passwd.chmod(0o644)
            lines.append(f"password_file {self._broker_path('passwd')}")
        lines += self.extra_config
        address = f" {bind}" if bind else ""
        lines.append(f"listener {port}{address}")
        if self.tls is not None:
            for source in (self.tls.ca_cert, self.tls.server_cert, self.tls.server_key):
                shutil.copyfile(source, self.directory / source.name)
                (self.directory / source.name).chmod(0o644)
            lines += [f"listener {tls_port}{address}",
                      f"cafile {self._broker_path(self.tls.ca_cert.name)}",
                      f"certfile {self._broker_path(self.tls.server_cert.name)}",
                      f"keyfile {self._broker_path(self.tls.server_key.name)}",
                      f"require_certificate {'true' if self.require_certificate else 'false'}"]
        (self.directory / "mosquitto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.directory.chmod(0o755)
        (self.directory / "mosquitto.conf").chmod(0o644)

    @property
    def running(self) -> bool:
        return not self._exited()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Mosquitto:
        if self.running:
            return self
        self._launch()
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout_s
        while not mqtt_answers(self.host, self.port, timeout_s=0.5):
            if self._exited():
                raise RuntimeError(f"mosquitto exited during start-up; its log:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self._terminate(signal.SIGKILL, 5)
                raise RuntimeError(f"mosquitto did not answer on {self.address} within "
                                   f"{self.start_timeout_s:.0f} s; its log:\n{self.log_text()}")
            time.sleep(0.02)  # poll interval of the readiness probe
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); no-op when not running."""
        self._terminate(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything cleanly."""
        self._terminate(signal.SIGKILL, 10)

    def restart(self) -> Mosquitto:
        """Stop and start again on the same ports; returns once the broker answers again."""
        self.stop()
        return self.start()

    async def astart(self) -> Mosquitto:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def arestart(self) -> Mosquitto:
        return await asyncio.to_thread(self.restart)

    def wait_for_log(self, text: str, timeout_s: float = 10.0) -> None:
        """Block until ``text`` appears in the broker's log, e.g. ``"as my-client-id (p5, c1, k30"`` for a
        connection (p = protocol, c = clean start, k = keepalive). From a coroutine whose event loop
        must keep running: ``await asyncio.to_thread(broker.wait_for_log, text)``."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the mosquitto log after {timeout_s:.0f} s:\n"
                                     f"{self.log_text()}")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop and remove the config directory if this object created it."""
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        tls = f", tls_port={self.tls_port}" if self.tls_port else ""
        return f"<{type(self).__name__} {self.address}{tls} {state}>"


class MosquittoContainer(Mosquitto):
    """The same broker in the ``eclipse-mosquitto`` image through testcontainers, for machines with a
    Docker engine. Same API: the config directory is mounted read-only at /mosquitto/config and the
    container's ports are bound to fixed host ports, so ``restart()`` keeps them."""

    backend = "testcontainers"
    IMAGE = "eclipse-mosquitto:2.0"

    def __init__(self, **kwargs: Any) -> None:
        self._container: Any = None
        kwargs.setdefault("binary", "mosquitto")
        super().__init__(**kwargs)

    @staticmethod
    def _default_binary() -> str:
        return "mosquitto"

    def _broker_path(self, name: str) -> str:
        return f"/mosquitto/config/{name}"

    def _broker_log_path(self) -> str:
        return "/mosquitto/log/mosquitto.log"

    def _listen_ports(self) -> tuple[str, int, int | None]:
        return "", 1883, (8883 if self.tls is not None else None)

    def _user_line(self) -> list[str]:
        return []  # the image drops to its `mosquitto` user; every file here is world-readable

    def _launch(self) -> None:
        if self._container is None:
            from testcontainers.core.container import DockerContainer

            container = (DockerContainer(self.IMAGE)
                         .with_volume_mapping(str(self.directory), "/mosquitto/config", "ro")
                         .with_volume_mapping(str(self._log_path.parent), "/mosquitto/log", "rw")
                         .with_command(["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"])
                         .with_bind_ports(1883, self.port))
            if self.tls_port is not None:
                container = container.with_bind_ports(8883, self.tls_port)
            container.start()
            self._container = container
            self.host = container.get_container_host_ip()
        else:
            self._container.get_wrapped_container().start()

    def _exited(self) -> bool:
        if self._container is None:
            return True
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return bool(wrapped.status != "running")

    def _terminate(self, sig: signal.Signals, timeout_s: float) -> None:
        if self._container is None or self._exited():
            return
        wrapped = self._container.get_wrapped_container()
        if sig == signal.SIGKILL:
            wrapped.kill()
            wrapped.wait(timeout=timeout_s)
        else:
            wrapped.stop(timeout=int(timeout_s))

    def log_text(self) -> str:
        """The container's console (start-up errors land there) followed by the broker's log file."""
        console = ""
        if self._container is not None:
            console = self._container.get_wrapped_container().logs().decode(errors="replace")
        return console + super().log_text()

    @property
    def version(self) -> str:
        for line in self.log_text().splitlines():
            if "mosquitto version" in line and "starting" in line:
                return line.split("mosquitto version", 1)[1].split()[0]
        return self.IMAGE.split(":", 1)[1]

    def describe(self) -> str:
        return f"{self.IMAGE} in a testcontainers container"

    def close(self) -> None:
        if self._container is not None:
            self._container.stop()  # removes the container
            self._container = None
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
