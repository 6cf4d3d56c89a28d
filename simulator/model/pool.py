"""A pool of identical machines at one location, allocated by lot priority (FIFO within one).

The pool decides where a machine goes when it becomes free: planned maintenance when due,
off shift when the shift's capacity is lower than the machines working, else to the
highest-priority waiting lot, else idle.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING

from simulator.model.machine import IDLE, OFF_SHIFT, RUNNING, Machine

if TYPE_CHECKING:
    import simpy

    from simulator.model.lot import Lot


class MachinePool:
    __slots__ = (
        "_order", "env", "idle", "limit", "location", "machine_type", "machines", "off_shift",
        "start_maintenance", "waiting", "working",
    )

    def __init__(self, env: simpy.Environment, location: str, machine_type: str,
                 machines: list[Machine]) -> None:
        self.env = env
        self.location = location
        self.machine_type = machine_type
        self.machines = machines
        self.idle: deque[Machine] = deque(machines)
        self.off_shift: list[Machine] = []
        self.waiting: list[tuple[int, int, simpy.Event, Lot]] = []
        self._order = count()
        self.limit = len(machines)  # machines allowed to work in the current shift
        self.working = len(machines)  # machines not off shift
        self.start_maintenance: Callable[[Machine], None] | None = None

    # -- lots ---------------------------------------------------------------------------------
    def acquire(self, lot: Lot) -> simpy.Event:
        """An event that fires with the machine assigned to ``lot``."""
        event = self.env.event()
        if self.idle and not self.waiting:
            self._assign(self.idle.popleft(), lot, event)
        else:
            heapq.heappush(self.waiting, (lot.rank, next(self._order), event, lot))
        return event

    def release(self, machine: Machine) -> None:
        """``machine`` finished its cycle (or maintenance, repair, shift) and is free."""
        machine.current_lot = None
        machine.current_process = None
        if machine.maintenance_due and self.start_maintenance is not None:
            self.start_maintenance(machine)
        elif self.working > self.limit:
            self._send_off_shift(machine)
        elif self.waiting:
            _, _, event, lot = heapq.heappop(self.waiting)
            self._assign(machine, lot, event)
        else:
            machine.set_state(IDLE, self.env.now)
            self.idle.append(machine)

    def _assign(self, machine: Machine, lot: Lot, event: simpy.Event) -> None:
        machine.set_state(RUNNING, self.env.now)
        machine.current_lot = lot
        event.succeed(machine)

    # -- machines leaving and coming back -----------------------------------------------------
    def take_idle(self, machine: Machine) -> bool:
        """Take an idle machine out of service (failure or maintenance); False if not idle."""
        if machine.state != IDLE:
            return False
        self.idle.remove(machine)
        return True

    def set_limit(self, limit: int) -> None:
        """Follow a shift change: ``limit`` machines may work; idle extras leave now,
        busy ones when they finish their cycle."""
        self.limit = limit
        while self.working > self.limit and self.idle:
            self._send_off_shift(self.idle.pop())
        while self.working < self.limit and self.off_shift:
            machine = self.off_shift.pop()
            self.working += 1
            self.release(machine)

    def _send_off_shift(self, machine: Machine) -> None:
        machine.set_state(OFF_SHIFT, self.env.now)
        self.off_shift.append(machine)
        self.working -= 1

    @property
    def queue_length(self) -> int:
        return len(self.waiting)
