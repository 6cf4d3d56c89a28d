"""Test rig (``test``): pressure, temperature, flow, noise and vibration of the tested unit.

Values stay inside their bands for a passed test; a failed one (rework or scrap) shows at least
one value outside: a pressure drop, too little flow or too much noise.
"""

from __future__ import annotations

import random

from machines.base import MachineType, SignalContext, Signals, heat, noise, r2, vibration, working

PRESSURE_BAND = (8.5, 10.5)  # bar
FLOW_BAND = (1.8, 2.6)  # l/min
NOISE_MAX_DB = 62.0


class TestRig(MachineType):
    __test__ = False  # not a pytest test class
    kind = "test_rig"
    label = "test rig"
    signal_names = ("test_pressure_bar", "test_temp_c", "flow_rate_l_min", "noise_db", "vibration_mm_s")
    idle_power_kw = 1.0
    rated_power_kw = 6.0

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        if not working(ctx) and ctx.test_outcome is None:
            return {"test_pressure_bar": 0.0, "test_temp_c": r2(heat(ctx, 0.0, 1.0)), "flow_rate_l_min": 0.0,
                    "noise_db": r2(35.0 * noise(rng, 0.03)), "vibration_mm_s": vibration(ctx, rng, 0.8)}
        pressure = rng.uniform(9.0, 10.0)
        flow = rng.uniform(2.0, 2.4)
        sound = rng.uniform(48.0, 58.0)
        if ctx.test_outcome in ("rework", "scrap"):
            defect = rng.randrange(3)
            pressure = rng.uniform(6.0, 8.2) if defect == 0 else pressure
            flow = rng.uniform(1.0, 1.6) if defect == 1 else flow
            sound = rng.uniform(65.0, 75.0) if defect == 2 else sound
        return {
            "test_pressure_bar": r2(pressure),
            "test_temp_c": r2(88.0 + rng.uniform(-2.0, 2.0)),
            "flow_rate_l_min": r2(flow),
            "noise_db": r2(sound),
            "vibration_mm_s": vibration(ctx, rng, 0.8),
        }
