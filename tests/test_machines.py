"""Machine signal models: values follow state, load, wear and anomalies; energy on every machine."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import machines
from machines.base import COMMON_SIGNALS, MachineState, SignalContext

KINDS = machines.KINDS


def ctx(state: str = "running", **kw: object) -> SignalContext:
    base: dict[str, object] = {"interval_s": 600.0, "hours_since_maintenance": 10.0, "pieces_since_maintenance": 100,
                               "load": 0.5, "quantity": 200, "cycle_time_s": 600.0 if state == "running" else None}
    base.update(kw)
    return SignalContext(state=state, **base)  # type: ignore[arg-type]


def mean_of(kind: str, signal: str, context: SignalContext, draws: int = 200) -> float:
    model = machines.get(kind)
    values = [model.signals(context, random.Random(i))[signal] for i in range(draws)]
    return statistics.fmean(float(v) for v in values)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", MachineState)
def test_every_state_reports_every_signal_deterministically(kind: str, state: str) -> None:
    model = machines.get(kind)
    values = model.signals(ctx(state), random.Random(5))
    assert set(values) >= set(COMMON_SIGNALS) | set(model.signal_names)
    assert values == model.signals(ctx(state), random.Random(5))
    for name, value in values.items():
        assert isinstance(value, int | float | str), (name, value)
        if isinstance(value, float):
            assert math.isfinite(value) and (value >= 0 or name.endswith("_temp_c")), (name, value)


@pytest.mark.parametrize("kind", KINDS)
def test_power_follows_state_and_energy_integrates_it(kind: str) -> None:
    running = mean_of(kind, "power_kw", ctx("running"))
    idle = mean_of(kind, "power_kw", ctx("idle"))
    off = mean_of(kind, "power_kw", ctx("off_shift"))
    assert running > idle > off > 0
    values = machines.get(kind).signals(ctx("running", interval_s=900.0), random.Random(1))
    assert values["energy_kwh"] == pytest.approx(float(values["power_kw"]) * 900 / 3600, abs=1e-3)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "signal"), [("milling", "spindle_speed_rpm"), ("lathe", "rotation_speed_rpm"),
                                              ("cnc", "spindle_speed_rpm"), ("conveyor", "speed_rpm"),
                                              ("robot_arm", "tcp_speed_mm_s"), ("press", "stroke_rate_spm"),
                                              ("inspection", "parts_per_min"), ("welding", "wire_feed_m_min")])
def test_spindles_turn_only_when_running(kind: str, signal: str) -> None:
    assert mean_of(kind, signal, ctx("running")) > 0
    for state in ("idle", "blocked", "maintenance", "off_shift"):
        assert mean_of(kind, signal, ctx(state), draws=5) == 0


def test_blocked_milling_machine_shows_alarm_and_rattles() -> None:
    model = machines.get("fresa_cnc")
    blocked = ctx("blocked", block_reason="Inceppamento utensile")
    assert "Inceppamento utensile" in model.alarm(blocked)
    assert model.alarm(ctx("running")) == ""
    assert mean_of("milling", "vibration_mm_s", blocked) > mean_of("milling", "vibration_mm_s", ctx("running"))


@pytest.mark.parametrize("kind", ["milling", "lathe", "cnc", "compressor", "conveyor"])
def test_wear_raises_vibration(kind: str) -> None:
    fresh = mean_of(kind, "vibration_mm_s", ctx(hours_since_maintenance=0.0))
    worn = mean_of(kind, "vibration_mm_s", ctx(hours_since_maintenance=5000.0))
    assert worn > 1.3 * fresh


def test_assembly_operators_follow_state() -> None:
    model = machines.get("assemblaggio")
    assert model.signals(ctx("running"), random.Random(0))["active_operators"] >= 3
    assert model.signals(ctx("off_shift"), random.Random(0))["active_operators"] == 0


def test_test_rig_values_agree_with_the_outcome() -> None:
    model = machines.get("test")
    for seed in range(300):
        good = model.signals(ctx(test_outcome="pass"), random.Random(seed))
        assert 8.5 <= good["test_pressure_bar"] <= 10.5  # type: ignore[operator]
        assert 1.8 <= good["flow_rate_l_min"] <= 2.6  # type: ignore[operator]
        assert good["noise_db"] <= 62  # type: ignore[operator]
        for outcome in ("rework", "scrap"):
            bad = model.signals(ctx(test_outcome=outcome), random.Random(seed))
            assert (bad["test_pressure_bar"] < 8.5 or bad["flow_rate_l_min"] < 1.8  # type: ignore[operator]
                    or bad["noise_db"] > 62)  # type: ignore[operator]


Direction = Callable[[float, float], bool]
UP: Direction = lambda normal, faulty: faulty > normal * 1.05  # noqa: E731
DOWN: Direction = lambda normal, faulty: faulty < normal * 0.95  # noqa: E731
ANOMALY_EFFECTS = [
    ("compressor", "leak", "pressure_bar", DOWN), ("compressor", "leak", "power_kw", UP),
    ("compressor", "efficiency_loss", "flow_m3_min", DOWN), ("compressor", "bearing_fault", "vibration_mm_s", UP),
    ("hvac", "refrigerant_leak", "cop", DOWN), ("hvac", "dirty_coils", "power_kw", UP),
    ("hvac", "compressor_fault", "supply_temp_c", UP),
    ("conveyor", "bearing_wear", "vibration_mm_s", UP), ("conveyor", "belt_slip", "speed_rpm", DOWN),
    ("conveyor", "overload", "motor_temp_c", UP), ("conveyor", "overload", "power_kw", UP),
    ("hydraulic_pump", "seal_leak", "pressure_bar", DOWN), ("hydraulic_pump", "pump_wear", "flow_l_min", DOWN),
    ("hydraulic_pump", "valve_fault", "pressure_bar", UP),
    ("injection_moulding", "heater_fault", "barrel_temp_c", DOWN),
    ("injection_moulding", "cooling_insufficient", "mould_temp_c", UP),
    ("injection_moulding", "hydraulic_leak", "injection_pressure_bar", DOWN),
    ("milling", "bearing_fault", "spindle_temp_c", UP), ("lathe", "bearing_fault", "vibration_mm_s", UP),
    ("welding", "energy_spike", "power_kw", UP), ("cnc", "energy_spike", "power_kw", UP),
]


@pytest.mark.parametrize(("kind", "anomaly", "signal", "direction"), ANOMALY_EFFECTS)
def test_anomalies_change_signals_in_the_physical_direction(kind: str, anomaly: str, signal: str,
                                                            direction: Direction) -> None:
    normal = mean_of(kind, signal, ctx(ambient_c=30.0))
    faulty = mean_of(kind, signal, ctx(anomaly=anomaly, anomaly_severity=1.0, ambient_c=30.0))
    assert direction(normal, faulty), (normal, faulty)


@pytest.mark.parametrize("kind", [k for k in KINDS if machines.get(k).bearing_temps])
def test_a_bearing_fault_shows_while_switched_on_and_not_when_switched_off(kind: str) -> None:
    """+15-25 °C on the bearing's temperature and +5-10 mm/s of vibration, idle and blocked too."""
    model = machines.get(kind)
    temp = model.bearing_temps[0]
    shaking = any(name.startswith("vibration") for name in model.signal_names)
    for state in ("running", "idle", "blocked", "maintenance", "off_shift"):
        for seed in range(20):
            normal = model.signals(ctx(state, ambient_c=30.0), random.Random(seed))
            faulty = model.signals(ctx(state, ambient_c=30.0, anomaly="bearing_fault"), random.Random(seed))
            rise = float(faulty[temp]) - float(normal[temp])  # type: ignore[arg-type]
            if state in ("maintenance", "off_shift"):
                assert rise == 0, (state, seed)
            else:
                assert 14.99 <= rise <= 25.01, (state, seed, rise)  # (to the readings' 0.01 °C)
                if shaking:
                    assert float(faulty["vibration_mm_s"]) - float(normal["vibration_mm_s"]) >= 4.99  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["cnc", "robot_arm", "press", "conveyor", "welding", "inspection"])
