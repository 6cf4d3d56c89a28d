"""Supervision of the service's loops: a loop that fails ends the process, never leaves a zombie.

Every long-running loop runs through :meth:`Supervisor.watch`.  When one raises (or ends while it
should still run), :meth:`Supervisor.fail` records the failure (``/health`` turns 503 at once),
logs it once with its traceback, asks the service to stop, and arms an :class:`ExitDeadline`:
whatever happens to the orderly shutdown (a hung task, a blocked event loop), the process ends
with exit code 1 by then, so that systemd, Docker or Kubernetes restart it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulator.errors import ConfigError, FactorySimError
from simulator.exit_codes import EXIT_FAILURE
from simulator.utc import utc_text

log = logging.getLogger(__name__)

# after a loop failed: the orderly shutdown's budget, and the latest exit
FAILURE_SHUTDOWN_S = 10.0
FAILURE_EXIT_S = 15.0
# ... and how long /health keeps answering 503 with the failure before the process ends (at least)
FAILURE_REPORT_S = 1.0


class ServiceFailed(FactorySimError):
    """A loop of the service failed; the service stopped (exit code 1)."""


@dataclass(frozen=True, slots=True)
class Failure:
    task: str
    error: str
    at: dt.datetime
    monotonic: float

    def view(self) -> dict[str, str]:
        return {"task": self.task, "error": self.error, "at": utc_text(self.at)}




class ExitDeadline:
    """Ends the process with ``code`` when ``seconds`` have passed, unless cancelled.  A thread keeps
    the time, so a hung or blocked event loop cannot hold the exit up."""

    def __init__(self, hard_exit: bool) -> None:
        self.hard_exit = hard_exit  # False inside tests and embedding programs: log only
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float, code: int, why: str) -> None:
        if self._timer is not None or not self.hard_exit:
            return

        def expire() -> None:
            log.critical("%s: still running %.0f s later; exiting now with code %d", why, seconds, code)
            logging.shutdown()
            os._exit(code)

        self._timer = threading.Timer(seconds, expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Supervisor:
    def __init__(self, request_stop: Callable[[], None], *, hard_exit: bool,
                 on_failure: Callable[[Failure], None] | None = None) -> None:
        self.request_stop = request_stop
        self.on_failure = on_failure
        self.deadline = ExitDeadline(hard_exit)
        self.failure: Failure | None = None
        self.config_error: ConfigError | None = None  # the failure was a configuration error (exit code 2)
        self.stopping = False  # set once a stop was asked for: loops may then end

    def fail(self, task: str, exc: BaseException) -> None:
        """Record the first failure, log it once, stop the service, arm the exit deadline."""
        if self.failure is not None:
            log.warning("%s failed too: %r", task, exc)
            return
        self.failure = Failure(task, f"{type(exc).__name__}: {exc}", dt.datetime.now(dt.UTC), time.monotonic())
        if isinstance(exc, ConfigError):  # found while running (a plant taken over): still a config error
            self.config_error = exc
        log.error("%s failed; stopping the service (exit code %d)", task, EXIT_FAILURE, exc_info=exc)
        self.deadline.arm(FAILURE_EXIT_S, EXIT_FAILURE, f"{task} failed")
        if self.on_failure is not None:
            self.on_failure(self.failure)
        self.request_stop()

    async def watch(self, name: str, loop: Awaitable[object], *, until_stopped: bool = True) -> None:
        """Run ``loop``; its exception (or, with ``until_stopped``, its ending before a stop was asked
        for) is a failure of the service."""
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any loop error fails the service, reported once
            self.fail(name, exc)
            return
        if until_stopped and not self.stopping:
            self.fail(name, ServiceFailed(f"{name} ended on its own"))

    async def report_failure(self) -> None:
        """After a failure, let ``/health`` say so (503 and why) for FAILURE_REPORT_S in all before
        the process ends: a probe or an operator with curl sees the reason, not just a closed port."""
        if self.failure is not None:
            await asyncio.sleep(max(0.0, FAILURE_REPORT_S - (time.monotonic() - self.failure.monotonic)))

    def raise_if_failed(self) -> None:
        if self.config_error is not None:
            raise self.config_error
        if self.failure is not None:
            raise ServiceFailed(f"{self.failure.task} failed ({self.failure.error}); see the log above")


async def unless_stopped(start: Awaitable[object], stop: asyncio.Event) -> bool:
    """Run the start-up ``start`` unless ``stop`` is set first (signals work during start-up too):
    True when it finished and no stop was asked for; its error, if it failed, is raised."""
    starting = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.wait([starting], timeout=5)
    if starting.cancelled():
        return False
    starting.result()
    return not stop.is_set()
