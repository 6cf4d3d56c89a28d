"""Outdoor temperature: seasons in plant-local months, a daily swing peaking at 15:00 local time
(DST-correct), and the HVAC following it."""

from __future__ import annotations

import datetime as dt
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

import machines
from machines.base import SignalContext
from simulator.config.plant import Climate
from simulator.model.climate import OutdoorClimate, daily_offset, seasonal_offset
from simulator.model.records import ListSink, MachineSample
from simulator.model.simulation import Simulation

from plants import plant

CLIMATE = Climate(mean_outdoor_c=10.0, summer_offset_c=15.0, winter_offset_c=-10.0, daily_swing_c=5.0)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def at(climate: OutdoorClimate, instant: str) -> float:
    return climate.temperature_c((utc(instant) - climate.start).total_seconds())


def test_seasons_hold_in_summer_and_winter_and_interpolate_in_between() -> None:
    naive = dt.datetime
    assert seasonal_offset(CLIMATE, naive(2025, 7, 10, 12)) == 15.0
    assert seasonal_offset(CLIMATE, naive(2025, 1, 10, 12)) == -10.0
    assert seasonal_offset(CLIMATE, naive(2025, 12, 31, 23)) == -10.0
    assert seasonal_offset(CLIMATE, naive(2025, 3, 1)) == -10.0  # spring starts at the winter value
    assert seasonal_offset(CLIMATE, naive(2025, 9, 1)) == 15.0  # autumn starts at the summer value
    mid_spring = seasonal_offset(CLIMATE, naive(2025, 4, 15, 12))
    mid_autumn = seasonal_offset(CLIMATE, naive(2025, 10, 16, 12))
    assert mid_spring == pytest.approx(2.5, abs=0.5)
    assert mid_autumn == pytest.approx(2.5, abs=0.5)
    # continuous at the ends of the transitions and monotonic through them
    assert seasonal_offset(CLIMATE, naive(2025, 5, 31, 23, 59)) == pytest.approx(15.0, abs=0.01)
    assert seasonal_offset(CLIMATE, naive(2025, 11, 30, 23, 59)) == pytest.approx(-10.0, abs=0.01)
    spring = [seasonal_offset(CLIMATE, naive(2025, 3, 1) + dt.timedelta(days=d)) for d in range(92)]
    assert spring == sorted(spring)


def test_daily_swing_peaks_at_15_local_on_both_sides_of_a_dst_change() -> None:
    start = utc("2025-03-01T00:00:00")
    rome = OutdoorClimate(CLIMATE, "Europe/Rome", start)
    # winter time (UTC+1): 15:00 local = 14:00Z; summer time (UTC+2, from 30 March): 13:00Z
    for peak, before, after in (("2025-03-27T14:00:00", "2025-03-27T13:00:00", "2025-03-27T15:00:00"),
                                ("2025-04-02T13:00:00", "2025-04-02T12:00:00", "2025-04-02T14:00:00")):
        assert at(rome, peak) > at(rome, before)
        assert at(rome, peak) > at(rome, after)
        local = rome.local_time((utc(peak) - start).total_seconds())
        assert local.hour == 15
        assert at(rome, peak) == pytest.approx(10.0 + seasonal_offset(CLIMATE, local) + 5.0)
    assert daily_offset(CLIMATE, dt.datetime(2025, 4, 2, 3)) == pytest.approx(-5.0)  # coldest at 03:00


def test_summer_is_warmer_than_winter_in_plant_local_months() -> None:
    climate = OutdoorClimate(CLIMATE, "Europe/Berlin", utc("2025-01-01T00:00:00"))
    assert at(climate, "2025-07-16T13:00:00") == pytest.approx(30.0)  # 15:00 CEST
    assert at(climate, "2025-01-15T14:00:00") == pytest.approx(5.0)  # 15:00 CET
    assert at(climate, "2025-01-15T02:00:00") == pytest.approx(-5.0)  # 03:00 CET
    # 31 May 23:30Z is already 1 June in Berlin: summer, not spring
    assert seasonal_offset(CLIMATE, climate.local_time((utc("2025-05-31T23:30:00") - climate.start)
                                                       .total_seconds())) == 15.0


