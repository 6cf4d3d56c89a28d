"""Generic CNC machining centre (SpaceShip factory)."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, vibration, wear, working


class Cnc(MachineType):
    kind = "cnc"
    label = "CNC machining centre"
    signal_names = ("spindle_speed_rpm", "feed_rate_mm_min", "tool_wear_pct", "vibration_mm_s",
                    "spindle_temp_c", "coolant_temp_c")
    idle_power_kw = 3.0
    rated_power_kw = 22.0
    bearing_temps = ("spindle_temp_c",)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        worn = wear(ctx, 300.0)
        return {
            "spindle_speed_rpm": r2((6000 + 6000 * ctx.load) * noise(rng, 0.02)) if run else 0.0,
            "feed_rate_mm_min": r2((600 + 900 * ctx.load) * noise(rng, 0.03)) if run else 0.0,
            "tool_wear_pct": r2(min(100.0, 100.0 * worn)),
            "vibration_mm_s": vibration(ctx, rng, 1.8, 300.0),
            "spindle_temp_c": r2(heat(ctx, 42.0 + 10.0 * ctx.load + 6.0 * worn) * noise(rng, 0.01)),
            "coolant_temp_c": r2(heat(ctx, 24.0 + 4.0 * ctx.load, 1.0) * noise(rng, 0.01)),
        }
