"""Air compressor: 6-8 bar when loaded.  Anomalies: leak, efficiency_loss, bearing_fault."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import ClassVar

from machines.base import (
    MachineState,
    MachineType,
    SignalContext,
    Signals,
    heat,
    noise,
    r2,
    share_percent,
    vibration,
    working,
)

RATED_FLOW_M3_MIN = 12.0  # free air delivered at full load (the flow below at load 1)
UNLOAD_BAR = 8.0  # the controller unloads the compressor at this pressure: the net never goes above it


class Compressor(MachineType):
    kind = "compressor"
    label = "air compressor"
    signal_names = ("pressure_bar", "flow_m3_min", "load_state", "discharge_temp_c", "vibration_mm_s")
    word_signals: ClassVar[Mapping[str, tuple[str, ...]]] = {"load_state": ("loaded", "unloaded", "off")}
    idle_power_kw = 15.0
    rated_power_kw = 75.0
    anomalies = ("leak", "efficiency_loss", "bearing_fault")
    bearing_temps = ("discharge_temp_c",)

    def anomaly_power_factor(self, ctx: SignalContext) -> float:
        if ctx.anomaly == "leak":  # runs loaded longer to hold pressure
            return 1.0 + 0.25 * ctx.anomaly_severity
        if ctx.anomaly == "efficiency_loss":
            return 1.0 + 0.2 * ctx.anomaly_severity
        return 1.0

    def speed_percent(self, state: str, signals: Signals) -> float:
        """The air delivered as a share of the rated flow."""
        if state != MachineState.RUNNING:
            return 0.0
        return share_percent(signals.get("flow_m3_min"), RATED_FLOW_M3_MIN)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        severity = ctx.anomaly_severity
        pressure = (6.5 + 1.3 * ctx.load) if run else (6.2 if ctx.state == MachineState.IDLE else 0.0)
        flow = (5.0 + 7.0 * ctx.load) if run else 0.0
        if ctx.anomaly == "leak":
            pressure -= 0.8 * severity
            flow += 1.5 * severity
        if ctx.anomaly == "efficiency_loss":
            flow *= 1.0 - 0.2 * min(1.0, severity)
        state = "loaded" if run else ("unloaded" if ctx.state in (MachineState.IDLE, MachineState.BLOCKED) else "off")
        return {
            "pressure_bar": r2(min(UNLOAD_BAR, max(0.0, pressure * noise(rng, 0.01)))),
            "flow_m3_min": r2(max(0.0, flow * noise(rng, 0.03))),
            "load_state": state,
            "discharge_temp_c": r2(heat(ctx, 80.0 + 10.0 * ctx.load, 15.0) * noise(rng, 0.01)),
            "vibration_mm_s": vibration(ctx, rng, 2.2, 2000.0),
        }
