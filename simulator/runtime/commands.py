"""Runtime commands applied: one processor for every entrance (HTTP, MQTT command topic).

The commands and their validation are :mod:`simulator.command_schema`.  :class:`CommandProcessor`
validates a command (raw bytes or an already decoded mapping), applies it between two steps of the
model through the driver, counts it and returns a small JSON-able result.  A malformed or
inapplicable command raises :class:`CommandRejected` (``reason`` code, ``detail``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from simulator.asyncio_waits import wait_for
from simulator.command_schema import DELIVERY_COMMANDS, PLANT_WIDE, Command, command_name, decode_command, parse_command
from simulator.errors import CommandRejected, JournalRefused
from simulator.io_metrics import IoMetrics
from simulator.model import inputs
from simulator.runtime.driver import Driver
from simulator.runtime.gate import InputGate

log = logging.getLogger(__name__)


class CommandProcessor:
    """Applies commands: block, repair and anomalies as model inputs through ``inputs`` (default:
    an input gate on ``driver``), pause, resume and speed on the ``driver`` itself; one per service,
    shared by the entrances (``source`` names the entrance in counters and logs)."""

    def __init__(self, driver: Driver, metrics: IoMetrics | None = None, *, timeout_s: float = 10.0,
                 inputs: InputGate | None = None, refusal: Callable[[bool], str | None] | None = None) -> None:
        """``refusal(is_input)``: why the service takes no command (or no model input) now, or None."""
        self.driver = driver
        self.inputs = inputs or InputGate(driver)
        self.refusal = refusal
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def execute(self, payload: bytes | bytearray | memoryview | str | Mapping[str, Any],
                      source: str = "mqtt") -> dict[str, Any]:
        """Validate and apply ``payload``; returns the result, raises CommandRejected."""
        name = "invalid"  # the counter's label while the command's name is unknown
        try:
            data = decode_command(payload)
            name = command_name(data)
            command = parse_command(data)
            result = {"command": command.name, **await self.apply(command)}
        except CommandRejected as exc:
            self.rejected(source, name, exc)
            raise
        self._count(source, name, "accepted")
        log.info("%s command %s applied: %s", source, name, result)
        return result

    def rejected(self, source: str, name: str, exc: CommandRejected) -> None:
        """Count and log a rejected command (also for an entrance that rejects it before ``execute``)."""
        self._count(source, name, "rejected")
        log.warning("%s command %s rejected: %s (%s)", source, name, exc.reason, exc.detail)

    async def apply(self, command: Command) -> dict[str, Any]:
        """Apply a validated command."""
        driver = self.driver
        name, machine_id = command.name, command.machine_id
        if name in DELIVERY_COMMANDS:  # the service's targets take these (ServiceCommands), never the model
            raise CommandRejected("unsupported", f"{name} acts on the delivery to MQTT targets and HTTP sinks, "
                                                 "not on the plant; send it to the service's own command entrances")
        why = self.refusal(name not in ("pause", "resume", "speed")) if self.refusal is not None else None
        if why is not None:
            raise CommandRejected("unavailable", why)
        if name == "pause":
            driver.pause()
            return {"paused": True, "sim_time_s": round(driver.sim.now, 3)}
        if name == "resume":
            driver.resume()
            return {"paused": False, "held_by": sorted(driver.held), "sim_time_s": round(driver.sim.now, 3)}
        if name == "speed":
            driver.set_speed(command.speed)
            return {"speed": "max" if command.speed is None else command.speed}
        if name in PLANT_WIDE:
            return await self._plant_wide(command)
        assert machine_id is not None
        if name == "block":
            return await self._one(inputs.Block(machine_id, command.reason, command.duration_s))
        if name == "repair":
            return await self._one(inputs.Repair(machine_id))
        if name == "anomaly":
            assert command.anomaly is not None
            return await self._one(inputs.SetAnomaly(machine_id, command.anomaly, command.severity,
                                                     command.duration_s))
        return await self._one(inputs.ClearAnomaly(machine_id, command.anomaly))

    async def _plant_wide(self, command: Command) -> dict[str, Any]:
        """The plant-wide switch: one input per plant, or the one machine's anomaly input."""
        assert command.anomaly is not None
        anomaly, on, machine_id = command.anomaly, command.value, command.machine_id
        if anomaly not in PLANT_WIDE:
            raise CommandRejected("unknown_anomaly", f"plant-wide anomalies are {', '.join(PLANT_WIDE)} "
                                                     f"(got {anomaly!r})")
        changed: list[str] = []
        if machine_id is not None:
            item: inputs.Input = (inputs.SetAnomaly(machine_id, anomaly, command.severity, command.duration_s) if on
                                  else inputs.ClearAnomaly(machine_id, anomaly))
            result = await self._one(item)
            if on or result["cleared"] is not None:
                changed.append(machine_id)
        else:
            for result in await self._all([inputs.PlantAnomaly(plant, anomaly, on, command.severity,
                                                               command.duration_s)
                                           for plant in self.inputs.plants]):
                changed += result["machines"]
        return {"anomaly": anomaly, "value": on, "machines": sorted(changed)}

    async def _one(self, item: inputs.Input) -> dict[str, Any]:
        (result,) = await self._all([item])
        return result

    async def _all(self, items: list[inputs.Input]) -> list[dict[str, Any]]:
        """Apply ``items`` between two steps of the model; the first refusal is raised (the items
        of one command belong together: all apply, or the first that cannot says why)."""
        try:
            results = await wait_for(self.inputs.submit(items), self.timeout_s)
        except TimeoutError as exc:
            raise CommandRejected("unavailable", f"the simulation did not take the command within "
                                                 f"{self.timeout_s:g} s (is it stopping?)") from exc
        views: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, JournalRefused):
                raise CommandRejected("unavailable", str(result))
            if isinstance(result, Exception):
                raise result
            assert isinstance(result, dict)
            views.append(result)
        return views

    def _count(self, source: str, name: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.commands.labels(source, name, outcome).inc()
