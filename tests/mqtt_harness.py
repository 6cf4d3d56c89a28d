"""MQTT test harness: real Mosquitto brokers, a test PKI, a reconnecting subscriber and a recording
MQTT 5 server.

- ``Mosquitto``: a private broker process (the Debian ``mosquitto`` binary) on a free loopback port,
  anonymous or with a password file, optionally with a TLS listener; start / stop / restart on the
  same port / kill. ``MosquittoContainer`` is the same broker in the ``eclipse-mosquitto`` image
  (testcontainers) for machines with a Docker engine. Tests normally get either through the
  ``mosquitto`` and ``mosquitto_factory`` fixtures, which choose the backend.
- ``make_test_pki(directory)``: a test CA, a server certificate for ``localhost`` and ``127.0.0.1``,
  a client certificate, and an unrelated "wrong" CA with its own client certificate (openssl CLI).
- ``MqttCollector``: a subscriber (paho-mqtt, its own network thread) that records every message,
  reconnects and resubscribes after a broker restart, and offers awaitable waits.
- ``ConnectCapture``: an asyncio TCP server speaking just enough MQTT 3.1.1 / 5 for a real client to
  connect, publish and subscribe; records every CONNECT (including the MQTT 5 properties such as
  Authentication Method / Data) and PUBLISH, can refuse the next CONNECT, hold acknowledgements and
  drop every connection.

Every wait here is a wait on a condition with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn

import orjson
import pytest

LOOPBACK = "127.0.0.1"
INSTALL_HINT = ("install the Debian packages: `sudo apt-get install mosquitto mosquitto-clients` "
                "(or `make system-deps` as root)")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_dependency(message: str) -> NoReturn:
    """A test cannot run for lack of a system tool: fail in CI (CI=true), skip elsewhere (the reason is
    listed in the -ra summary)."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_executable(name: str, package: str) -> str:
    """The path of ``name``, or fail (CI) / skip with how to install ``package``."""
    path = shutil.which(name)
    if path is None:
        missing_dependency(f"{name} not found: `sudo apt-get install {package}` (or `make system-deps` as root)")
    return path


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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


# --- MQTT wire helpers (shared by the readiness probe and ConnectCapture) -------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _varint(len(body)) + body


def _probe_connect(client_id: str) -> bytes:
    # MQTT 3.1.1 CONNECT, clean session, keepalive 5 s, no credentials
    return _packet(0x10, _utf8("MQTT") + bytes([4, 0x02]) + (5).to_bytes(2, "big") + _utf8(client_id))


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


