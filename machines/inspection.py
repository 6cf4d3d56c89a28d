"""Vision inspection station: parts go round an indexing table under cameras.

On a quality stage its cycle record shows what the inspection found: no defects for a passed lot,
one or more for a lot sent to rework or scrap.
"""

from __future__ import annotations

import random

from machines.base import MachineState, MachineType, SignalContext, Signals, heat, noise, r2, vibration, working


class Inspection(MachineType):
    kind = "inspection"
    label = "vision inspection station"
    signal_names = ("drive_temp_c", "vibration_mm_s", "parts_per_min", "defects_found", "illumination_lux")
    idle_power_kw = 0.6
    rated_power_kw = 3.0
    bearing_temps = ("drive_temp_c",)  # the indexing table's drive

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        lit = ctx.state in (MachineState.RUNNING, MachineState.IDLE, MachineState.BLOCKED)
        return {
            "drive_temp_c": r2(heat(ctx, 38.0 + 8.0 * ctx.load, 3.0) * noise(rng, 0.01)),
            "vibration_mm_s": vibration(ctx, rng, 0.6, 3000.0),
            "parts_per_min": r2((20.0 + 40.0 * ctx.load) * noise(rng, 0.04)) if run else 0.0,
            "defects_found": rng.randint(1, 5) if ctx.test_outcome in ("rework", "scrap") else 0,
            "illumination_lux": r2(1200.0 * noise(rng, 0.02)) if lit else 0.0,
        }
