"""Helper processes of the embedded broker (tansu, SeaweedFS) that die with the service.

On Linux each child asks the kernel, before it becomes the binary, for SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``), even when the service is killed with SIGKILL.  That runs in a
tiny Python wrapper that ``exec``s the binary (same pid), not in a ``preexec_fn``, which is unsafe
in a process with threads.  The parent that counts is the *thread* that started the child: start
children from the event loop's thread and keep that thread alive while they run.

:func:`process_start` and :func:`stop_stale` find such a child again by pid and start time (a pid
file records both), for the rare child that outlived its service anyway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from simulator.asyncio_waits import wait_for
from simulator.errors import BrokerUnavailable

log = logging.getLogger(__name__)

# Runs in the child between fork and the binary (argv: parent pid, binary, its arguments).
# PR_SET_PDEATHSIG is 1; it survives execve (the binaries are not set-uid).
_WRAPPER = """\
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_PDEATHSIG) failed: errno %d" % ctypes.get_errno())
if os.getppid() != int(sys.argv[1]):
    sys.exit("the parent died before the child started")
os.execv(sys.argv[2], sys.argv[2:])
"""

TAIL_LINES = 30


def with_death_signal(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so that the process gets SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _WRAPPER, str(os.getpid()), *argv]


class Child:
    """A started helper process: its output goes to the debug log (the last lines are kept for
    error messages); ``stop()`` sends SIGTERM, then SIGKILL after a grace time, and is idempotent."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process: asyncio.subprocess.Process | None = process
        self.pid = process.pid
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._log_task = asyncio.create_task(self._forward_output(process), name=f"{name}-log")

    @classmethod
    async def start(cls, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
                    cwd: str | Path | None = None) -> Child:
        process = await asyncio.create_subprocess_exec(
            *with_death_signal(argv), env=dict(env) if env is not None else None, cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill it before the service has shut down
        )
        return cls(name, process)

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def describe_exit(self) -> str:
        """``"<name> exited with code N"`` and its last output lines, for an error message."""
        last = " | ".join(line for line in self.tail if line)[-1500:]
        return f"{self.name} exited with code {self.returncode}" + (f": {last}" if last else "")

    def send_signal(self, sig: signal.Signals) -> None:
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def _forward_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            log.debug("%s: %s", self.name, line)

    async def stop(self, timeout_s: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a frozen (SIGSTOPped) child cannot handle SIGTERM
                process.terminate()
            try:
                await wait_for(process.wait(), timeout_s)
            except TimeoutError:
                log.warning("%s (pid %s) did not stop within %.0f s: killing it", self.name, process.pid, timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if not self._log_task.done():
            try:
                await wait_for(asyncio.shield(self._log_task), 1.0)  # the last lines, after the exit
            except TimeoutError:
                self._log_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._log_task


def process_start(pid: int) -> str | None:
    """The start time of a live (not zombie) process in clock ticks since boot, or None: with the
    pid, it names one process (a pid alone may have been reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state, ppid, ...; starttime is field 22
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def alive(pid: int, start: str) -> bool:
    return process_start(pid) == start


async def stop_stale(name: str, pid: int, start: str, timeout_s: float = 10.0) -> bool:
    """Stop the process ``pid`` if it is still the one that started at ``start`` (SIGTERM, then
    SIGKILL); True if there was one."""
    if not alive(pid, start):
        return False
    log.warning("stopping %s (pid %s) left running by an earlier service", name, pid)
    for sig, grace_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, sig)
        if await _gone(pid, start, grace_s):
            return True
    raise BrokerUnavailable(f"{name} (pid {pid}), left running by an earlier service, survived SIGKILL")


async def _gone(pid: int, start: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive(pid, start):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