# --- test PKI ---------------------------------------------------------------------------------------------
_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class Pki:
    """Paths of the test PKI (PEM files; keys unencrypted, EC P-256)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path  # CN localhost, SAN DNS:localhost + IP:127.0.0.1, signed by ca
    server_key: Path
    client_cert: Path  # CN factorysim-test-client, signed by ca
    client_key: Path
    wrong_ca_cert: Path  # an unrelated CA: trusting it must make server verification fail
    wrong_ca_key: Path
    wrong_client_cert: Path  # signed by wrong_ca: a broker requiring client certificates must refuse it
    wrong_client_key: Path

    def client_context(self, *, wrong_ca: bool = False, client_cert: bool = False,
                       wrong_client_cert: bool = False) -> ssl.SSLContext:
        """A client-side SSLContext trusting the test CA (or the wrong CA), with host name checks on,
        optionally presenting the client certificate (or the one signed by the wrong CA)."""
        context = ssl.create_default_context(cafile=str(self.wrong_ca_cert if wrong_ca else self.ca_cert))
        if client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        elif wrong_client_cert:
            context.load_cert_chain(str(self.wrong_client_cert), str(self.wrong_client_key))
        return context


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed for the test PKI: `sudo apt-get install openssl`")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_test_pki(directory: Path | str) -> Pki:
    """Create the test PKI under ``directory`` (created if missing) with the openssl CLI; ~0.1 s."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "openssl.cnf").write_text(_OPENSSL_CONFIG, encoding="utf-8")
    newkey = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def ca(name: str, common_name: str) -> None:
        _openssl("req", "-config", "openssl.cnf", "-x509", "-new", *newkey, "-keyout", f"{name}.key",
                 "-out", f"{name}.crt", "-days", "3650", "-sha256", "-subj", f"/CN={common_name}",
                 "-extensions", "ca_ext", cwd=root)

    def leaf(name: str, common_name: str, issuer: str, extensions: str) -> None:
        _openssl("req", "-config", "openssl.cnf", "-new", *newkey, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={common_name}", cwd=root)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey", f"{issuer}.key",
                 "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "3650", "-sha256",
                 "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt", cwd=root)

    ca("ca", "factorysim test CA")
    ca("wrong-ca", "factorysim unrelated CA")
    leaf("server", "localhost", "ca", "server_ext")
    leaf("client", "factorysim-test-client", "ca", "client_ext")
    leaf("wrong-client", "factorysim-wrong-client", "wrong-ca", "client_ext")
    for path in root.iterdir():  # readable by a broker that dropped privileges (container backend)
        path.chmod(0o644)
    return Pki(directory=root, ca_cert=root / "ca.crt", ca_key=root / "ca.key",
               server_cert=root / "server.crt", server_key=root / "server.key",
               client_cert=root / "client.crt", client_key=root / "client.key",
               wrong_ca_cert=root / "wrong-ca.crt", wrong_ca_key=root / "wrong-ca.key",
               wrong_client_cert=root / "wrong-client.crt", wrong_client_key=root / "wrong-client.key")


