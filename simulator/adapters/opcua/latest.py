"""The latest value of every machine's variables, as the model's records bring them (the outbox tap
of the OPC UA server).

Taking a record costs a dictionary write or two and never blocks the model: the server writes what
changed since its previous batch once per ``opcua.update_interval_s`` (a value that changed ten
times in between is written once, its newest).  A machine's state, lot and block reason come from
its lot events (``stage.started``, ``machine.blocked`` …) and from its cycle records and samples,
whichever came last; its signals, counters and anomaly from the newest cycle record or sample.
Alarms (a breakdown, a block, a repair, maintenance, an anomaly coming or going) are kept, in
order, for the server to raise as OPC UA events; at most ``max_alarms`` wait (the oldest go).

No OPC UA import here: this runs on the model's path whatever the server does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from machines.base import SignalValue
from simulator.model.records import LotEvent, MachineCounters, Record

# lot events -> the state the machine is in after them (None: unchanged)
_EVENT_STATES: dict[str, str | None] = {
    "stage.started": "running",
    "stage.completed": "idle",
    "machine.blocked": "blocked",
    "machine.repaired": None,  # running again if it has a lot, else idle (see below)
    "maintenance.started": "maintenance",
    "maintenance.completed": "idle",
}
ALARM_EVENTS = frozenset({"machine.blocked", "machine.repaired", "maintenance.started", "maintenance.completed"})


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm of one machine: ``kind`` is ``breakdown`` (a failure), ``blocked`` (a cycle block or
    a command), ``repaired``, ``maintenance_started``, ``maintenance_completed``,
    ``anomaly_injected`` or ``anomaly_cleared``."""

    machine_id: str
    kind: str
    reason: str | None
    severity: int  # OPC UA event severity, 1..1000
    sim_time: float

    @property
    def message(self) -> str:
        text = self.kind.replace("_", " ")
        return f"{self.machine_id}: {text}" + (f" ({self.reason})" if self.reason else "")


def alarm_of_event(machine_id: str, event_type: str, cause: str | None, reason: str | None,
                   sim_time: float) -> Alarm:
    if event_type == "machine.blocked":
        if cause == "failure":
            return Alarm(machine_id, "breakdown", reason, 800, sim_time)
        return Alarm(machine_id, "blocked", reason, 600, sim_time)
    if event_type == "machine.repaired":
        return Alarm(machine_id, "repaired", reason, 300, sim_time)
    return Alarm(machine_id, event_type.replace(".", "_"), reason, 200, sim_time)


@dataclass(slots=True)
class MachineValues:
    """What the address space shows of one machine (its variables' newest values)."""

    state: str = "idle"
    lot: str = ""
    stage: str = ""
    block_reason: str = ""
    anomaly: str = ""
    alarm: str = ""
    counters: MachineCounters | None = None
    signals: dict[str, SignalValue] | None = None
    sim_time: float = 0.0


class LatestValues:
    """The outbox tap (:class:`simulator.runtime.outbox.Tap`): never full, so it never holds the model."""

    on_room: Callable[[], None] | None = None
    full = False

    def __init__(self, machine_ids: Iterable[str], max_alarms: int = 10_000) -> None:
        self.machines = {mid: MachineValues() for mid in machine_ids}
        self.changed: set[str] = set()
        self.alarms: deque[Alarm] = deque(maxlen=max_alarms)
        self.alarms_dropped = 0
        self.records_taken = 0

    def offer(self, record: Record) -> None:
        mid = record.machine_id
        if mid is None:
            return
        values: MachineValues | None = self.machines.get(mid)
        if values is None:  # a machine of a plant that is not here
            return
        self.records_taken += 1
        if isinstance(record, LotEvent):
            self._event(mid, values, record)
        else:
            values.state = record.state
            values.lot = record.lot_code or ""
            values.stage = record.stage or ""
            values.block_reason = record.block_reason or ""
            values.alarm = record.alarms
            values.counters = record.counters
            values.signals = record.signals
            values.sim_time = record.sim_time
            self.anomaly(mid, record.anomaly or "", record.sim_time)
        self.changed.add(mid)

    def _event(self, mid: str, values: MachineValues, event: LotEvent) -> None:
        kind = event.event_type
        if kind not in _EVENT_STATES:
            return
        state = _EVENT_STATES[kind]
        if kind == "stage.started":
            values.lot = event.lot_code or ""
            values.stage = event.stage or ""
        elif kind in ("stage.completed", "maintenance.started", "maintenance.completed"):
            values.lot = values.stage = ""
        if kind == "machine.blocked":
            values.block_reason = event.reason or ""
        elif kind == "machine.repaired":
            values.block_reason = ""
            state = "running" if values.lot else "idle"
        values.state = state or values.state
        values.sim_time = event.sim_time
        if kind in ALARM_EVENTS:
            self._raise(alarm_of_event(mid, kind, event.cause, event.reason, event.sim_time))

    def seed(self, machine_id: str, state: str, lot: str, anomaly: str) -> None:
        """A machine as the model has it when the server starts (before any record)."""
        values: MachineValues | None = self.machines.get(machine_id)
        if values is not None:
            values.state, values.lot, values.anomaly = state, lot, anomaly
            self.changed.add(machine_id)

    def anomaly(self, machine_id: str, anomaly: str, sim_time: float) -> None:
        """``machine_id`` shows ``anomaly`` ("" none) from now on; a change is an alarm."""
        values: MachineValues = self.machines[machine_id]
        if anomaly == values.anomaly:
            return
        if anomaly:
            self._raise(Alarm(machine_id, "anomaly_injected", anomaly, 500, sim_time))
        else:
            self._raise(Alarm(machine_id, "anomaly_cleared", values.anomaly, 200, sim_time))
        values.anomaly = anomaly
        self.changed.add(machine_id)

    def _raise(self, alarm: Alarm) -> None:
        if len(self.alarms) == self.alarms.maxlen:
            self.alarms_dropped += 1
        self.alarms.append(alarm)

    def take_changed(self) -> list[str]:
        """The machines whose values changed since the previous call."""
        changed = list(self.changed)
        self.changed.clear()
        return changed

    def take_alarms(self) -> list[Alarm]:
        alarms = list(self.alarms)
        self.alarms.clear()
        return alarms
