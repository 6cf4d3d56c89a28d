"""HVAC system (a reversible heat pump): its effort follows the outdoor temperature.

Heat balance of the hall: machines and people warm it by the equivalent of ``GAIN_BASE_C`` +
``GAIN_LOAD_C`` × load degrees, so no conditioning is needed while the outdoor temperature sits
at the *balance point* (indoor minus those gains).  Above it the unit cools, below it heats, in
proportion to the distance (full capacity ``COOL_SPAN_C`` / ``HEAT_SPAN_C`` away).  Electrical
power = fans + thermal duty / COP; the cooling COP falls as it gets hotter outside, the heating
COP as it gets colder.  An idle unit conditions the hall without production heat; blocked, in
maintenance or off shift it does not condition at all.
Anomalies: refrigerant_leak, dirty_coils, compressor_fault."""

from __future__ import annotations

import math
import random

from machines.base import MachineState, MachineType, SignalContext, Signals, noise, r2, share_percent

GAIN_BASE_C = 3.0  # internal gains with no production (lighting, people, standby)
GAIN_LOAD_C = 5.0  # extra internal gains at full production load
COOL_SPAN_C = 25.0  # outdoor above the balance point at which cooling needs full capacity
HEAT_SPAN_C = 30.0  # outdoor below the balance point at which heating needs full capacity
THERMAL_CAPACITY_KW = 390.0
MAX_STAGES = 4


class Hvac(MachineType):
    kind = "hvac"
    label = "HVAC system"
    signal_names = ("supply_temp_c", "return_temp_c", "outdoor_temp_c", "cop", "stages_active")
    idle_power_kw = 20.0  # fans and controls
    rated_power_kw = 150.0
    anomalies = ("refrigerant_leak", "dirty_coils", "compressor_fault")

    @staticmethod
    def conditioning(ctx: SignalContext) -> bool:
        return ctx.state in (MachineState.RUNNING, MachineState.IDLE)

    @staticmethod
    def need(ctx: SignalContext) -> float:
        """Thermal duty as a share of capacity: > 0 cooling, < 0 heating (-1..1)."""
        load = ctx.load if ctx.state == MachineState.RUNNING else 0.0
        balance = ctx.ambient_c - GAIN_BASE_C - GAIN_LOAD_C * max(0.0, load)
        diff = ctx.outdoor - balance
        if diff >= 0:
            return min(1.0, diff / COOL_SPAN_C)
        return max(-1.0, diff / HEAT_SPAN_C)

    @staticmethod
    def cop(ctx: SignalContext, need: float, with_anomaly: bool = True) -> float:
        # cooling: rejecting heat into hotter air costs more; heating: drawing it from colder air does
        outdoor = ctx.outdoor
        cop = min(6.0, max(2.0, 6.5 - 0.1 * outdoor)) if need >= 0 else min(4.5, max(1.8, 3.2 + 0.05 * outdoor))
        if with_anomaly:
            if ctx.anomaly == "refrigerant_leak":
                cop *= 1.0 - 0.3 * min(1.0, ctx.anomaly_severity)
            elif ctx.anomaly == "dirty_coils":
                cop *= 1.0 - 0.2 * min(1.0, ctx.anomaly_severity)
        return cop

    def compressor_kw(self, ctx: SignalContext) -> float:
        need = self.need(ctx)
        return min(self.rated_power_kw - self.idle_power_kw, abs(need) * THERMAL_CAPACITY_KW / self.cop(ctx, need))

    def power_kw(self, ctx: SignalContext, rng: random.Random) -> float:
        if not self.conditioning(ctx):
            return super().power_kw(ctx, rng)
        base = self.idle_power_kw + self.compressor_kw(ctx)  # a leak or dirty coils lower the COP
        if ctx.anomaly == "energy_spike" and ctx.state != MachineState.OFF_SHIFT:
            base *= 1.0 + ctx.anomaly_severity * rng.uniform(1.5, 3.0)
        return max(0.0, base * noise(rng, 0.03))

    def speed_percent(self, state: str, signals: Signals) -> float:
        """The compressor stages running, as a share of all of them."""
        if state != MachineState.RUNNING:
            return 0.0
        return share_percent(signals.get("stages_active"), MAX_STAGES)

    def process_signals(self, ctx: SignalContext, rng: random.Random) -> Signals:
        indoor = ctx.ambient_c
        if not self.conditioning(ctx):
            return {"supply_temp_c": r2(indoor * noise(rng, 0.01)), "return_temp_c": r2(indoor * noise(rng, 0.01)),
                    "outdoor_temp_c": r2(ctx.outdoor), "cop": 0.0, "stages_active": 0}
        need = self.need(ctx)
        stages = min(MAX_STAGES, math.ceil(MAX_STAGES * abs(need)))
        if need >= 0:
            supply, ret = 14.0 - 2.0 * need, indoor + 1.0 + 2.0 * need
        else:
            supply, ret = 30.0 + 12.0 * -need, indoor - 1.0 - 2.0 * -need
        if ctx.anomaly in ("refrigerant_leak", "compressor_fault"):  # supply air drifts toward return air
            shift = 4.0 * ctx.anomaly_severity
            supply = supply + shift if need >= 0 else supply - shift
            if ctx.anomaly == "compressor_fault":
                stages = max(0, stages - 1)
        return {
            "supply_temp_c": r2(supply * noise(rng, 0.01)),
            "return_temp_c": r2(ret * noise(rng, 0.01)),
            "outdoor_temp_c": r2(ctx.outdoor),
            "cop": r2(self.cop(ctx, need) * noise(rng, 0.02)),
            "stages_active": stages,
        }
