"""Commands where the plants are shared between instances: applied here, or routed to the owner.

A command names a machine (its plant's), or none (pause, resume, speed and a plant-wide anomaly
without a machine: every plant).  Each plant it concerns gets it: a plant run by this instance
applies it at once (the answer is its result); another one's gets it through the plant inbox
(:mod:`simulator.adapters.plant_inbox`), and the answer says where it went: ``{"routed_to":
plant, "owner": instance id or null}``.  The owner applies it when it reads it; if the owner
refuses it (a plant still warming up, say), its log says so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

from simulator.adapters.plant_inbox import RoutedCommand
from simulator.command_schema import Command, command_name, decode_command, parse_command
from simulator.errors import CommandRejected

if TYPE_CHECKING:
    from simulator.programs.service import Service

log = logging.getLogger(__name__)


class PlantCommands:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def execute(self, payload: bytes | bytearray | memoryview | str | Mapping[str, Any],
                      source: str = "mqtt") -> dict[str, Any]:
        """Validate ``payload`` and apply it to its plants (here, or routed to their owners)."""
        name = "invalid"
        try:
            data = decode_command(payload)
            name = command_name(data)
            command = parse_command(data)
            if command.machine_id is not None:
                plant = self.service.machine_plants.get(command.machine_id)
                if plant is None:
                    raise CommandRejected("unknown_machine", f"no machine {command.machine_id!r}")
                plants = [plant]
            else:
                plants = sorted(self.service.config.locations)
            if source == "mqtt":  # every instance reads the command topic: each applies it to its own plants
                plants = [plant for plant in plants if plant in self.service.run_of]
                if not plants:
                    log.debug("mqtt command %s concerns no plant run here", name)
                    return {"command": name, "plants": {}}
            results = {plant: await self._to(plant, data, command) for plant in plants}
        except CommandRejected as exc:
            self.rejected(source, name, exc)
            raise
        self._count(source, name, "accepted")
        if len(results) == 1:
            return next(iter(results.values()))
        return {"command": name, "plants": results}

    async def _to(self, plant: str, data: dict[str, Any], command: Command) -> dict[str, Any]:
        service = self.service
        run = service.run_of.get(plant)
        if run is not None and not run.stopped:
            return {"command": command.name, **await run.commands.apply(command)}
        router = service.router
        if router is None:
            raise CommandRejected("unavailable", "the service is starting; send the command again")
        try:
            await router.send_command(data, plant)
        except KafkaError as exc:
            raise CommandRejected("unavailable", f"the command could not be routed to plant {plant}'s owner "
                                                 f"({exc!r})") from exc
        owner = service.owner_of(plant)
        log.info("command %s routed to plant %s (owner %s)", data.get("command"), plant, owner or "unknown")
        return {"command": data.get("command"), "routed_to": plant, "owner": owner}

    async def routed(self, command: RoutedCommand, plant: str) -> None:
        """A command another instance routed to ``plant``, owned here (from its inbox partition)."""
        run = self.service.run_of.get(plant)
        if run is None:
            log.warning("routed command %s for plant %s dropped: the plant is not run here",
                        str(command.body.get("command"))[:100], plant)
            return
        with contextlib.suppress(CommandRejected):  # logged and counted by the plant's command processor
            await run.commands.execute(command.body, source="routed")

    def rejected(self, source: str, name: str, exc: CommandRejected) -> None:
        self._count(source, name, "rejected")
        log.warning("%s command %s rejected: %s (%s)", source, name, exc.reason, exc.detail)

    def _count(self, source: str, name: str, outcome: str) -> None:
        self.service.metrics.commands.labels(source, name, outcome).inc()
