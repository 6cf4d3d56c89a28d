"""A machine's time and counters over the observed period: from the warm-up (its baseline) to now."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.model.machine import Machine, MachineState
from simulator.model.statistics import MachineBaseline


@dataclass(frozen=True, slots=True)
class MachineTime:
    """Seconds in each state and counters of one machine over the observed period."""

    observed: float
    running: float
    blocked: float
    maintenance: float
    idle: float
    off_shift: float
    cycles: int
    good_cycles: int
    good_pieces: int
    bad_pieces: int
    ideal: float
    maintenances: int

    @property
    def scheduled(self) -> float:
        """Observed time not off shift."""
        return self.observed - self.off_shift

    @property
    def planned(self) -> float:
        """Scheduled time not in planned maintenance."""
        return self.scheduled - self.maintenance


def machine_time(machine: Machine, now: float, baseline: MachineBaseline | None = None) -> MachineTime:
    """``machine``'s time from ``baseline`` (its state at the warm-up; None: from 0) to ``now``."""
    def since(state: MachineState) -> float:
        return machine.time_in(state, now) - (baseline.times[state.value] if baseline is not None else 0.0)

    if baseline is None:
        return MachineTime(now, since(MachineState.RUNNING), since(MachineState.BLOCKED),
                           since(MachineState.MAINTENANCE), since(MachineState.IDLE), since(MachineState.OFF_SHIFT),
                           machine.cycles, machine.good_cycles, machine.good_pieces, machine.bad_pieces,
                           machine.ideal_time_s, len(machine.maintenance_log))
    return MachineTime(now - baseline.at, since(MachineState.RUNNING), since(MachineState.BLOCKED),
                       since(MachineState.MAINTENANCE), since(MachineState.IDLE), since(MachineState.OFF_SHIFT),
                       machine.cycles - baseline.cycles, machine.good_cycles - baseline.good_cycles,
                       machine.good_pieces - baseline.good_pieces, machine.bad_pieces - baseline.bad_pieces,
                       machine.ideal_time_s - baseline.ideal_s, len(machine.maintenance_log) - baseline.maintenances)
