"""Automatic lathe (``tornio``)."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, vibration, wear, working


class Lathe(MachineType):
    kind = "lathe"
    label = "automatic lathe"
    signal_names = ("rotation_speed_rpm", "spindle_temp_c", "vibration_mm_s", "feed_rate_mm_rev")
    idle_power_kw = 2.0
    rated_power_kw = 15.0
    bearing_temps = ("spindle_temp_c",)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        return {
            "rotation_speed_rpm": r2((1800 + 1400 * ctx.load) * noise(rng, 0.02)) if run else 0.0,
            "spindle_temp_c": r2(heat(ctx, 40.0 + 12.0 * ctx.load + 5.0 * wear(ctx, 500.0)) * noise(rng, 0.01)),
            "vibration_mm_s": vibration(ctx, rng, 1.2, 500.0),
            "feed_rate_mm_rev": r2((0.15 + 0.2 * ctx.load) * noise(rng, 0.04)) if run else 0.0,
        }
