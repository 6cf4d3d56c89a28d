"""A pool of identical machines at one location, allocated by lot priority (FIFO within one).

The pool decides where a machine goes when it becomes free: planned maintenance when due,
off shift when the shift's capacity is lower than the machines working, else to the
highest-priority waiting lot, else idle.

It also keeps its queue's statistics (:class:`~simulator.model.time_series.QueueSeries`): the lots
that entered it, its length over time and the waits of the lots that left it to start service.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from simulator.model.machine import Machine, MachineState
from simulator.model.time_series import Grid

if TYPE_CHECKING:
    from simulator.model.events import Calendar
    from simulator.model.lot import Lot


class MachinePool:
    __slots__ = (
        "env", "idle", "limit", "location", "machine_type", "machines", "next_order", "off_shift",
        "start_lot", "start_maintenance", "stats", "waiting", "working",
    )

    def __init__(self, env: Calendar, location: str, machine_type: str, machines: list[Machine]) -> None:
        self.env = env
        self.location = location
        self.machine_type = machine_type
        self.machines = machines
        self.idle: deque[Machine] = deque(machines)
        self.off_shift: list[Machine] = []
        self.waiting: list[tuple[int, int, Lot]] = []  # heap by (rank, order of arrival)
        self.next_order = 0
        self.limit = len(machines)  # machines allowed to work in the current shift
        self.working = len(machines)  # machines not off shift
        self.start_maintenance: Callable[[Machine], None] | None = None
        self.start_lot: Callable[[Lot, Machine], None] | None = None  # a waiting lot got ``machine``
        self.stats = Grid().queue_series("queue")  # (a simulation gives it the one of its statistics)

    # -- lots ---------------------------------------------------------------------------------
    def acquire(self, lot: Lot) -> Machine | None:
        """The machine assigned to ``lot`` now, or None: the lot waits, and ``start_lot`` is called
        when a machine is assigned to it."""
        now = self.env.now
        stats = self.stats
        if now >= stats.grid.edge:  # (the queue's statistics: see QueueSeries)
            stats.grid.close(now)
        stats.entered += 1
        if self.idle and not self.waiting:
            machine = self.idle.popleft()
            machine.assign(lot, now)
            return machine
        waiting = self.waiting
        heapq.heappush(waiting, (lot.rank, self.next_order, lot))
        self.next_order += 1
        stats.set(now, len(waiting))
        return None

    def release(self, machine: Machine) -> None:
        """``machine`` finished its cycle (or maintenance, repair, shift) and is free: it starts its
        planned maintenance, goes off shift, takes the first waiting lot or waits idle (each of which
        leaves it without the lot it had)."""
        if machine.maintenance_due and self.start_maintenance is not None:
            self.start_maintenance(machine)
        elif self.working > self.limit:
            self._send_off_shift(machine)
        elif self.waiting:
            _, _, lot = heapq.heappop(self.waiting)
            now = self.env.now
            machine.assign(lot, now)
            stats = self.stats
            stats.set(now, len(self.waiting))
            stats.wait_sum += now - lot.queued_at
            assert self.start_lot is not None
            self.start_lot(lot, machine)
        else:
            machine.go_idle(self.env.now)
            self.idle.append(machine)

    # -- machines leaving and coming back -----------------------------------------------------
    def take_idle(self, machine: Machine) -> bool:
        """Take an idle machine out of service (failure or maintenance); False if not idle."""
        if machine.state != MachineState.IDLE:
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
        machine.go_off_shift(self.env.now)
        self.off_shift.append(machine)
        self.working -= 1

    @property
    def queue_length(self) -> int:
        return len(self.waiting)
