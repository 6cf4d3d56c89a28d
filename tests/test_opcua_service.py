"""The OPC UA server of a running service, read and driven by an OPC UA client against real Kafka:
the address space, values that follow the model, data change and event notifications, the
methods as runtime commands, /health and /metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from asyncua import Client, Node, ua

from simulator.formats import journal
from simulator.model import inputs
from simulator.net import free_port

from harness.service import Reader, produce, running_service, service_config, wait_for

MACHINE = "Italia-fresa_cnc-01"  # the first free milling machine in Italia takes the first Italian lot
NAMESPACE = "urn:factorysim:test"


def lot_order(code: str) -> bytes:
    return f'{{"lot_code": "{code}", "customer": "Bar Sport", "quantity": 120, "location": "Italia"}}'.encode()


class Notifications:
    """The client's subscription handler: every data change and event, kept for the test."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, Any]] = []
        self.events: list[Any] = []
        self.names: dict[ua.NodeId, str] = {}

    def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
        self.changes.append((self.names.get(node.nodeid, str(node.nodeid)), value))

    def event_notification(self, event: Any) -> None:
        self.events.append(event)

    def values_of(self, name: str) -> list[Any]:
        return [v for n, v in self.changes if n == name]


async def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    await wait_for(condition, timeout_s, what)


