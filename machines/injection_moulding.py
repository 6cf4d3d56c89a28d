"""Injection moulding machine: heating, injection, cooling, ejection.
Anomalies: heater_fault, cooling_insufficient, hydraulic_leak."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import ClassVar

from machines.base import MachineState, MachineType, SignalContext, Signals, heat, noise, r2, working

PHASES = ("heating", "injection", "cooling", "ejection")


class InjectionMoulding(MachineType):
    kind = "injection_moulding"
    label = "injection moulding machine"
    signal_names = ("barrel_temp_c", "mould_temp_c", "injection_pressure_bar", "cycle_phase", "shot_weight_g")
    word_signals: ClassVar[Mapping[str, tuple[str, ...]]] = {"cycle_phase": (*PHASES, "idle")}
    idle_power_kw = 25.0
    rated_power_kw = 200.0
    anomalies = ("heater_fault", "cooling_insufficient", "hydraulic_leak")

    def anomaly_power_factor(self, ctx: SignalContext) -> float:
        return 1.0 + 0.15 * ctx.anomaly_severity if ctx.anomaly == "hydraulic_leak" else 1.0

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        barrel = heat(ctx, 230.0, 150.0) if ctx.state != MachineState.OFF_SHIFT else ctx.ambient_c
        mould = heat(ctx, 50.0 + 10.0 * ctx.load, 10.0)
        phase = PHASES[rng.randrange(4)] if run else "idle"
        pressure = {"injection": 1200.0, "heating": 80.0, "cooling": 400.0, "ejection": 60.0}.get(phase, 0.0)
        weight = 45.0 * noise(rng, 0.01) if run else 0.0
        severity = ctx.anomaly_severity
        if ctx.anomaly == "heater_fault":  # a heater band is out: the barrel holds less heat above ambient
            barrel = ctx.ambient_c + (barrel - ctx.ambient_c) * max(0.2, 1.0 - 0.15 * severity)
        elif ctx.anomaly == "cooling_insufficient" and run:  # each shot leaves more heat in the mould
            mould += 15.0 * severity
        elif ctx.anomaly == "hydraulic_leak" and run:
            pressure *= 1.0 - 0.2 * min(1.0, severity)
            weight *= 1.0 - 0.05 * min(1.0, severity)  # short shots
        return {
            "barrel_temp_c": r2(barrel * noise(rng, 0.005)),
            "mould_temp_c": r2(mould * noise(rng, 0.01)),
            "injection_pressure_bar": r2(pressure * noise(rng, 0.02)),
            "cycle_phase": phase,
            "shot_weight_g": r2(weight),
        }
