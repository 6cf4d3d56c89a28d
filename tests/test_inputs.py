"""Model inputs as data: each input applies through the one function, belongs to one plant, and a
run is decided by its config, seed and the inputs with their instants."""

from __future__ import annotations

import pytest

from simulator.errors import CommandRejected, OrderRejected
from simulator.model.inputs import (
    Admit,
    Block,
    ClearAnomaly,
    Input,
    PlantAnomaly,
    Repair,
    SetAnomaly,
    apply,
    apply_all,
    plant_of,
)
from simulator.model.lot import Lot
from simulator.model.order import Order
from simulator.model.records import ListSink
from simulator.model.simulation import Simulation

from plants import plant

TWO_PLANTS = {"A": {"timezone": "Europe/Rome", "machines": {"milling": 2}},
              "B": {"timezone": "Asia/Ho_Chi_Minh", "machines": {"milling": 2}}}


def two_plants() -> Simulation:
    return Simulation(plant(locations=TWO_PLANTS), ListSink())


def test_each_input_belongs_to_one_plant() -> None:
    sim = two_plants()
    machine_plants = {mid: m.location for mid, m in sim.plant.machines.items()}
    assert plant_of(Admit(Order("L-1", "c", 1, "B", "alta")), machine_plants) == "B"
    assert plant_of(Block("A-milling-02"), machine_plants) == "A"
    assert plant_of(SetAnomaly("B-milling-01", "bearing_fault"), machine_plants) == "B"
    assert plant_of(PlantAnomaly("A", "energy_spike"), machine_plants) == "A"
    with pytest.raises(CommandRejected, match="no machine 'Z-lathe-01'"):
        plant_of(Repair("Z-lathe-01"), machine_plants)


def test_apply_admits_blocks_repairs_and_sets_and_clears_anomalies() -> None:
    sim = two_plants()
    lot = apply(sim, Admit(Order("L-1", "c", 5, "A", "normale")))
    assert isinstance(lot, Lot)
    assert sim.lots["L-1"] is lot
    sim.env.run(until=10)
    blocked = apply(sim, Block("B-milling-01", "jam", 60))
    assert isinstance(blocked, dict)
    assert (blocked["state"], blocked["block"]["reason"], blocked["block"]["until_s"]) == ("blocked", "jam", 70.0)
    repaired = apply(sim, Repair("B-milling-01"))
    assert isinstance(repaired, dict)
    assert repaired["state"] == "idle"
    apply(sim, SetAnomaly("A-milling-02", "bearing_fault", 2.0))
    assert sim.plant.machines["A-milling-02"].active_anomaly(sim.now) == "bearing_fault"
    cleared = apply(sim, ClearAnomaly("A-milling-02"))
    assert isinstance(cleared, dict)
    assert cleared["cleared"] == "bearing_fault"


def test_a_plant_wide_switch_changes_only_its_plant() -> None:
    sim = two_plants()
    result = apply(sim, PlantAnomaly("B", "energy_spike", on=True))
    assert isinstance(result, dict)
    assert result["machines"] == ["B-milling-01", "B-milling-02"]
    assert all(m.active_anomaly(sim.now) == ("energy_spike" if m.location == "B" else None)
               for m in sim.plant.machines.values())
    off = apply(sim, PlantAnomaly("B", "energy_spike", on=False))
    assert isinstance(off, dict)
    assert off["machines"] == ["B-milling-01", "B-milling-02"]
    assert all(m.active_anomaly(sim.now) is None for m in sim.plant.machines.values())


def test_apply_all_reports_each_refusal_and_applies_the_others() -> None:
    sim = two_plants()
    results = apply_all(sim, [Admit(Order("L-1", "c", 1, "A", "normale")), Admit(Order("L-1", "c", 1, "A", "normale")),
                              Repair("A-milling-01"), Block("A-milling-02", "x")])
    assert isinstance(results[0], Lot)
    assert isinstance(results[1], OrderRejected)
    assert results[1].reason == "duplicate_lot"
    assert isinstance(results[2], CommandRejected)
    assert results[2].reason == "not_blocked"
    assert isinstance(results[3], dict)
    assert results[3]["state"] == "blocked"


def replay(history: list[tuple[float, Input]], until: float) -> list[object]:
    """A run of the two-plant model with ``history`` applied at its instants."""
    sink = ListSink()
    sim = Simulation(plant(locations=TWO_PLANTS, disruptions={"block_probability": 0.2}), sink)
    for at, item in history:
        sim.settle(at)
        apply(sim, item)
    sim.settle(until)
    return sink.records


def test_the_same_inputs_at_the_same_instants_give_the_same_run() -> None:
    history: list[tuple[float, Input]] = [
        (0.0, Admit(Order("L-1", "c", 5, "A", "alta"))), (30.0, Admit(Order("L-2", "c", 9, "B", "bassa"))),
        (45.5, Block("B-milling-02", "jam", 300)), (120.0, SetAnomaly("A-milling-01", "bearing_fault", 3.0, 600)),
        (130.0, Admit(Order("L-3", "c", 2, "A", "normale"))), (200.0, Repair("B-milling-02")),
    ]
    first = replay(history, 5_000)
    assert first == replay(history, 5_000)
    moved = [(at + (1.0 if isinstance(item, Block) else 0.0), item) for at, item in history]
    assert first != replay(moved, 5_000)  # the instant is part of the input
