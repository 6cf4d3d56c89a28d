"""Motor / conveyor with a variable-frequency drive.  Anomalies: bearing_wear, belt_slip, overload."""

from __future__ import annotations

import random

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

RATED_FREQUENCY_HZ = 50.0  # the drive's frequency at full speed


class Conveyor(MachineType):
    kind = "conveyor"
    label = "motor / conveyor"
    signal_names = ("speed_rpm", "vfd_frequency_hz", "motor_temp_c", "vibration_mm_s", "belt_load_pct")
    idle_power_kw = 5.0
    rated_power_kw = 30.0
    anomalies = ("bearing_wear", "belt_slip", "overload")
    bearing_temps = ("motor_temp_c",)

    def anomaly_power_factor(self, ctx: SignalContext) -> float:
        if ctx.anomaly == "overload":
            return 1.0 + 0.4 * ctx.anomaly_severity
        if ctx.anomaly == "bearing_wear":  # friction
            return 1.0 + 0.05 * ctx.anomaly_severity
        return 1.0

    def speed_percent(self, state: str, signals: Signals) -> float:
        """The drive's frequency as a share of its rated frequency."""
        if state != MachineState.RUNNING:
            return 0.0
        return share_percent(signals.get("vfd_frequency_hz"), RATED_FREQUENCY_HZ)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        frequency = (30.0 + 20.0 * ctx.load) if run else 0.0
        speed = frequency * 29.0
        load = (40.0 + 50.0 * ctx.load) if run else 0.0
        temp = heat(ctx, 55.0 + 15.0 * ctx.load, 4.0)
        shake = vibration(ctx, rng, 1.4, 3000.0)
        severity = ctx.anomaly_severity
        if ctx.anomaly == "belt_slip" and run:
            speed *= 1.0 - 0.15 * min(1.0, severity)
        elif ctx.anomaly == "overload" and run:
            load = min(130.0, load + 35.0 * severity)
            temp += 15.0 * severity
        elif ctx.anomaly == "bearing_wear":
            shake += 3.0 * severity if run else 0.0
            temp += 8.0 * severity if run else 0.0
        return {
            "speed_rpm": r2(speed * noise(rng, 0.01)),
            "vfd_frequency_hz": r2(frequency),
            "motor_temp_c": r2(temp * noise(rng, 0.01)),
            "vibration_mm_s": round(shake, 3),
            "belt_load_pct": r2(load * noise(rng, 0.03)),
        }