# --- Mosquitto --------------------------------------------------------------------------------------------
class Mosquitto:
    """A private Mosquitto broker process on a free loopback port, persistence off.

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
                 start_timeout_s: float = 10.0) -> None:
        if require_certificate and tls is None:
            raise ValueError("require_certificate needs tls (a Pki)")
        self.users = dict(users or {})
        self.allow_anonymous = (not self.users) if allow_anonymous is None else allow_anonymous
        self.tls = tls
        self.require_certificate = require_certificate
        self.extra_config = list(extra_config)
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
        lines = ["# written by tests/mqtt_harness.py", *self._user_line(), "persistence false",
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


# --- MqttCollector ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReceivedMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any]  # MQTT 5 properties by paho name: ContentType, UserProperty (list of pairs), ...
    connection: int  # 1 for the collector's first connection, 2 after the first reconnect, ...

    def json(self) -> Any:
        return orjson.loads(self.payload)


class MqttRefusedError(ConnectionError):
    """The broker answered CONNECT with a failure reason code (MQTT 5 numbering; paho maps 3.1.1's)."""

    def __init__(self, reason_code: int, reason: str) -> None:
        super().__init__(f"CONNACK refused: {reason} (0x{reason_code:02X})")
        self.reason_code = reason_code
        self.reason = reason


class MqttCollector:
    """Subscribe to ``topics`` and record every message; survive broker restarts.

    ``async with MqttCollector(broker.host, broker.port, ["factorysim/#"]) as collector:`` returns once
    the first SUBACK arrived, so what is published afterwards is recorded. It uses paho-mqtt with its
    own network thread (independent of the event loop and of the client library under test). On every
    (re)connection it subscribes again — Mosquitto here runs without persistence, so a restarted broker
    knows no sessions. Messages published while it is reconnecting are lost, as for any subscriber:
    after a restart, ``await collector.wait_subscribed(rounds_before + 1)`` before relying on delivery.

    Connection failures on entry raise: ``ssl.SSLError`` / ``OSError`` from the socket, or
    ``MqttRefusedError`` (``.reason_code``) when the broker refuses the CONNECT.
    """

    def __init__(self, host: str, port: int, topics: str | Iterable[str] = "#", *, qos: int = 1,
                 protocol: str = "5", tls: ssl.SSLContext | None = None, username: str | None = None,
                 password: str | None = None, client_id: str | None = None, keepalive_s: int = 30,
                 connect_timeout_s: float = 10.0, reconnect_max_delay_s: float = 0.5) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        if protocol not in ("5", "3.1.1"):
            raise ValueError('protocol is "5" or "3.1.1"')
        self.host, self.port = host, port
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self.protocol = protocol
        self.client_id = client_id or f"collector-{uuid.uuid4().hex[:8]}"
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.messages: list[ReceivedMessage] = []
        self.connections = 0  # successful CONNACKs
        self.subscribe_rounds = 0  # SUBACKs for the whole topic list (one per connection)
        self.disconnects = 0
        self.connected = False
        self.errors: list[str] = []  # refused reconnects and subscriptions after the first round
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._first: asyncio.Future[None] | None = None
        self._subscribe_mids: set[int] = set()
        self._lock = threading.Lock()
        self._running = False
        v5 = protocol == "5"
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                                   clean_session=None if v5 else True)
        # paho annotates the delays as int; it only does arithmetic with them, fractions work
        self._client.reconnect_delay_set(min_delay=0.05, max_delay=reconnect_max_delay_s)  # type: ignore[arg-type]
        self._tls = tls
        if tls is not None:
            self._client.tls_set_context(tls)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect

    # paho thread -> event loop -----------------------------------------------------------------------------
    def _post(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(function, *args)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._post(self._connect_failed, MqttRefusedError(int(reason_code.value), str(reason_code)))
            return
        with self._lock:
            _result, mid = client.subscribe([(topic, self.qos) for topic in self.topics])
            if mid is not None:
                self._subscribe_mids.add(mid)
        self._post(self._connected_in_loop)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        with self._lock:
            ours = mid in self._subscribe_mids
            self._subscribe_mids.discard(mid)
        failed = [str(code) for code in reason_codes if code.is_failure]
        if ours:
            self._post(self._subscribed_in_loop, failed)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        props = getattr(message, "properties", None)
        properties = {} if props is None else {
            name.replace(" ", ""): getattr(props, name.replace(" ", ""))
            for name in props.names if hasattr(props, name.replace(" ", ""))}
        self._post(self._record, message.topic, bytes(message.payload), message.qos, bool(message.retain),
                   properties)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._post(self._disconnected_in_loop, str(reason_code))

    # in the event loop ------------------------------------------------------------------------------------
    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _connect_failed(self, error: Exception) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)
        else:
            self.errors.append(str(error))
        self._notify()

    def _connected_in_loop(self) -> None:
        self.connections += 1
        self.connected = True
        self._notify()

    def _subscribed_in_loop(self, failed: list[str]) -> None:
        if failed:
            self._connect_failed(RuntimeError(f"subscription to {self.topics} refused: {failed}"))
            return
        self.subscribe_rounds += 1
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        self._notify()

    def _disconnected_in_loop(self, reason: str) -> None:
        self.disconnects += 1
        self.connected = False
        if self._first is not None and not self._first.done():
            self._first.set_exception(ConnectionError(f"connection closed before SUBACK: {reason}"))
        self._notify()

    def _record(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        self.messages.append(ReceivedMessage(topic, payload, qos, retain, properties, self.connections))
        self._notify()

    # API --------------------------------------------------------------------------------------------------
    async def start(self) -> MqttCollector:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._first = self._loop.create_future()
        if self._tls is not None:
            await asyncio.to_thread(self._check_tls)
        # the first connect in a worker thread: socket errors surface here as themselves
        await asyncio.to_thread(self._client.connect, self.host, self.port, self.keepalive_s)
        self._client.loop_start()
        self._running = True
        try:
            await asyncio.wait_for(asyncio.shield(self._first), self.connect_timeout_s)
        except BaseException:
            if not self._first.done():
                self._first.cancel()
            await self.stop()
            raise
        return self

    def _check_tls(self) -> None:
        """One TLS handshake of our own first: a verification error raises here as itself, and the socket
        is closed (paho 2.2 leaves it open when its handshake fails)."""
        assert self._tls is not None
        with socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s) as raw, \
                self._tls.wrap_socket(raw, server_hostname=self.host):
            pass

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def __aenter__(self) -> MqttCollector:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def of(self, topic: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [m.payload for m in self.messages if topic is None or m.topic == topic]

    def clear(self) -> None:
        self.messages.clear()

    def _describe(self) -> str:
        topics = sorted({m.topic for m in self.messages})
        return (f"{len(self.messages)} messages on {len(topics)} topics {topics[:5]}"
                f"{' ...' if len(topics) > 5 else ''}; connected={self.connected}, "
                f"connections={self.connections}, subscribe_rounds={self.subscribe_rounds}, errors={self.errors}")

    async def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        if self._changed is None:
            raise RuntimeError("the collector is not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; {self._describe()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for(self, predicate: Callable[[list[ReceivedMessage]], bool], timeout_s: float = 10.0,
                       what: str = "the predicate") -> list[ReceivedMessage]:
        """Wait until ``predicate(messages)`` holds; returns the messages."""
        await self._wait(lambda: predicate(self.messages), timeout_s, what)
        return list(self.messages)

    async def wait_count(self, n: int, timeout_s: float = 10.0, topic: str | None = None) -> list[ReceivedMessage]:
        """Wait for at least ``n`` messages (on ``topic`` when given); returns those messages."""
        def selected() -> list[ReceivedMessage]:
            return list(self.messages) if topic is None else self.of(topic)

        await self._wait(lambda: len(selected()) >= n, timeout_s,
                         f"{n} messages" + (f" on {topic!r}" if topic else ""))
        return selected()

    async def wait_message(self, match: Callable[[ReceivedMessage], bool], timeout_s: float = 10.0,
                           what: str = "a matching message") -> ReceivedMessage:
        """Wait for the first message for which ``match(message)`` holds and return it."""
        await self._wait(lambda: any(match(m) for m in self.messages), timeout_s, what)
        return next(m for m in self.messages if match(m))

    async def wait_subscribed(self, rounds: int, timeout_s: float = 15.0) -> None:
        """Wait until the subscriptions were acknowledged ``rounds`` times in total (1 after start,
        2 after the first reconnect, ...)."""
        await self._wait(lambda: self.subscribe_rounds >= rounds, timeout_s, f"subscription round {rounds}")


# --- ConnectCapture ---------------------------------------------------------------------------------------
# MQTT 5 properties: id -> (name, type)
_PROPERTIES: dict[int, tuple[str, str]] = {
    0x01: ("payload_format_indicator", "u8"), 0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "utf8"), 0x08: ("response_topic", "utf8"), 0x09: ("correlation_data", "binary"),
    0x0B: ("subscription_identifier", "varint"), 0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "utf8"), 0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "utf8"), 0x16: ("authentication_data", "binary"),
    0x17: ("request_problem_information", "u8"), 0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "u8"), 0x1A: ("response_information", "utf8"),
    0x1C: ("server_reference", "utf8"), 0x1F: ("reason_string", "utf8"), 0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"), 0x23: ("topic_alias", "u16"), 0x24: ("maximum_qos", "u8"),
    0x25: ("retain_available", "u8"), 0x26: ("user_property", "pair"), 0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "u8"), 0x29: ("subscription_identifier_available", "u8"),
    0x2A: ("shared_subscription_available", "u8"),
}
_REPEATABLE = {"user_property", "subscription_identifier"}
# MQTT 5 CONNACK reason code -> the closest MQTT 3.1.1 return code (unknown codes: 3, server unavailable)
_V311_RETURN_CODES = {0x84: 1, 0x85: 2, 0x88: 3, 0x89: 3, 0x86: 4, 0x87: 5, 0x8C: 5}
PACKET_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
                7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
                12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}


