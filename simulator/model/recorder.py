"""Turns model happenings into records for the sink, numbering them in emission order per plant
(location): a plant's records are numbered 1, 2, 3 … whatever the other plants do."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from machines.base import MachineState, SignalContext
from simulator.model.records import CycleTelemetry, LotEvent, MachineSample, Sink

if TYPE_CHECKING:
    from simulator.config_schema import Telemetry
    from simulator.model.climate import OutdoorClimate
    from simulator.model.events import Calendar
    from simulator.model.lot import Lot
    from simulator.model.machine import Machine


def load_of(quantity: int) -> float:
    """How hard a lot of ``quantity`` pieces drives a machine (0..1, saturating)."""
    return quantity / (quantity + 250.0)


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
        if extra:
            self.sink.emit(LotEvent(
                seq, self.env.now, event_type, location, lot.code, stage, machine_id,
                lot.priority, lot.quantity, lot.customer, str(lot.state), **extra,  # type: ignore[arg-type]
            ))
        else:  # most events (received, queued, started): positional arguments only are cheaper
            self.sink.emit(LotEvent(seq, self.env.now, event_type, location, lot.code, stage, machine_id,
                                    lot.priority, lot.quantity, lot.customer, str(lot.state)))

    def machine_event(self, event_type: str, machine: Machine, stage: str | None, *,
                      reason: str | None = None, cause: str | None = None) -> None:
        lot = machine.current_lot
        self.sink.emit(LotEvent(
            self._next(machine.location), self.env.now, event_type, machine.location,
            lot.code if lot else None, stage, machine.id,
            lot.priority if lot else None, lot.quantity if lot else None,
            lot.customer if lot else None, str(lot.state) if lot else None,
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
            self._next(machine.location), now, machine.location, stage, machine.id, machine.machine_type, lot.code,
            lot.priority, lot.quantity, machine.state, block_reason is not None, block_reason, blocked_s,
            machine.last_maintenance, machine.pieces_since_maintenance, cycle_time, processed,
            alarm, outcome, signals, machine.counters(now), ctx.anomaly,
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
            outdoor_c=self.outdoor_c(machine.location),
        )
        self.sink.emit(MachineSample(
            self._next(machine.location), now, machine.location, machine.id, machine.machine_type, machine.state,
            lot.code if lot else None, stage if lot else None, machine.block_reason,
            machine.last_maintenance, machine.pieces_since_maintenance, interval,
            machine.model.alarm(ctx), machine.model.signals(ctx, machine.rng_signals),
            machine.counters(now), ctx.anomaly,
        ))
