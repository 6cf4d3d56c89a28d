"""3D printer (additive manufacturing)."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, working


class Printer3D(MachineType):
    kind = "3d_printer"
    label = "3D printer"
    signal_names = ("nozzle_temp_c", "bed_temp_c", "layer", "progress_pct", "filament_used_g", "print_speed_mm_s")
    idle_power_kw = 0.15
    rated_power_kw = 1.2

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        # progress within the job: a cycle record is emitted at the end of the job (100 %), a sample
        # shows how far the job is (a stopped print stays where it stopped)
        progress = 100.0 if ctx.cycle_time_s is not None else 100.0 * (ctx.progress or 0.0)
        layers = 200 + 2 * ctx.quantity
        return {
            "nozzle_temp_c": r2(heat(ctx, 215.0, 5.0) * noise(rng, 0.005)),
            "bed_temp_c": r2(heat(ctx, 60.0, 3.0) * noise(rng, 0.01)),
            "layer": int(layers * progress / 100.0),
            "progress_pct": r2(progress),
            "filament_used_g": r2(ctx.quantity * 12.0 * progress / 100.0),
            "print_speed_mm_s": r2(60.0 * noise(rng, 0.05)) if run else 0.0,
        }
