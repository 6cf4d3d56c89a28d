"""HVAC system: cooling effort and COP follow the outdoor temperature.
Anomalies: refrigerant_leak, dirty_coils, compressor_fault."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, noise, r2


class Hvac(MachineType):
    kind = "hvac"
    label = "HVAC system"
    signal_names = ("supply_temp_c", "return_temp_c", "outdoor_temp_c", "cop", "stages_active")
    idle_power_kw = 20.0
    rated_power_kw = 150.0
    anomalies = ("refrigerant_leak", "dirty_coils", "compressor_fault")

    def _cop(self, ctx: SignalContext, with_anomaly: bool = True) -> float:
        cop = max(1.5, 4.5 - 0.06 * max(0.0, ctx.ambient_c - 15.0))
        if not with_anomaly:
            return cop
        if ctx.anomaly == "refrigerant_leak":
            cop *= 1.0 - 0.3 * min(1.0, ctx.anomaly_severity)
        elif ctx.anomaly == "dirty_coils":
            cop *= 1.0 - 0.2 * min(1.0, ctx.anomaly_severity)
        return cop

    def anomaly_power_factor(self, ctx: SignalContext) -> float:
        if ctx.anomaly in ("refrigerant_leak", "dirty_coils"):  # same cooling needs more power
            return self._cop(ctx, with_anomaly=False) / self._cop(ctx)
        return 1.0

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        on = ctx.state in ("running", "idle")
        demand = min(1.0, abs(ctx.ambient_c - 21.0) / 15.0)
        stages = (1 + round(3 * demand)) if on else 0
        supply = 14.0 if on else ctx.ambient_c
        if ctx.anomaly in ("refrigerant_leak", "compressor_fault") and on:
            supply += 4.0 * ctx.anomaly_severity
            if ctx.anomaly == "compressor_fault":
                stages = max(0, stages - 1)
        return {
            "supply_temp_c": r2(supply * noise(rng, 0.01)),
            "return_temp_c": r2((23.0 + 2.0 * demand if on else ctx.ambient_c) * noise(rng, 0.01)),
            "outdoor_temp_c": r2(ctx.ambient_c),
            "cop": r2(self._cop(ctx) * noise(rng, 0.02)) if on else 0.0,
            "stages_active": stages,
        }