async def test_address_space_values_subscriptions_and_methods(default_yaml: dict[str, Any], kafka_bootstrap: str,
                                                              unique: str) -> None:
    port = free_port()
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "simulation.speed": 60, "disruptions.block_probability": 0.0,
        "machine_types": {"fresa_cnc": {"sample_interval_s": 20}},
        "opcua": {"enabled": True, "host": "127.0.0.1", "port": port, "namespace_uri": NAMESPACE,
                  "update_interval_s": 0.1}})
    topics = config.kafka.topics
    lot = f"{unique}-lot"
    async with running_service(config) as service, Client(f"opc.tcp://127.0.0.1:{port}/") as client:
        ns = await client.get_namespace_index(NAMESPACE)
        plant = await client.nodes.objects.get_child(f"{ns}:Plant")
        locations = {(await n.read_browse_name()).Name: n for n in await plant.get_children()}
        assert set(locations) == set(config.locations)
        machines = {(await n.read_browse_name()).Name for n in await locations["Italia"].get_children()}
        assert machines == {s.id for s in config.machine_slots if s.location == "Italia"}

        machine = client.get_node(ua.NodeId(MACHINE, ns))
        children = {(await n.read_browse_name()).Name for n in await machine.get_children()}
        assert {"State", "CurrentLot", "Counters", "OEE", "Signals", "Block", "Repair", "InjectAnomaly",
                "ClearAnomaly"} <= children
        assert await machine.read_event_notifier() == {ua.EventNotifier.SubscribeToEvents}
        signals = {(await n.read_browse_name()).Name: n
                   for n in await client.get_node(ua.NodeId(f"{MACHINE}.Signals", ns)).get_children()}
        assert {"power_kw", "energy_kwh", "spindle_temp_c", "vibration_mm_s"} <= set(signals)
        units = {name: await (await signals[name].get_child("0:EngineeringUnits")).read_value()
                 for name in ("power_kw", "spindle_temp_c")}
        assert (units["power_kw"].UnitId, units["power_kw"].DisplayName.Text) == (0x4B5754, "kW")  # KWT
        assert (units["spindle_temp_c"].UnitId, units["spindle_temp_c"].DisplayName.Text) == (0x43454C, "°C")  # CEL
        assert units["power_kw"].NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"

        state = client.get_node(ua.NodeId(f"{MACHINE}.State", ns))
        lot_node = client.get_node(ua.NodeId(f"{MACHINE}.CurrentLot", ns))
        assert await state.read_value() == "idle"
        handler = Notifications()
        handler.names = {state.nodeid: "State", signals["power_kw"].nodeid: "power_kw",
                         lot_node.nodeid: "CurrentLot"}
        subscription = await client.create_subscription(50, handler)
        await subscription.subscribe_data_change([state, signals["power_kw"], lot_node])
        await subscription.subscribe_events(machine, ua.NodeId("MachineAlarmEventType", ns))
        server_events = Notifications()
        server_subscription = await client.create_subscription(50, server_events)
        await server_subscription.subscribe_events(client.nodes.server, ua.NodeId("MachineAlarmEventType", ns))

        await produce(kafka_bootstrap, topics.orders, [lot_order(lot)])
        await wait_until(lambda: "running" in handler.values_of("State") and lot in handler.values_of("CurrentLot"),
                         30, "the lot running on the machine, by data change notifications")
        # samples every 20 simulated seconds: the power changes as the model runs
        await wait_until(lambda: len({v for v in handler.values_of("power_kw") if v > 0}) >= 3, 30,
                         "three different power readings")
        running_s = client.get_node(ua.NodeId(f"{MACHINE}.Counters.RunningSeconds", ns))
        availability = client.get_node(ua.NodeId(f"{MACHINE}.OEE.Availability", ns))
        assert await running_s.read_value() > 0  # the samples carry the counters
        assert 0 < await availability.read_value() <= 100
        oee_unit = await (await availability.get_child("0:EngineeringUnits")).read_value()
        assert (oee_unit.UnitId, oee_unit.DisplayName.Text) == (0x5031, "%")  # P1
        first = await signals["spindle_temp_c"].read_value()
        counters_seen: list[float] = []

        async def temperature_moved() -> bool:
            counters_seen.append(await signals["spindle_temp_c"].read_value())
            return counters_seen[-1] != first

        for _ in range(200):
            if await temperature_moved():
                break
            await asyncio.sleep(0.05)
        assert counters_seen[-1] != first, "the spindle temperature never changed"

        result = await machine.call_method(f"{ns}:Block", "jam by OPC UA", 0.0)
        assert json.loads(result)["state"] == "blocked"
        await wait_until(lambda: handler.values_of("State")[-1:] == ["blocked"], 10, "the State variable blocked")
        assert service.sim.plant.machines[MACHINE].state == "blocked"
        await wait_until(lambda: any(e.AlarmKind == "blocked" for e in handler.events), 10, "the blocked event")
        event = next(e for e in handler.events if e.AlarmKind == "blocked")
        assert (event.MachineId, event.Reason) == (MACHINE, "jam by OPC UA")
        assert event.Severity >= 500
        await wait_until(lambda: any(e.AlarmKind == "blocked" and e.MachineId == MACHINE
                                     for e in server_events.events), 10, "the blocked event on the Server object")

        with pytest.raises(ua.UaStatusCodeError) as again:
            await machine.call_method(f"{ns}:Block", "", 0.0)
        assert again.value.code == ua.StatusCodes.BadInvalidState
        call = ua.CallMethodRequest(ObjectId=machine.nodeid, MethodId=ua.NodeId(f"{MACHINE}.Block", ns),
                                    InputArguments=[ua.Variant("", ua.VariantType.String),
                                                    ua.Variant(0.0, ua.VariantType.Double)])
        (answer,) = await client.uaclient.call([call])
        assert answer.StatusCode.value == ua.StatusCodes.BadInvalidState
        assert answer.OutputArguments[0].Value.startswith("already_blocked: ")
        with pytest.raises(ua.UaStatusCodeError) as unknown:
            await machine.call_method(f"{ns}:InjectAnomaly", "no_such_anomaly", 0.0, 0.0)
        assert unknown.value.code == ua.StatusCodes.BadInvalidArgument

        await machine.call_method(f"{ns}:InjectAnomaly", "bearing_fault", 2.0, 0.0)
        assert service.sim.plant.machines[MACHINE].anomaly == "bearing_fault"
        await wait_until(lambda: any(e.AlarmKind == "anomaly_injected" for e in handler.events), 10,
                         "the anomaly event")
        await machine.call_method(f"{ns}:Repair")
        await wait_until(lambda: handler.values_of("State")[-1:] == ["running"], 10, "running again after the repair")
        await machine.call_method(f"{ns}:ClearAnomaly", "")
        assert service.sim.plant.machines[MACHINE].anomaly is None

        def journaled(c: Any) -> list[inputs.Input]:
            return [e.input for e in map(journal.decode_entry, (m.value for m in c.of(topics.journal)))
                    if isinstance(e, journal.Applied)]

        async with Reader(kafka_bootstrap, [topics.events, topics.journal]) as reader:
            collected = await reader.read_until(
                lambda c: any(e["event_type"] == "machine.repaired" and e["machine_id"] == MACHINE
                              for e in c.json(topics.events))
                and any(isinstance(i, inputs.Repair) for i in journaled(c)), 30, "the repair on Kafka, journaled")
        # the methods' commands are journaled like HTTP and MQTT commands (a restart replays them)
        assert inputs.Block(MACHINE, "jam by OPC UA", None) in journaled(collected)
        kinds = [(e["event_type"], e["cause"], e["reason"]) for e in collected.json(topics.events)
                 if e["machine_id"] == MACHINE and e["event_type"].startswith("machine.")]
        assert kinds[0] == ("machine.blocked", "command", "jam by OPC UA")
        assert kinds[1][:2] == ("machine.repaired", "command")

        base = f"http://127.0.0.1:{service.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/health") as response:
                health = (await response.json())["opcua"]
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
        assert health["endpoint"] == f"opc.tcp://127.0.0.1:{port}/"
        assert health["listening"] is True
        assert health["sessions"] == 1
        assert health["values_written"] > 0
        assert health["events_raised"] >= 3
        assert health["method_calls"]["block.accepted"] == 1
        assert health["method_calls"]["block.rejected"] == 2
        assert "factorysim_opcua_values_written_total" in metrics
        assert 'factorysim_commands_total{command="block",outcome="accepted",source="opcua"} 1.0' in metrics
