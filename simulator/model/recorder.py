"""Turns model happenings into records for the sink, numbering them in emission order per plant
(location): a plant's records are numbered 1, 2, 3 … whatever the other plants do."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from machines.base import MachineState, SignalContext
from simulator.model.records import CycleTelemetry, LotEvent, MachineSample, Sink

if TYPE_CHECKING:
    from simulator.config.plant import Telemetry
    from simulator.model.climate import OutdoorClimate
    from simulator.model.events import Calendar
    from simulator.model.lot import Lot
    from simulator.model.machine import Machine


def load_of(quantity: int) -> float:
    """How hard a lot of ``quantity`` pieces drives a machine (0..1, saturating)."""
    return quantity / (quantity + 250.0)


def job_progress(lot: Lot, now: float) -> float:
    """How far ``lot``'s work at its current stage is at ``now`` (0..1): the work done before the
    segment it is working, plus the segment's time so far (none while it is stopped)."""
    if lot.work <= 0:
        return 0.0
    done = lot.work_done + (now - lot.segment_start if lot.entry is not None else 0.0)
    return min(1.0, max(0.0, done / lot.work))


class Recorder:
    __slots__ = ("ambient", "cycle_records", "env", "lot_events", "outdoor", "seqs", "sink")

    def __init__(self, env: Calendar, sink: Sink, telemetry: Telemetry,
                 ambient: dict[str, float], outdoor: dict[str, OutdoorClimate] | None = None) -> None:
        self.env = env
        self.sink = sink
        self.seqs = dict.fromkeys(ambient, 0)  # per plant: the number of the plant's last record
        self.cycle_records = telemetry.cycle_records
        self.lot_events = telemetry.lot_events
        self.ambient = ambient
        self.outdoor = outdoor or {}  # locations with a climate; elsewhere outdoor = ambient

    def outdoor_c(self, location: str) -> float | None:
        """The outdoor temperature at ``location`` now (None: the location has no climate)."""
        climate = self.outdoor.get(location)
        return None if climate is None else climate.temperature_c(self.env.now)

    def _next(self, location: str) -> int:
        seq = self.seqs[location] + 1
        self.seqs[location] = seq
        return seq

    def lot_event(self, event_type: str, lot: Lot, stage: str | None = None,
                  machine_id: str | None = None, **extra: object) -> None:
        location = lot.location
        seq = self.seqs[location] = self.seqs[location] + 1
        # (with keyword arguments a call with an empty ``**extra`` costs what one without it does)
        self.sink.emit(LotEvent(
            seq, self.env.now, event_type=event_type, location=location, lot_code=lot.code, stage=stage,
            machine_id=machine_id, priority=lot.priority, quantity=lot.quantity, customer=lot.customer,
            lot_state=str(lot.state), **extra,  # type: ignore[arg-type]
        ))

    def machine_event(self, event_type: str, machine: Machine, stage: str | None, *,
                      reason: str | None = None, cause: str | None = None) -> None:
        lot = machine.current_lot
        self.sink.emit(LotEvent(
            self._next(machine.location), self.env.now, event_type=event_type, location=machine.location,
            lot_code=lot.code if lot else None, stage=stage, machine_id=machine.id,
            priority=lot.priority if lot else None, quantity=lot.quantity if lot else None,
            customer=lot.customer if lot else None, lot_state=str(lot.state) if lot else None,
            reason=reason, cause=cause,
        ))

    def cycle(self, machine: Machine, lot: Lot, stage: str, cycle_time: float, processed: float,
              blocked_s: float, block_reason: str | None, outcome: str | None) -> None:
        now = self.env.now
        ctx = SignalContext(
            state=machine.state, interval_s=cycle_time,
            hours_since_maintenance=machine.hours_since_maintenance(now),
            pieces_since_maintenance=machine.pieces_since_maintenance,
            load=load_of(lot.quantity), quantity=lot.quantity, cycle_time_s=cycle_time,
            block_reason=block_reason, test_outcome=outcome,
            anomaly=machine.active_anomaly(now), anomaly_severity=machine.anomaly_severity,
            ambient_c=self.ambient[machine.location], outdoor_c=self.outdoor_c(machine.location),
        )
        signals = machine.model.signals(ctx, machine.rng_signals)
        # a cycle that was stopped shows the alarm the machine raised while it was blocked
        alarm = machine.model.alarm(replace(ctx, state=MachineState.BLOCKED) if block_reason else ctx)
        self.sink.emit(CycleTelemetry(
            self._next(machine.location), now, location=machine.location, stage=stage, machine_id=machine.id,
            machine_type=machine.machine_type, lot_code=lot.code, priority=lot.priority, quantity=lot.quantity,
            state=machine.state, blocked=block_reason is not None, block_reason=block_reason, blocked_s=blocked_s,
            last_maintenance_sim_s=machine.last_maintenance,
            pieces_since_maintenance=machine.pieces_since_maintenance, cycle_time_s=cycle_time,
            processed_s=processed, alarms=alarm, test_outcome=outcome, signals=signals,
            counters=machine.counters(now), anomaly=ctx.anomaly,
        ))

    def sample(self, machine: Machine, stage: str | None, interval: float) -> None:
        now = self.env.now
        lot = machine.current_lot
        ctx = SignalContext(
            state=machine.state, interval_s=interval,
            hours_since_maintenance=machine.hours_since_maintenance(now),
            pieces_since_maintenance=machine.pieces_since_maintenance,
            load=machine.load if machine.load is not None else load_of(lot.quantity) if lot else 0.0,
            quantity=lot.quantity if lot else 0,
            block_reason=machine.block_reason, anomaly=machine.active_anomaly(now),
            anomaly_severity=machine.anomaly_severity, ambient_c=self.ambient[machine.location],
            outdoor_c=self.outdoor_c(machine.location), progress=None if lot is None else job_progress(lot, now),
        )
        self.sink.emit(MachineSample(
            self._next(machine.location), now, location=machine.location, machine_id=machine.id,
            machine_type=machine.machine_type, state=machine.state, lot_code=lot.code if lot else None,
            stage=stage if lot else None, block_reason=machine.block_reason,
            last_maintenance_sim_s=machine.last_maintenance, pieces_since_maintenance=machine.pieces_since_maintenance,
            interval_s=interval, alarms=machine.model.alarm(ctx),
            signals=machine.model.signals(ctx, machine.rng_signals), counters=machine.counters(now),
            anomaly=ctx.anomaly,
        ))
