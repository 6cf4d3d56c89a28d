"""Servo-hydraulic forming press: force, stroke rate, motor and oil temperature."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, vibration, wear, working


class Press(MachineType):
    kind = "press"
    label = "forming press"
    signal_names = ("motor_temp_c", "vibration_mm_s", "press_force_kn", "stroke_rate_spm", "oil_temp_c")
    idle_power_kw = 4.0
    rated_power_kw = 45.0
    bearing_temps = ("motor_temp_c",)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        worn = wear(ctx, 1500.0)
        return {
            "motor_temp_c": r2(heat(ctx, 48.0 + 14.0 * ctx.load + 5.0 * worn, 5.0) * noise(rng, 0.01)),
            "vibration_mm_s": vibration(ctx, rng, 2.8, 1500.0),  # every stroke is a blow
            "press_force_kn": r2((400.0 + 800.0 * ctx.load) * noise(rng, 0.04)) if run else 0.0,
            "stroke_rate_spm": r2((12.0 + 18.0 * ctx.load) * noise(rng, 0.03)) if run else 0.0,
            "oil_temp_c": r2(heat(ctx, 42.0 + 8.0 * ctx.load, 5.0) * noise(rng, 0.01)),
        }
