"""Assembly line (``assemblaggio``)."""

from __future__ import annotations

import random

from machines.base import MachineState, MachineType, SignalContext, Signals, noise, r2, working


class Assembly(MachineType):
    kind = "assembly"
    label = "assembly line"
    signal_names = ("active_operators", "line_speed_units_h", "torque_nm")
    idle_power_kw = 1.5
    rated_power_kw = 8.0

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        run = working(ctx)
        if run:
            operators = 3 + round(3 * ctx.load) + rng.randint(0, 1)
        elif ctx.state in (MachineState.IDLE, MachineState.BLOCKED):
            operators = rng.randint(1, 2)  # someone stays at the line (and fixes the block)
        else:
            operators = 0
        return {
            "active_operators": operators,
            "line_speed_units_h": r2((40 + 80 * ctx.load) * noise(rng, 0.05)) if run else 0.0,
            "torque_nm": r2(12.0 * noise(rng, 0.04)) if run else 0.0,
        }
