"""A Sparkplug B edge node on top of one MQTT session (the session's hooks, see
:class:`simulator.adapters.mqtt_session.SessionHooks`).

- **Will and bdSeq**: each connection attempt takes the next ``bdSeq`` (0..255, wrapping) and
  sets ``NDEATH`` with it as the MQTT Last Will (QoS 1, not retained); the NBIRTH of that connection
  carries the same ``bdSeq``, so a host can tell which birth a death ends.  The target's
  availability topic is not used: NDEATH is the will.
- **Births**: on every connection, and when a host writes ``Node Control/Rebirth`` = true (NCMD):
  NBIRTH (``seq`` 0), then one DBIRTH per device with every metric's name, alias, datatype and
  last published value (null before the first); QoS 0, not retained.  A device first named after
  the births (a bridge reading another plant's run) gets its DBIRTH before its first DDATA.
- **Data** (:class:`~simulator.formats.sparkplug.DeviceData` from the format): only the metrics
  whose value changed since it was last published (report by exception); a record that changes
  nothing sends nothing.  ``seq`` numbers every message of the edge node (births included),
  0..255 then 0 again.  Messages not acknowledged when a connection drops are not sent again:
  the births of the next connection carry their values.
- **Death**: a clean stop publishes NDEATH itself before disconnecting (a clean DISCONNECT
  discards the will); a crash or a lost connection leaves it to the broker (the will).
- **Commands**: NCMD ``Node Control/Rebirth``; DCMD writes of a device's ``Commands/*`` metrics
  become runtime commands (block, repair, anomaly, clear_anomaly), executed like those of the MQTT
  command topic.  A write that maps to no command is logged and counted (``commands_rejected``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from simulator.formats import WireMessage
from simulator.formats import sparkplug_wire as wire
from simulator.formats.sparkplug import BD_SEQ, NODE_METRICS, REBIRTH, Device, DeviceData, DeviceTable, topic

log = logging.getLogger(__name__)

RawPublish = Callable[[str, bytes, int, bool], None]  # topic, payload, qos, retain
CommandHandler = Callable[[bytes], Coroutine[Any, Any, None]]
_MISSING = object()
BLOCK_REASON = "sparkplug"


class SparkplugNode:
    """One edge node: see the module docstring.  ``on_command`` executes a runtime command (JSON);
    without it (the bridge runs no model) device commands are rejected."""

    replaces_unacknowledged = True  # the births of a new connection supersede what was not acknowledged

    def __init__(self, table: DeviceTable, start_ms: int, on_command: CommandHandler | None = None) -> None:
        self.table = table
        self.group, self.edge_node = table.group, table.edge_node
        self.on_command = on_command
        self.bd_seq = -1  # the first connection takes 0
        self.seq = 0
        self.latest_ms = start_ms  # the births' timestamp: the latest published instant
        self.last: dict[int, Any] = {}  # alias -> last published value
        self.born: set[str] = set()  # machine ids with a DBIRTH on this connection
        self.births = 0  # NBIRTHs published
        self.rebirths_requested = 0
        self.data_published = 0
        self.data_unchanged = 0  # records with nothing new: nothing sent
        self.commands_received = 0
        self.commands_rejected = 0
        self._publish: RawPublish | None = None
        self._ncmd = topic(self.group, "NCMD", self.edge_node)
        self._dcmd = topic(self.group, "DCMD", self.edge_node) + "/"
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the session's hooks -----------------------------------------------------------------------
    def will(self) -> tuple[str, bytes]:
        """The Last Will of the next connection attempt: NDEATH with the next bdSeq."""
        self.bd_seq = (self.bd_seq + 1) % 256
        return topic(self.group, "NDEATH", self.edge_node), self._death()

    def subscriptions(self) -> tuple[str, ...]:
        return self._ncmd, self._dcmd + "+"

    def connected(self, publish: RawPublish) -> None:
        """A new connection: the births, before anything else is published on it."""
        self._publish = publish
        self._births()

    def prepare(self, message: WireMessage) -> bytes | None:
        """The payload to publish for ``message`` now (with its seq), or None: nothing changed."""
        if not isinstance(message, DeviceData):
            return message.value
        device = message.device
        if device.machine_id not in self.born:
            self._device_birth(device)
        last = self.last
        changed: list[bytes] = []
        for alias, value, encoded in message.values:
            if last.get(alias, _MISSING) != value:
                last[alias] = value
                changed.append(encoded)
        if message.timestamp > self.latest_ms:
            self.latest_ms = message.timestamp
        if not changed:
            self.data_unchanged += 1
            return None
        self.data_published += 1
        return wire.payload(message.timestamp, changed, self._next_seq())

    def message(self, topic_name: str, payload: bytes) -> bool:
        """An incoming message: True when it is one of the node's commands (handled here)."""
        if topic_name == self._ncmd:
            self._node_command(payload)
            return True
        if topic_name.startswith(self._dcmd):
            self._device_command(topic_name[len(self._dcmd):], payload)
            return True
        return False

    def closing(self, publish: RawPublish) -> None:
        """A clean stop: NDEATH (the broker discards the will on a clean disconnect)."""
        publish(topic(self.group, "NDEATH", self.edge_node), self._death(), 0, False)

    # -- births and deaths -------------------------------------------------------------------------
    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (seq + 1) % 256
        return seq

    def _death(self) -> bytes:
        return wire.payload(self.latest_ms, [wire.birth_metric(BD_SEQ, None, self.latest_ms, wire.INT64, self.bd_seq)])

    def _births(self) -> None:
        assert self._publish is not None
        ms = self.latest_ms
        values = {BD_SEQ: self.bd_seq, REBIRTH: False}
        metrics = [wire.birth_metric(name, alias, ms, datatype, values[name]) for name, alias, datatype in NODE_METRICS]
        self.seq = 0
        self._publish(topic(self.group, "NBIRTH", self.edge_node), wire.payload(ms, metrics, self._next_seq()), 0,
                      False)
        self.births += 1
        self.born.clear()
        for device in self.table.devices.values():
            self._device_birth(device)

    def _device_birth(self, device: Device) -> None:
        if self._publish is None:
            return
        ms, last, static = self.latest_ms, self.last, device.static
        metrics = [wire.birth_metric(m.name, m.alias, ms, m.datatype,
                                     last[m.alias] if m.alias in last else static.get(m.alias))
                   for m in device.metrics]
        self._publish(topic(self.group, "DBIRTH", self.edge_node, device.device_id),
                      wire.payload(ms, metrics, self._next_seq()), 0, False)
        self.born.add(device.machine_id)

    # -- commands ----------------------------------------------------------------------------------
    def _reject(self, what: str, why: str) -> None:
        self.commands_rejected += 1
        log.warning("Sparkplug edge node %s/%s: %s rejected: %s", self.group, self.edge_node, what, why)

    def _node_command(self, payload: bytes) -> None:
        self.commands_received += 1
        try:
            metrics = wire.decode(payload).metrics
        except wire.DecodeError as exc:
            self._reject("NCMD", f"not a Sparkplug B payload ({exc})")
            return
        for m in metrics:
            if m.name == REBIRTH or (m.name is None and m.alias == NODE_METRICS[1][1]):
                if m.value is True:
                    self.rebirths_requested += 1
                    log.info("Sparkplug edge node %s/%s: rebirth requested", self.group, self.edge_node)
                    if self._publish is not None:
                        self._births()
                continue
            self._reject("NCMD", f"metric {m.name or m.alias!r} is not writable (only {REBIRTH!r})")

    def _device_command(self, device_id: str, payload: bytes) -> None:
        self.commands_received += 1
        device = self.table.by_device_id.get(device_id)
        if device is None:
            self._reject(f"DCMD for {device_id!r}", "no such device")
            return
        try:
            metrics = wire.decode(payload).metrics
        except wire.DecodeError as exc:
            self._reject(f"DCMD for {device_id!r}", f"not a Sparkplug B payload ({exc})")
            return
        for m in metrics:
            found = device.by_name.get(m.name) if m.name is not None else device.by_alias.get(m.alias or -1)
            label = m.name if m.name is not None else f"alias {m.alias}"
            if found is None or not found.key.startswith("cmd:"):
                writable = ", ".join(d.name for d in device.metrics if d.key.startswith("cmd:"))
                self._reject(f"DCMD {label!r} for {device_id!r}", f"not a writable metric; writable: {writable}")
                continue
            command = _command(found.key[4:], device.machine_id, m.value)
            if command is None:
                self._reject(f"DCMD {label!r} for {device_id!r}", f"value {m.value!r} does not fit "
                                                                   f"({wire.DATATYPE_NAMES[found.datatype]} expected)")
                continue
            if not command:
                continue  # false / empty: releasing a momentary button, nothing to do
            if self.on_command is None:
                self._reject(f"DCMD {label!r} for {device_id!r}", "this program runs no model (the bridge)")
                continue
            task = asyncio.get_running_loop().create_task(self.on_command(orjson.dumps(command)),
                                                          name="sparkplug-command")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def health(self) -> dict[str, Any]:
        return {"group_id": self.group, "edge_node_id": self.edge_node, "bd_seq": self.bd_seq, "seq": self.seq,
                "births": self.births, "rebirths_requested": self.rebirths_requested,
                "data_published": self.data_published, "data_unchanged": self.data_unchanged,
                "commands_received": self.commands_received,
                "commands_rejected": self.commands_rejected}


def _command(key: str, machine_id: str, value: Any) -> dict[str, Any] | None:
    """The runtime command a write of ``Commands/<key>`` = ``value`` means; {} for a write that
    asks nothing (false, ""); None for a value of the wrong type."""
    if key == "anomaly":
        if not isinstance(value, str):
            return None
        return {"command": "anomaly", "machine_id": machine_id, "type": value} if value else {}
    if not isinstance(value, bool):
        return None
    if not value:
        return {}
    if key == "block":
        return {"command": "block", "machine_id": machine_id, "reason": BLOCK_REASON}
    return {"command": key, "machine_id": machine_id}
