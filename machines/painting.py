"""Painting booth."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, working


class Painting(MachineType):
    kind = "painting"
    label = "painting booth"
    signal_names = ("booth_temp_c", "humidity_pct", "paint_flow_ml_min", "film_thickness_um", "air_pressure_bar")
    idle_power_kw = 1.5
    rated_power_kw = 9.0

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        return {
            "booth_temp_c": r2(heat(ctx, 23.0, 0.5) * noise(rng, 0.01)),
            "humidity_pct": r2((55.0 if run else 45.0) * noise(rng, 0.03)),
            "paint_flow_ml_min": r2((250 + 150 * ctx.load) * noise(rng, 0.04)) if run else 0.0,
            "film_thickness_um": r2(80.0 * noise(rng, 0.05)) if run else 0.0,
            "air_pressure_bar": r2(3.0 * noise(rng, 0.02)) if run else 0.0,
        }
