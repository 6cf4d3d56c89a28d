"""Fault drills: make one of the service's loops fail on purpose, to see the supervision work.

``FACTORYSIM_FAULT=<loop>[@<seconds>]`` (default 5 s after the service is running) makes that
loop fail once: ``intake`` (order intake), ``publisher`` (Kafka publisher), ``driver`` (an
exception raised inside a step of the model), ``http`` (the HTTP server stops listening) or
``mqtt`` (every in-process MQTT target).  The service must then do what it does for a real
failure: ``/health`` answers 503 at once, the error is logged once, and the process ends with
exit code 1 within the documented bound, so that systemd, Docker or Kubernetes restart it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from simulator.errors import ConfigError, FactorySimError

if TYPE_CHECKING:
    from simulator.model.simulation import Simulation

ENV = "FACTORYSIM_FAULT"
LOOPS = ("intake", "publisher", "driver", "http", "mqtt")
DEFAULT_AFTER_S = 5.0
T = TypeVar("T")


class InjectedFault(FactorySimError):
    """The failure a fault drill asked for."""


@dataclass(frozen=True, slots=True)
class FaultDrill:
    loop: str
    after_s: float = DEFAULT_AFTER_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FaultDrill | None:
        text = environ.get(ENV, "").strip()
        if not text:
            return None
        loop, _, after = text.partition("@")
        loop = loop.strip()
        try:
            after_s = float(after) if after.strip() else DEFAULT_AFTER_S
        except ValueError:
            after_s = math.nan
        if loop not in LOOPS or not (math.isfinite(after_s) and 0 <= after_s <= 86_400):
            raise ConfigError([f"{ENV}: expected <loop>[@<seconds>] with a loop of {', '.join(LOOPS)} and 0..86400 "
                               f"seconds, got {text!r}"])
        return cls(loop, after_s)

    def error(self) -> InjectedFault:
        return InjectedFault(f"fault drill ({ENV}={self.loop}@{self.after_s:g}): the {self.loop} loop fails")

    async def failing(self, loop: Awaitable[T]) -> T:
        """Run ``loop``; unless it ends first, stop it after ``after_s`` and raise the drill's error
        in its place (for loops that fail by ending with an exception)."""
        task = asyncio.ensure_future(loop)
        try:
            done, _ = await asyncio.wait([task], timeout=self.after_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.wait([task])  # (a cancellation of this task still propagates)
        raise self.error()


def fail_in_step(sim: Simulation, drill: FaultDrill) -> None:
    """Make the model's next step raise the drill's error: it leaves ``env.step()`` as a bug in
    the model would."""

    def fail() -> None:
        raise drill.error()

    sim.call_soon(fail)
