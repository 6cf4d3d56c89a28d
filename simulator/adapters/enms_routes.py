"""The ``/simulator/...`` routes: the control API of the EnMS factory simulator, mapped onto this
service's views and commands, so that its clients keep working.

- ``POST /simulator/start`` and ``POST /simulator/stop``, body optional: ``{"machine_ids": [...],
  "factory_ids": [...]}`` (factories are plants, by name or alias).  Without ids they resume and pause
  simulated time; with ids they act on those machines: stop blocks each (reason ``stopped``, until it
  is started again), start repairs each blocked one — whatever blocked it.  Commands, behind the
  bearer token; each machine's block or repair is a command of its own (journaled, counted).
- ``GET /simulator/status``: the service's state in the EnMS simulator's terms (open).
- ``GET /simulator/machines``, ``GET /simulator/machines/{id}``, ``POST`` and ``DELETE
  /simulator/machines/{id}/anomaly``: the same as ``/machines...`` (the routes' table,
  :mod:`simulator.adapters.openapi`, lists them).

Start and stop answer ``{"message", "success", "data"}`` like the EnMS simulator: ``success`` is
false when a machine refused (in maintenance, off shift), which ``data.machines`` tells per machine.
"""

from __future__ import annotations

import math
from typing import Any

from simulator.command_schema import decode_command
from simulator.errors import CommandRejected
from simulator.interfaces import HttpServiceView, ServiceState
from simulator.limits import MAX_TEXT_CHARS, control_characters
from simulator.model.machine import MachineState

STOP_REASON = "stopped"
MAX_IDS = 200  # (and the whole body at most MAX_COMMAND_BYTES, as a command)
ID_FIELDS = ("machine_ids", "factory_ids")
# what a refused block or repair means for a stop or a start
ALREADY = {"already_blocked": "already stopped", "not_blocked": "already running"}


def machines_of(service: HttpServiceView, body: dict[str, Any]) -> list[str] | None:
    """The machines ``body`` names (None: it names none, the whole simulation); raises CommandRejected."""
    unknown = sorted(set(body) - set(ID_FIELDS))
    if unknown:
        raise CommandRejected("unknown_field", f"unknown field {unknown[0][:40]!r}; allowed: {', '.join(ID_FIELDS)}")
    lists = {name: body.get(name) for name in ID_FIELDS}
    for name, ids in lists.items():
        if ids is None:
            continue
        if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(
                isinstance(i, str) and 1 <= len(i) <= MAX_TEXT_CHARS and not control_characters(i) for i in ids):
            raise CommandRejected("invalid_field", f"{name} must be a list of at most {MAX_IDS} ids of 1 to "
                                                   f"{MAX_TEXT_CHARS} characters without control characters")
    if lists["machine_ids"] is None and lists["factory_ids"] is None:
        return None
    machine_plants, config = service.machine_plants, service.config
    chosen: dict[str, None] = {}
    for machine_id in lists["machine_ids"] or []:
        if machine_id not in machine_plants:
            raise CommandRejected("unknown_machine", f"no machine {machine_id!r}")
        chosen[machine_id] = None
    for factory in lists["factory_ids"] or []:
        plant = config.location_of(factory)
        if plant is None:
            raise CommandRejected("unknown_factory", f"no factory (plant) {factory!r}; known: "
                                                     f"{', '.join(config.locations)}")
        chosen.update(dict.fromkeys(mid for mid, where in sorted(machine_plants.items()) if where == plant))
    return list(chosen)


async def start_or_stop(service: HttpServiceView, start: bool, raw: bytes) -> dict[str, Any]:
    """Apply POST /simulator/start (``start``) or /simulator/stop with the body ``raw``; the answer.
    Raises CommandRejected for a malformed body, an unknown machine or a simulation that takes no
    command now (the machines before it are applied)."""
    body = decode_command(raw) if raw else {}
    ids = machines_of(service, body)
    data: dict[str, Any] = {"command": None, "machines": []}
    success = True
    if ids is None:
        result = await service.commands.execute({"command": "resume" if start else "pause"}, source="http")
        data.update(result)
        message = "simulation resumed" if start else "simulation paused"
    else:
        for machine_id in ids:
            entry = await _one_machine(service, machine_id, start)
            success = success and "error" not in entry
            data["machines"].append(entry)
        done = sum(1 for e in data["machines"] if "error" not in e)
        message = f"{done} of {len(ids)} machines {'started' if start else 'stopped'}"
    machines = service.machines_here().values()
    data["running_machines"] = sum(1 for m in machines if m.state == MachineState.RUNNING)
    data["total_machines"] = len(machines)
    return {"message": message, "success": success, "data": data}


async def _one_machine(service: HttpServiceView, machine_id: str, start: bool) -> dict[str, Any]:
    machine = service.machines_here().get(machine_id)
    entry: dict[str, Any] = {"machine_id": machine_id}
    if machine is None:  # (scale_out) a machine of a plant another instance runs: its command goes there
        command = {"command": "repair", "machine_id": machine_id} if start else {
            "command": "block", "machine_id": machine_id, "reason": STOP_REASON}
        result = await service.commands.execute(command, source="http")
        entry.update(outcome="routed", owner=result.get("owner"), state=None)
        return entry
    blocked = machine.state == MachineState.BLOCKED
    if blocked != start:  # nothing to do
        entry["outcome"] = "already running" if start else "already stopped"
    else:
        command = {"command": "repair", "machine_id": machine_id} if start else {
            "command": "block", "machine_id": machine_id, "reason": STOP_REASON}
        try:
            await service.commands.execute(command, source="http")
            entry["outcome"] = "started" if start else "stopped"
        except CommandRejected as exc:
            if exc.reason == "unavailable":
                raise
            if exc.reason in ALREADY:
                entry["outcome"] = ALREADY[exc.reason]
            else:
                entry.update(outcome="refused", error=exc.reason, detail=exc.detail)
    entry["state"] = str(machine.state)
    return entry


def status(service: HttpServiceView) -> dict[str, Any]:
    """GET /simulator/status: the service's state as the EnMS simulator reported its own."""
    health = service.health()
    sims = service.sims()
    machines = service.machines_here()
    paused = bool(health["simulation"]["paused"])
    state = health["state"]
    shown = "stopped" if state == ServiceState.RUNNING and paused else str(state)
    targets = health["mqtt"]["targets"]
    anomalies = service.config.disruptions.anomalies
    return {
        "status": shown,
        "uptime_seconds": health["uptime_seconds"],
        "factories_count": sum(len(sim.config.locations) for sim in sims),
        "machines_count": len(machines),
        "running_machines": sum(1 for m in machines.values() if m.state == MachineState.RUNNING),
        "total_readings_generated": sum(sum(sim.recorder.seqs.values()) for sim in sims),
        "mqtt_connected": bool(targets) and all(t["connected"] for t in targets),
        "mqtt_messages_published": sum(t["messages_published"] for t in targets),
        "configuration": {
            "enable_anomalies": anomalies is not None and anomalies.rate_per_s > 0,
            "anomaly_probability": None if anomalies is None else daily_probability(anomalies.rate_per_s),
            "speed": health["simulation"]["speed"],
        },
        "paused": paused,
        "sim_time_s": health["simulation"]["sim_time_s"],
        "health": health["status"],
    }


def daily_probability(rate_per_s: float) -> float:
    """The chance of at least one onset a day at ``rate_per_s`` (the EnMS simulator's anomaly probability)."""
    return round(-math.expm1(-rate_per_s * 86400.0), 6)
