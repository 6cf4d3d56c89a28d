"""Six-axis industrial robot arm (handling, loading machines, palletising)."""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, vibration, wear, working


class RobotArm(MachineType):
    kind = "robot_arm"
    label = "industrial robot arm"
    signal_names = ("joint_temp_c", "vibration_mm_s", "tcp_speed_mm_s", "payload_kg", "position_error_mm")
    idle_power_kw = 0.8
    rated_power_kw = 7.5
    bearing_temps = ("joint_temp_c",)  # the axis motors and their gearboxes

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        worn = wear(ctx, 2000.0)
        # gearbox backlash grows with wear, and fast with a damaged bearing
        backlash = 0.02 + 0.04 * worn + (0.08 * ctx.anomaly_severity if ctx.anomaly == "bearing_fault" else 0.0)
        return {
            "joint_temp_c": r2(heat(ctx, 40.0 + 12.0 * ctx.load + 4.0 * worn, 4.0) * noise(rng, 0.01)),
            "vibration_mm_s": vibration(ctx, rng, 1.2, 2000.0),
            "tcp_speed_mm_s": r2((800.0 + 1200.0 * ctx.load) * noise(rng, 0.05)) if run else 0.0,
            "payload_kg": r2((2.0 + 18.0 * ctx.load) * noise(rng, 0.03)) if run else 0.0,
            "position_error_mm": round(backlash * noise(rng, 0.1), 3) if run else 0.0,
        }
