"""CNC milling machine (``fresa_cnc``)."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, vibration, wear, working


class Milling(MachineType):
    kind = "milling"
    label = "CNC milling machine"
    signal_names = ("cut_depth_mm", "vibration_mm_s", "spindle_speed_rpm", "spindle_temp_c", "tool_wear_pct")
    idle_power_kw = 2.5
    rated_power_kw = 18.0
    bearing_temps = ("spindle_temp_c",)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        worn = wear(ctx, 400.0)
        return {
            "cut_depth_mm": r2((1.5 + 2.0 * ctx.load) * noise(rng, 0.05)) if run else 0.0,
            "vibration_mm_s": vibration(ctx, rng, 1.6, 400.0),
            "spindle_speed_rpm": r2((8000 + 4000 * ctx.load) * noise(rng, 0.02)) if run else 0.0,
            "spindle_temp_c": r2(heat(ctx, 38.0 + 10.0 * ctx.load + 6.0 * worn) * noise(rng, 0.01)),
            "tool_wear_pct": r2(min(100.0, 100.0 * worn)),
        }
