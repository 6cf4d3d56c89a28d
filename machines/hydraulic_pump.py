"""Hydraulic pump working in build / hold / release cycles at 150-200 bar.
Anomalies: seal_leak, pump_wear, valve_fault."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import ClassVar

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, working

PHASES = ("build", "hold", "release")


class HydraulicPump(MachineType):
    kind = "hydraulic_pump"
    label = "hydraulic pump"
    signal_names = ("pressure_bar", "flow_l_min", "oil_temp_c", "cycle_phase")
    word_signals: ClassVar[Mapping[str, tuple[str, ...]]] = {"cycle_phase": (*PHASES, "idle")}
    idle_power_kw = 10.0
    rated_power_kw = 50.0
    anomalies = ("seal_leak", "pump_wear", "valve_fault")
    bearing_temps = ("oil_temp_c",)

    def anomaly_power_factor(self, ctx: SignalContext) -> float:
        return 1.0 + 0.2 * ctx.anomaly_severity if ctx.anomaly in ("seal_leak", "pump_wear") else 1.0

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        if not working(ctx):
            return {"pressure_bar": 0.0, "flow_l_min": 0.0, "oil_temp_c": r2(heat(ctx, 0.0, 6.0)),
                    "cycle_phase": "idle"}
        phase = PHASES[rng.randrange(3)]
        pressure = {"build": rng.uniform(150.0, 190.0), "hold": rng.uniform(190.0, 200.0),
                    "release": rng.uniform(20.0, 60.0)}[phase]
        flow = {"build": 80.0, "hold": 10.0, "release": 40.0}[phase] * (0.7 + 0.3 * ctx.load)
        severity = ctx.anomaly_severity
        if ctx.anomaly == "seal_leak":
            pressure -= 25.0 * severity
        elif ctx.anomaly == "pump_wear":
            flow *= 1.0 - 0.25 * min(1.0, severity)
        elif ctx.anomaly == "valve_fault" and phase in ("build", "hold"):
            pressure += 35.0 * severity  # the relief valve opens late: pressure overshoots
        return {
            "pressure_bar": r2(max(0.0, pressure)),
            "flow_l_min": r2(flow * noise(rng, 0.03)),
            # leaking, worn or overshooting: more of the pump's work turns into heat in the oil
            "oil_temp_c": r2((45.0 + 10.0 * ctx.load + (5.0 * severity if ctx.anomaly in self.anomalies else 0.0))
                             * noise(rng, 0.01)),
            "cycle_phase": phase,
        }
