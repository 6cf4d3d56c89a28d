"""The service's one entrance for runtime commands: the model's commands go to the plants' command
processors (:class:`simulator.runtime.commands.CommandProcessor`, or routed to their owners by
:class:`simulator.programs.plant_commands.PlantCommands`); the delivery commands
(:data:`simulator.command_schema.DELIVERY_COMMANDS`) go to this instance's MQTT targets and HTTP
sinks.  Delivery commands are not model inputs: they are not journaled, and with several instances
each applies them to its own targets.

- ``network_outage`` ``{value, [target], [duration_s]}``: the target's link goes down (true) or comes
  back (false); without ``target``, every target with ``uplink: true``; ``duration_s`` in wall seconds.
- ``delivery_faults`` ``{[target], [duplicate], [drop], [delay], [reorder], [outages], [seed]}``: the
  target's faults are replaced by these (none given: all off); without ``target``, every target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from simulator.command_schema import DELIVERY_COMMANDS, Command, command_name, decode_command, parse_command
from simulator.errors import CommandRejected

if TYPE_CHECKING:
    from simulator.adapters.delivery.target import DeliveryTarget
    from simulator.interfaces import CommandSink
    from simulator.io_metrics import IoMetrics

log = logging.getLogger(__name__)


class ServiceCommands:
    """``model()``: where the model's commands go now (the run's processor is rebuilt on recovery)."""

    def __init__(self, model: Callable[[], CommandSink], targets: Sequence[DeliveryTarget],
                 metrics: IoMetrics) -> None:
        self.model = model
        self.targets = targets
        self.metrics = metrics

    async def execute(self, payload: bytes | bytearray | memoryview | str | Mapping[str, Any],
                      source: str = "mqtt") -> dict[str, Any]:
        try:
            data = decode_command(payload)
            name = command_name(data)
        except CommandRejected:
            return await self.model().execute(payload, source)  # rejects it, counted and logged there
        if name not in DELIVERY_COMMANDS:
            return await self.model().execute(data, source)
        try:
            result = {"command": name, **self.apply(parse_command(data))}
        except CommandRejected as exc:
            self.rejected(source, name, exc)
            raise
        self.metrics.commands.labels(source, name, "accepted").inc()
        log.info("%s command %s applied: %s", source, name, result)
        return result

    def rejected(self, source: str, name: str, exc: CommandRejected) -> None:
        self.model().rejected(source, name, exc)

    def apply(self, command: Command) -> dict[str, Any]:
        """Apply a validated delivery command to its targets."""
        targets = self._chosen(command)
        if command.name == "network_outage":
            for target in targets:
                target.network_outage(command.value, command.duration_s)
            return {"value": command.value, "targets": [t.name for t in targets], "duration_s": command.duration_s}
        assert command.faults is not None
        for target in targets:
            target.set_faults(command.faults)
        return {"targets": {t.name: t.faults.faults.describe() for t in targets}}

    def _chosen(self, command: Command) -> list[DeliveryTarget]:
        known = ", ".join(t.name for t in self.targets) or "none"
        if not self.targets:
            raise CommandRejected("no_targets", f"{command.name} acts on MQTT targets and HTTP sinks; this service "
                                                "has none (mqtt.targets, http_sinks)")
        if command.target is not None:
            chosen = [t for t in self.targets if t.name == command.target]
            if not chosen:
                raise CommandRejected("unknown_target", f"no MQTT target or HTTP sink {command.target!r}; known: "
                                                        f"{known}")
            return chosen
        if command.name == "network_outage":
            chosen = [t for t in self.targets if t.uplink]
            if not chosen:
                raise CommandRejected("no_targets", "every target has uplink: false (name one with 'target'); "
                                                    f"known: {known}")
            return chosen
        return list(self.targets)
