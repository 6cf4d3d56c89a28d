"""Records are frozen values: built quickly (``quick_init``) but as the dataclass defines them."""

from __future__ import annotations

import dataclasses

import pytest

from simulator.model.records import CycleTelemetry, LotEvent, MachineCounters, MachineSample, quick_init


def test_a_record_has_the_dataclass_fields_defaults_equality_and_stays_frozen() -> None:
    event = LotEvent(7, 12.5, event_type="lot.queued", location="Italia", lot_code="L1", stage="fresa_cnc",
                     waited_s=3.0)
    assert event == LotEvent(seq=7, sim_time=12.5, waited_s=3.0, stage="fresa_cnc", lot_code="L1",
                             location="Italia", event_type="lot.queued")
    assert event != dataclasses.replace(event, seq=8)
    assert (event.machine_id, event.outcome, event.waited_s) == (None, None, 3.0)
    assert repr(event).startswith("LotEvent(seq=7, sim_time=12.5, event_type='lot.queued'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.seq = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        LotEvent(1, 0.0)  # type: ignore[call-arg]  # (event_type and location are required)
    with pytest.raises(TypeError):
        LotEvent(1, 0.0, event_type="lot.queued", location="Italia", colour="red")  # type: ignore[call-arg]
    for cls in (LotEvent, MachineCounters, CycleTelemetry, MachineSample):
        assert cls.__init__.__code__.co_filename == "<string>"  # the quick one


def test_quick_init_refuses_default_factories() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        values: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="default factories"):
        quick_init(WithFactory)


COUNTERS = {"cycles": 1, "good_cycles": 1, "good_pieces": 5, "bad_pieces": 0, "running_s": 10.0, "blocked_s": 0.0,
            "planned_s": 12.0, "ideal_s": 9.0}


@pytest.mark.parametrize(("cls", "leading"), [(LotEvent, 2), (CycleTelemetry, 2), (MachineSample, 2),
                                              (MachineCounters, 0)])
def test_fields_after_seq_and_sim_time_are_keyword_only(cls: type, leading: int) -> None:
    """Only ``seq`` and ``sim_time`` go by position (a counters record has neither): twenty values in a row
    cannot land in the wrong fields."""
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields[:leading]] == ["seq", "sim_time"][:leading]
    assert all(f.kw_only for f in fields[leading:]) and not any(f.kw_only for f in fields[:leading])
    values = {f.name: COUNTERS.get(f.name, f"v{i}") for i, f in enumerate(fields) if f.default is dataclasses.MISSING}
    positional = [values.pop(f.name) for f in fields[:leading]]
    record = cls(*positional, **values)
    assert [getattr(record, f.name) for f in fields[:leading]] == positional
    extra = next(iter(values))  # the first field after the leading ones, given by position
    with pytest.raises(TypeError, match="positional argument"):
        cls(*positional, values.pop(extra), **values)


def test_quick_init_keeps_keyword_only_fields_keyword_only() -> None:
    @quick_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Record:
        seq: int
        sim_time: float
        _: dataclasses.KW_ONLY
        location: str
        note: str | None = None

    assert Record(1, 2.0, location="x") == Record(seq=1, sim_time=2.0, location="x", note=None)
    assert Record.__init__.__code__.co_filename == "<string>"
    with pytest.raises(TypeError):
        Record(1, 2.0, "x")  # type: ignore[misc]
