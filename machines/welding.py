"""Welding station (MIG/MAG).  Besides the process (current, arc, wire, gas, seam) it reports its
wire drive: the motor's temperature and vibration, what a bearing fault shows in."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, vibration, working


class Welding(MachineType):
    kind = "welding"
    label = "welding station"
    signal_names = ("weld_current_a", "arc_voltage_v", "wire_feed_m_min", "gas_flow_l_min", "seam_temp_c",
                    "wire_drive_temp_c", "vibration_mm_s")
    idle_power_kw = 0.5
    rated_power_kw = 12.0
    bearing_temps = ("wire_drive_temp_c",)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        return {
            "weld_current_a": r2((150 + 100 * ctx.load) * noise(rng, 0.04)) if run else 0.0,
            "arc_voltage_v": r2((22 + 6 * ctx.load) * noise(rng, 0.03)) if run else 0.0,
            "wire_feed_m_min": r2((6 + 6 * ctx.load) * noise(rng, 0.04)) if run else 0.0,
            "gas_flow_l_min": r2(15.0 * noise(rng, 0.05)) if run else 0.0,
            "seam_temp_c": r2(heat(ctx, 900.0 + 300.0 * ctx.load, 40.0) * noise(rng, 0.03)),
            "wire_drive_temp_c": r2(heat(ctx, 36.0 + 10.0 * ctx.load, 3.0) * noise(rng, 0.01)),
            "vibration_mm_s": vibration(ctx, rng, 0.9, 2000.0),
        }
