"""Records are frozen values: built quickly (``quick_init``) but as the dataclass defines them."""

from __future__ import annotations

import dataclasses

import pytest

from simulator.model.records import CycleTelemetry, LotEvent, MachineCounters, MachineSample, quick_init


def test_a_record_has_the_dataclass_fields_defaults_equality_and_stays_frozen() -> None:
    event = LotEvent(7, 12.5, "lot.queued", "Italia", lot_code="L1", stage="fresa_cnc", waited_s=3.0)
    assert event == LotEvent(7, 12.5, "lot.queued", "Italia", "L1", "fresa_cnc", waited_s=3.0)
    assert event != dataclasses.replace(event, seq=8)
    assert (event.machine_id, event.outcome, event.waited_s) == (None, None, 3.0)
    assert repr(event).startswith("LotEvent(seq=7, sim_time=12.5, event_type='lot.queued'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.seq = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        LotEvent(1, 0.0)  # type: ignore[call-arg]  # (event_type and location are required)
    with pytest.raises(TypeError):
        LotEvent(1, 0.0, "lot.queued", "Italia", colour="red")  # type: ignore[call-arg]
    for cls in (LotEvent, MachineCounters, CycleTelemetry, MachineSample):
        assert cls.__init__.__code__.co_filename == "<string>"  # the quick one


def test_quick_init_refuses_default_factories() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        values: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="default factories"):
        quick_init(WithFactory)