class ProtocolError(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"packet truncated: wanted {n} bytes at offset {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value = 0
        for shift in range(0, 28, 7):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ProtocolError("malformed variable byte integer")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def utf8(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"invalid UTF-8 string: {exc}") from exc

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def properties(self) -> dict[str, Any]:
        end = self.varint()
        block = _Reader(self.take(end))
        found: dict[str, Any] = {}
        while not block.done:
            identifier = block.varint()
            if identifier not in _PROPERTIES:
                raise ProtocolError(f"unknown property identifier 0x{identifier:02X}")
            name, kind = _PROPERTIES[identifier]
            value: Any = (block.utf8(), block.utf8()) if kind == "pair" else getattr(block, kind)()
            if name in _REPEATABLE:
                found.setdefault(name, []).append(value)
            elif name in found:
                raise ProtocolError(f"property {name} appears twice")
            else:
                found[name] = value
        return found


@dataclass(frozen=True)
class CapturedConnect:
    connection: int  # 0 for the first TCP connection, 1 for the next, ...
    protocol_name: str  # "MQTT" (3.1.1, 5) or "MQIsdp" (3.1)
    protocol_level: int  # 3 = 3.1, 4 = 3.1.1, 5 = 5
    client_id: str
    clean_start: bool  # clean session in 3.1.1
    keepalive: int
    username: str | None
    password: bytes | None
    will_topic: str | None
    will_payload: bytes | None
    will_qos: int
    will_retain: bool
    will_properties: dict[str, Any]
    properties: dict[str, Any]  # MQTT 5 CONNECT properties by snake_case spec name
    raw: bytes  # the whole packet as received

    @property
    def protocol(self) -> str:
        return {3: "3.1", 4: "3.1.1", 5: "5"}.get(self.protocol_level, f"level {self.protocol_level}")

    @property
    def auth_method(self) -> str | None:
        method: str | None = self.properties.get("authentication_method")
        return method

    @property
    def auth_data(self) -> bytes | None:
        data: bytes | None = self.properties.get("authentication_data")
        return data


@dataclass(frozen=True)
class CapturedPublish:
    connection: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: dict[str, Any]

    def json(self) -> Any:
        return orjson.loads(self.payload)


@dataclass(frozen=True)
class CapturedSubscribe:
    connection: int
    packet_id: int
    filters: list[tuple[str, int]]  # (topic filter, options byte; the low two bits are the QoS)
    properties: dict[str, Any]


@dataclass
class _Connection:
    number: int
    writer: asyncio.StreamWriter
    level: int | None = None  # protocol level once CONNECT arrived
    aliases: dict[int, str] = field(default_factory=dict)


class ConnectCapture:
    """A recording MQTT server for client tests (not a broker: nothing is routed to subscribers).

    Answers CONNECT with a success CONNACK in the client's protocol version (echoing an MQTT 5
    Authentication Method), PINGREQ with PINGRESP, QoS 1 PUBLISH with PUBACK, QoS 2 with PUBREC and
    then PUBCOMP, SUBSCRIBE with SUBACK granting the requested QoS, UNSUBSCRIBE with UNSUBACK.

    Records: ``connects`` (``CapturedConnect``), ``publishes`` (``CapturedPublish``), ``subscribes``,
    ``packets`` (``(connection, packet name)`` for every packet received, e.g. to see DISCONNECT or
    AUTH), ``errors`` (protocol violations found while parsing; the connection is closed on one).

    Controls: ``reject_next(reason_code)`` refuses the next CONNECT; ``hold_acks = True`` keeps
    PUBACK/PUBREC back until ``release_acks()``; ``drop_clients()`` closes every connection (the
    client should reconnect); ``stop()`` then ``start()`` serve again on the same port.
    """

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        self.host, self.port = host, port
        self.connects: list[CapturedConnect] = []
        self.publishes: list[CapturedPublish] = []
        self.subscribes: list[CapturedSubscribe] = []
        self.packets: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.hold_acks = False
        self._held: list[tuple[_Connection, bytes]] = []
        self._rejections: deque[int] = deque()
        self._connections: dict[int, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    async def start(self) -> ConnectCapture:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self.drop_clients()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> ConnectCapture:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def reject_next(self, reason_code: int, count: int = 1) -> None:
        """Answer the next ``count`` CONNECTs with this MQTT 5 reason code (e.g. 0x87 not authorized,
        0x86 bad user name or password, 0x8C bad authentication method) and close the connection. An
        MQTT 3.1.1 client gets the closest 3.1.1 return code instead."""
        if reason_code < 0x80:
            raise ValueError("a refusal needs a failure reason code (>= 0x80)")
        self._rejections.extend([reason_code] * count)

    def release_acks(self) -> None:
        """Send the acknowledgements held back while ``hold_acks`` was set (and clear it)."""
        self.hold_acks = False
        held, self._held = self._held, []
        for connection, packet in held:
            if connection.number in self._connections:
                connection.writer.write(packet)

    async def drop_clients(self) -> None:
        """Close every client connection and wait until their handlers finished."""
        for connection in list(self._connections.values()):
            connection.writer.close()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=10)
            if pending:
                raise RuntimeError(f"{len(pending)} connection handlers did not finish")

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0,
                       what: str = "the condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; "
                                     f"{len(self.connects)} connects, {len(self.publishes)} publishes, "
                                     f"packets {self.packets[-10:]}, errors {self.errors}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_connects(self, n: int, timeout_s: float = 10.0) -> list[CapturedConnect]:
        await self.wait_for(lambda: len(self.connects) >= n, timeout_s, f"{n} CONNECTs")
        return self.connects

    async def wait_publishes(self, n: int, timeout_s: float = 10.0) -> list[CapturedPublish]:
        await self.wait_for(lambda: len(self.publishes) >= n, timeout_s, f"{n} PUBLISHes")
        return self.publishes

    async def wait_subscribes(self, n: int, timeout_s: float = 10.0) -> list[CapturedSubscribe]:
        await self.wait_for(lambda: len(self.subscribes) >= n, timeout_s, f"{n} SUBSCRIBEs")
        return self.subscribes

    # server side --------------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _Connection(next(self._numbers), writer)
        self._connections[connection.number] = connection
        try:
            while True:
                header = await reader.readexactly(1)
                length = 0
                for shift in range(0, 28, 7):
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                else:
                    raise ProtocolError("malformed remaining length")
                body = await reader.readexactly(length)
                if not self._handle(connection, header[0], body):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        except ProtocolError as exc:
            self.errors.append(f"connection {connection.number}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a harness bug must show up in errors, not only in a log
            self.errors.append(f"connection {connection.number}: {type(exc).__name__}: {exc}")
        finally:
            self._connections.pop(connection.number, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)
            self._changed.set()

    def _send_ack(self, connection: _Connection, packet: bytes) -> None:
        if self.hold_acks:
            self._held.append((connection, packet))
        else:
            connection.writer.write(packet)

    def _handle(self, connection: _Connection, first: int, body: bytes) -> bool:
        """Handle one packet; False closes the connection."""
        kind, flags = first >> 4, first & 0x0F
        name = PACKET_NAMES.get(kind, f"type {kind}")
        self.packets.append((connection.number, name))
        self._changed.set()
        if kind != 1 and connection.level is None:
            raise ProtocolError(f"{name} before CONNECT")
        v5 = connection.level == 5
        reader = _Reader(body)
        writer = connection.writer
        if kind == 1:  # CONNECT
            if connection.level is not None:
                raise ProtocolError("second CONNECT on one connection")
            return self._on_connect(connection, first, body)
        if kind == 3:  # PUBLISH
            qos = (flags >> 1) & 0x03
            topic = reader.utf8()
            packet_id = reader.u16() if qos else None
            properties = reader.properties() if v5 else {}
            alias = properties.get("topic_alias")
            if alias is not None:
                if topic:
                    connection.aliases[alias] = topic
                elif alias in connection.aliases:
                    topic = connection.aliases[alias]
                else:
                    raise ProtocolError(f"unknown topic alias {alias}")
            self.publishes.append(CapturedPublish(connection.number, topic, reader.rest(), qos, bool(flags & 1),
                                                  bool(flags & 0x08), packet_id, properties))
            if qos == 1:
                self._send_ack(connection, _packet(0x40, (packet_id or 0).to_bytes(2, "big")))
            elif qos == 2:
                self._send_ack(connection, _packet(0x50, (packet_id or 0).to_bytes(2, "big")))
        elif kind == 6:  # PUBREL -> PUBCOMP
            writer.write(_packet(0x70, reader.take(2)))
        elif kind == 8:  # SUBSCRIBE
            packet_id = reader.u16()
            properties = reader.properties() if v5 else {}
            filters = []
            while not reader.done:
                filters.append((reader.utf8(), reader.u8()))
            self.subscribes.append(CapturedSubscribe(connection.number, packet_id, filters, properties))
            granted = bytes(min(options & 0x03, 2) for _topic, options in filters)
            writer.write(_packet(0x90, packet_id.to_bytes(2, "big") + (b"\x00" if v5 else b"") + granted))
        elif kind == 10:  # UNSUBSCRIBE
            packet_id = reader.u16()
            properties = reader.properties() if v5 else {}
            count = 0
            while not reader.done:
                reader.utf8()
                count += 1
            writer.write(_packet(0xB0, packet_id.to_bytes(2, "big") + (b"\x00" + b"\x00" * count if v5 else b"")))
        elif kind == 12:  # PINGREQ
            writer.write(b"\xd0\x00")
        elif kind == 14:  # DISCONNECT
            return False
        elif kind in (4, 5, 7, 15):  # PUBACK/PUBREC/PUBCOMP (nothing is sent to clients), AUTH: recorded only
            pass
        else:
            raise ProtocolError(f"unexpected {name} from a client")
        return True

    def _on_connect(self, connection: _Connection, first: int, body: bytes) -> bool:
        if first != 0x10:
            raise ProtocolError(f"CONNECT with reserved flags 0x{first & 0x0F:X}")
        reader = _Reader(body)
        protocol_name = reader.utf8()
        level = reader.u8()
        flags = reader.u8()
        keepalive = reader.u16()
        properties = reader.properties() if level == 5 else {}
        client_id = reader.utf8()
        will_topic = will_payload = None
        will_properties: dict[str, Any] = {}
        if flags & 0x04:
            will_properties = reader.properties() if level == 5 else {}
            will_topic = reader.utf8()
            will_payload = reader.binary()
        username = reader.utf8() if flags & 0x80 else None
        password = reader.binary() if flags & 0x40 else None
        if not reader.done:
            raise ProtocolError(f"{len(body) - reader.pos} unexpected bytes after the CONNECT payload")
        connection.level = level
        self.connects.append(CapturedConnect(
            connection.number, protocol_name, level, client_id, bool(flags & 0x02), keepalive, username, password,
            will_topic, will_payload, (flags >> 3) & 0x03, bool(flags & 0x20), will_properties, properties,
            bytes([first]) + _varint(len(body)) + body))
        refusal = self._rejections.popleft() if self._rejections else None
        if level == 5:
            props = b""
            if refusal is None and "authentication_method" in properties:
                props = b"\x15" + _utf8(properties["authentication_method"])
            code = refusal or 0
            connection.writer.write(_packet(0x20, bytes([0, code]) + _varint(len(props)) + props))
        else:
            code = _V311_RETURN_CODES.get(refusal, 3) if refusal is not None else 0
            connection.writer.write(_packet(0x20, bytes([0, code])))
        return refusal is None
