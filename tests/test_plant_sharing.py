"""The parts of sharing the plants between instances that need no broker: who gets which plant
(the assignor's balance), a config cut to one plant (same machines, its share of the orders, its
own order stream), inbox messages, and the inputs of several plant runs going each to its own."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from hypothesis import given
from hypothesis import strategies as st

from simulator.adapters.plant_assignor import PlantAssignor, balance
from simulator.adapters.plant_inbox import InboxParser, RoutedCommand, command_message, order_message, plant_partitions
from simulator.config.loader import parse
from simulator.errors import ConfigError, JournalRefused, OrderRejected
from simulator.model.inputs import Admit
from simulator.model.order import Order
from simulator.model.records import ListSink
from simulator.model.simulation import Simulation
from simulator.orders import OrderParser
from simulator.programs.plant_run import plants_config
from simulator.runtime.driver import Driver
from simulator.runtime.gate import InputGate
from simulator.runtime.plant_inputs import PlantInputs
from simulator.runtime.run_journal import RunJournal


# -- the assignment -------------------------------------------------------------------------------------
@given(st.integers(1, 24), st.dictionaries(st.sampled_from([f"m{i}" for i in range(8)]),
                                           st.lists(st.integers(0, 30), max_size=6), min_size=1))
def test_every_plant_has_one_owner_and_the_shares_differ_by_one_at_most(
        count: int, previous: dict[str, list[int]]) -> None:
    partitions = list(range(count))
    result = balance(partitions, previous)
    owned = sorted(itertools.chain.from_iterable(result.values()))
    assert owned == partitions
    sizes = [len(p) for p in result.values()]
    assert max(sizes) - min(sizes) <= 1


def test_plants_stay_with_their_owner_when_an_instance_joins_or_leaves() -> None:
    alone = balance(list(range(12)), {"a": []})
    assert alone == {"a": list(range(12))}
    two = balance(list(range(12)), {"a": alone["a"], "b": []})
    assert set(two["a"]) <= set(alone["a"]) and len(two["a"]) == 6  # a keeps six of its own, b gets six
    three = balance(list(range(12)), {"a": two["a"], "b": two["b"], "c": []})
    moved = sum(p not in two[m] for m in ("a", "b") for p in three[m])
    assert moved == 0 and len(three["c"]) == 4  # only what c takes moves
    after = balance(list(range(12)), {"a": three["a"], "c": three["c"]})  # b is gone
    assert set(three["a"]) <= set(after["a"]) and set(three["c"]) <= set(after["c"])


# -- a config cut to its plants ------------------------------------------------------------------------
def test_a_plant_cut_from_the_config_keeps_its_machines_and_gets_its_share_of_the_orders(
        default_config: Any) -> None:
    italia = plants_config(default_config, ["Italia"])
    assert list(italia.locations) == ["Italia"]
    full_slots = {s.id: s for s in default_config.machine_slots if s.location == "Italia"}
    assert {s.id: s for s in italia.machine_slots} == full_slots  # same ids, numbers, streams
    mix = default_config.arrivals.location_mix
    assert italia.arrivals.rate_per_hour == pytest.approx(default_config.arrivals.rate_per_hour * mix["Italia"]
                                                          / sum(mix.values()))
    assert italia.warm_up_s == default_config.warm_up_s
    assert italia.model_fingerprint != default_config.model_fingerprint
    assert plants_config(default_config, sorted(default_config.locations)) is default_config


def _arrivals(config: Any, key: str | None, count: int = 30) -> list[tuple[float, str, int, str]]:
    """The first ``count`` generated orders of a simulation: gap, location, quantity, priority."""
    generator = Simulation(config, ListSink(), arrivals_key=key).order_generator("L")
    return [(round(generator.gap(), 6), (o := generator.order()).location, o.quantity, o.priority)
            for _ in range(count)]


def test_each_plant_of_a_shared_config_gets_orders_of_its_own_and_the_same_ones_every_time(
        default_config: Any) -> None:
    italia, vietnam = plants_config(default_config, ["Italia"]), plants_config(default_config, ["Vietnam"])
    first = _arrivals(italia, "Italia")
    assert first == _arrivals(italia, "Italia")  # deterministic per seed and plant
    other = _arrivals(vietnam, "Vietnam")
    assert {loc for _, loc, _, _ in first} == {"Italia"} and {loc for _, loc, _, _ in other} == {"Vietnam"}
    assert [q for _, _, q, _ in first] != [q for _, _, q, _ in other]  # not the same draws under two names


# -- inbox messages ----------------------------------------------------------------------------------------
def test_inbox_messages_carry_an_order_or_a_command_and_anything_else_is_refused(default_config: Any) -> None:
    parser = InboxParser(OrderParser(default_config.location_of))
    order = Order("L-1", "ACME", 50, "Italia", "alta", "2025-06-25T06:00:00Z")
    assert parser.parse(order_message(order, "orders/0/7")) == order
    routed = parser.parse(command_message({"command": "repair", "machine_id": "Italia-tornio-01"}))
    assert routed == RoutedCommand({"command": "repair", "machine_id": "Italia-tornio-01"})
    for raw in (b"[]", b"{}", b"{\"order\": 3}", b"not json", b"{\"command\": {}}" + b" " * parser.max_bytes,
                "{\"order\": {\"lot_code\": \"\u202e\u0007\", \"quantity\": 1, \"location\": \"Italia\"}}".encode()):
        with pytest.raises(OrderRejected):
            parser.parse(raw)
    assert plant_partitions(["Vietnam", "Italia", "Brasile"]) == {"Brasile": 0, "Italia": 1, "Vietnam": 2}


# -- inputs of several plant runs ------------------------------------------------------------------------
async def test_inputs_go_each_to_its_plants_run_and_one_for_a_plant_not_run_here_is_refused(
        default_config: Any) -> None:
    gates, drivers = [], []
    for plant in ("Italia", "Vietnam"):
        sim = Simulation(plants_config(default_config, [plant]), ListSink())
        driver = Driver(sim, speed=None)
        driver.pause()  # inputs apply; no lot moves on
        drivers.append(driver)
        gates.append(InputGate(driver))
    router = PlantInputs({slot.id: slot.location for slot in default_config.machine_slots})
    for gate in gates:
        router.add(gate)
    tasks = [asyncio.ensure_future(d.run()) for d in drivers]
    try:
        items = [Admit(Order(f"L-{i}", "", 10, plant, "normale")) for i, plant in
                 enumerate(["Vietnam", "Italia", "Brasile", "Italia"])]
        results = await asyncio.wait_for(router.submit(items), 10)
        assert [getattr(r, "location", None) for r in results[:2]] == ["Vietnam", "Italia"]
        assert isinstance(results[2], JournalRefused)  # Brasile has no run here
        assert getattr(results[3], "code", None) == "L-3"
        assert router.lot_in_progress("L-1") and not router.lot_in_progress("L-2")
        assert set(gates[0].driver.sim.lots) == {"L-1", "L-3"} and set(gates[1].driver.sim.lots) == {"L-0"}
        router.remove(["Vietnam"])
        (refused,) = await asyncio.wait_for(router.submit([Admit(Order("L-9", "", 10, "Vietnam", "normale"))]), 10)
        assert isinstance(refused, JournalRefused)
    finally:
        for driver in drivers:
            driver.stop()
        await asyncio.gather(*tasks)


@pytest.fixture
def default_config(default_yaml: dict[str, Any]) -> Any:
    return parse(default_yaml, environ={})


def test_sharing_the_plants_needs_a_kafka_cluster_not_the_embedded_broker(default_yaml: dict[str, Any]) -> None:
    data = {**default_yaml, "kafka": {"bootstrap_servers": "embedded", "scale_out": {"enabled": True}}}
    with pytest.raises(ConfigError, match=r"kafka\.scale_out\.enabled: .*kafka\.bootstrap_servers"):
        parse(data, environ={})
    data["kafka"]["bootstrap_servers"] = "kafka-1:9092"
    assert parse(data, environ={}).kafka.scale_out.enabled


class _AcknowledgingJournal:
    """Entries kept in memory, each acknowledged at once (the Kafka journal's contract)."""

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def append(self, entries: Any) -> asyncio.Future[None]:
        self.entries.extend(entries)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_plant_whose_group_session_is_not_confirmed_stops_at_its_time_lease(default_config: Any) -> None:
    """An instance the plants' group may have given up on renews no lease: simulated time holds
    at the lease in force (what it publishes stays within what the journal allows), and goes on
    once the session is confirmed again."""
    sim = Simulation(plants_config(default_config, ["Italia"]), ListSink())
    driver = Driver(sim, speed=None)
    gate = InputGate(driver)
    confirmed = True
    journal = RunJournal(_AcknowledgingJournal(), sim, driver, gate, "run", fingerprint="f", history=None,
                         outbox=ListSink(), speed=None, after_downtime="catch_up", delivered_through=dict,
                         may_renew=lambda: confirmed)
    journal.begin()
    sim.start_arrivals(code_prefix="L")  # something to simulate
    tasks = [asyncio.ensure_future(driver.run()), asyncio.ensure_future(journal.run())]
    try:
        await _until_true(lambda: sim.now > 600, "the plant runs")
        confirmed = False
        await _until_true(lambda: "journal lease" in driver.held, "simulated time held at the lease")
        held_at, lease = sim.now, driver.lease
        await asyncio.sleep(2.5)  # two of the lease loop's turns: nothing may move meanwhile
        assert sim.now == held_at <= lease == driver.lease
        confirmed = True
        await _until_true(lambda: sim.now > lease, "the plant runs again")
    finally:
        driver.stop()
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _until_true(condition: Any, what: str, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not: {what}"
        await asyncio.sleep(0.05)


def test_an_assignment_names_owners_only_with_addresses_that_can_be_a_location_header() -> None:
    """What another member put in the group travels to every instance: an owner's URL that is not
    a plain http(s) URL (a line break, a number) is dropped, a malformed map is ignored."""
    assignor = PlantAssignor("me", "http://me:8080")
    owners = {"0": {"instance": "a", "url": "http://a:8080"}, "1": {"instance": "b", "url": "http://b\r\nX-Evil: 1"},
              "2": {"instance": "c", "url": 7}}
    assignor.on_assignment(ConsumerProtocolMemberAssignment(0, [("inbox", [0])], orjson.dumps(owners)))
    assert assignor.owned == [0]
    assert {p: (o.instance, o.url) for p, o in assignor.owners.items()} == {
        0: ("a", "http://a:8080"), 1: ("b", None), 2: ("c", None)}
    for garbage in (b"[1, 2]", b"\xff", b'{"0": 5}'):
        assignor.on_assignment(ConsumerProtocolMemberAssignment(0, [("inbox", [1])], garbage))
        assert assignor.owners == {} and assignor.owned == [1]