def test_the_smart_factory_machines_report_a_machine_temperature_and_vibration(kind: str) -> None:
    model = machines.get(kind)
    assert model.bearing_temps and "vibration_mm_s" in model.signal_names
    running = mean_of(kind, model.bearing_temps[0], ctx("running", ambient_c=22.0))
    idle = mean_of(kind, model.bearing_temps[0], ctx("idle", ambient_c=22.0))
    assert 30 < running < 80 and 22 < idle < 30  # a machine's body, not its process (a weld seam is ~1000 °C)
    assert mean_of(kind, "vibration_mm_s", ctx("running")) > 5 * mean_of(kind, "vibration_mm_s", ctx("idle"))


def test_inspection_finds_defects_only_in_lots_it_fails() -> None:
    model = machines.get("inspection")
    for seed in range(100):
        assert model.signals(ctx(test_outcome="pass"), random.Random(seed))["defects_found"] == 0
        assert model.signals(ctx(), random.Random(seed))["defects_found"] == 0
        for outcome in ("rework", "scrap"):
            assert 1 <= model.signals(ctx(test_outcome=outcome), random.Random(seed))["defects_found"] <= 5  # type: ignore[operator]
    assert model.signals(ctx("off_shift"), random.Random(0))["illumination_lux"] == 0


def test_every_declared_anomaly_is_covered() -> None:
    covered = {(k, a) for k, a, _, _ in ANOMALY_EFFECTS}
    declared = {(k, a) for k in KINDS for a in machines.get(k).anomalies}
    assert declared <= covered


def test_registry_aliases_and_unknown_names() -> None:
    assert machines.get("fresa_cnc") is machines.get("milling")
    assert machines.get("tornio").kind == "lathe"
    assert machines.get("linea_test").kind == "test_rig"
    assert machines.get("welder") is machines.get("welding")
    assert machines.get("robot-arm").kind == "robot_arm"
    assert {"fresa_cnc", "tornio", "assemblaggio", "test", "compressor"} <= machines.names()
    with pytest.raises(KeyError, match=r"unknown machine type 'laser'.*milling"):
        machines.get("laser")


@given(kind=st.sampled_from(KINDS), state=st.sampled_from(MachineState), load=st.floats(0, 1),
       hours=st.floats(0, 1e5), ambient=st.floats(-30, 50), seed=st.integers(0, 2**32),
       anomaly=st.sampled_from([None, "bearing_fault", "energy_spike", "leak", "overload", "heater_fault"]),
       severity=st.floats(0, 3), outcome=st.sampled_from([None, "pass", "rework", "scrap"]))
def test_any_context_gives_finite_values_and_non_negative_power(
        kind: str, state: str, load: float, hours: float, ambient: float, seed: int, anomaly: str | None,
        severity: float, outcome: str | None) -> None:
    context = SignalContext(state=state, interval_s=60.0, hours_since_maintenance=hours,
                            pieces_since_maintenance=10, load=load, quantity=100, ambient_c=ambient,
                            anomaly=anomaly, anomaly_severity=severity, test_outcome=outcome)
    values = machines.get(kind).signals(context, random.Random(seed))
    assert values["power_kw"] >= 0  # type: ignore[operator]
    assert all(math.isfinite(v) for v in values.values() if isinstance(v, float))