@given(st.floats(0, 3 * 365 * 86400.0))
def test_temperature_stays_within_the_configured_extremes(sim_time: float) -> None:
    climate = OutdoorClimate(CLIMATE, "America/Sao_Paulo", utc("2025-01-01T00:00:00"))
    assert -5.0 - 1e-9 <= climate.temperature_c(sim_time) <= 30.0 + 1e-9


def hvac_power(**kw: object) -> float:
    context: dict[str, object] = {"state": "running", "interval_s": 10.0, "hours_since_maintenance": 10.0,
                                  "pieces_since_maintenance": 0, "load": 1.0, "ambient_c": 21.0}
    context.update(kw)
    model = machines.get("hvac")
    return statistics.fmean(float(model.signals(SignalContext(**context), random.Random(i))["power_kw"])  # type: ignore[arg-type]
                            for i in range(100))


def test_hvac_load_power_and_cop_follow_the_outdoor_temperature() -> None:
    model = machines.get("hvac")
    cooling = [hvac_power(outdoor_c=t) for t in (20.0, 25.0, 30.0, 35.0)]
    assert cooling == sorted(cooling)
    assert cooling[-1] > 1.5 * cooling[0]
    heating = [hvac_power(outdoor_c=t) for t in (10.0, 0.0, -10.0)]
    assert heating == sorted(heating)
    hot = SignalContext(state="running", interval_s=10.0, hours_since_maintenance=0.0,
                        pieces_since_maintenance=0, load=1.0, outdoor_c=35.0)
    warm = SignalContext(state="running", interval_s=10.0, hours_since_maintenance=0.0,
                         pieces_since_maintenance=0, load=1.0, outdoor_c=25.0)
    rng = random.Random(1)
    assert model.signals(hot, rng)["cop"] < model.signals(warm, rng)["cop"]  # type: ignore[operator]
    assert model.signals(hot, rng)["stages_active"] > model.signals(warm, rng)["stages_active"]  # type: ignore[operator]
    assert model.signals(hot, rng)["outdoor_temp_c"] == 35.0
    # more production heat -> more cooling on the same day
    assert hvac_power(outdoor_c=28.0, load=1.0) > hvac_power(outdoor_c=28.0, load=0.3)
    # without a climate the outdoor temperature is the ambient one
    assert SignalContext(state="idle", interval_s=1.0, hours_since_maintenance=0.0, pieces_since_maintenance=0,
                         ambient_c=18.0).outdoor == 18.0


def test_samples_carry_the_location_climate_and_none_without_one() -> None:
    config = plant(
        stages=[{"name": "mill", "machine_type": "milling",
                 "processing_time": {"distribution": "constant", "value": 100}}],
        locations={"Hot": {"timezone": "Asia/Dubai", "machines": {"milling": 1, "hvac": 1},
                           "climate": {"mean_outdoor_c": 28, "summer_offset_c": 8, "winter_offset_c": -6,
                                       "daily_swing_c": 6}},
                   "Plain": {"timezone": "Europe/Rome", "machines": {"milling": 1, "hvac": 1}, "ambient_c": 19}},
        machine_types={"hvac": {"sample_interval_s": 3600}},
        simulation={"start": "2025-07-01T00:00:00Z"},
    )
    sink = ListSink()
    Simulation(config, sink).env.run(until=86400)
    outdoor: dict[str, list[float]] = {"Hot": [], "Plain": []}
    for record in sink.records:
        if isinstance(record, MachineSample):
            outdoor[record.location].append(float(record.signals["outdoor_temp_c"]))  # type: ignore[arg-type]
    assert set(outdoor["Plain"]) == {19.0}
    assert len(outdoor["Hot"]) >= 23  # hourly, from a random offset
    # 28 + 8 ± 6: within half an hour of 15:00 / 03:00 Dubai time the cosine is within 0.06 °C
    assert max(outdoor["Hot"]) == pytest.approx(42.0, abs=0.06)
    assert min(outdoor["Hot"]) == pytest.approx(30.0, abs=0.06)
