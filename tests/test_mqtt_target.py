"""MQTT targets against a real Mosquitto (and a CONNECT-capturing listener for K8S-SAT): connection
options, reconnect and resend, overflow policies, availability, health counters."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.adapters.mqtt import MqttPublisher
from simulator.adapters.mqtt_options import TOPIC_FIELDS, render
from simulator.adapters.mqtt_session import SessionState
from simulator.config.mqtt import MqttTarget
from simulator.errors import ConfigError
from simulator.formats import WireMessage
from simulator.model.records import LotEvent, Record
from simulator.net import free_port
from simulator.runtime.outbox import Outbox

from harness.collector import MqttCollector
from harness.fake_broker import ConnectCapture
from harness.mosquitto import Mosquitto
from harness.pki import Pki
from harness.service import wait_for

FAST_RECONNECT = {"initial_s": 0.05, "max_s": 0.2, "jitter": 0.5}


class SeqFormat:
    """One message per record, payload = the record's sequence number (publisher-agnostic tests)."""

    name = "seq"

    def encode(self, record: Record) -> list[WireMessage]:
        return [WireMessage("plant/seq", b"", (), str(record.seq).encode())]


def events(first: int, last: int) -> list[LotEvent]:
    return [LotEvent(n, float(n), event_type="lot.received", location="Italia", lot_code=f"L-{n}")
            for n in range(first, last + 1)]


def target(port: int, **options: Any) -> MqttTarget:
    data: dict[str, Any] = {"name": "t", "host": "127.0.0.1", "port": port, "reconnect": FAST_RECONNECT,
                            "availability_topic": "plant/availability"}
    data.update(options)
    return MqttTarget.model_validate(data)


@contextlib.asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        publisher.finish()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def seqs(collector: MqttCollector) -> list[int]:
    return [int(p) for p in collector.payloads("plant/seq")]


async def test_publishes_in_order_with_availability(mosquitto: Mosquitto) -> None:
    async with MqttCollector(mosquitto.host, mosquitto.port, "plant/#") as collector:
        publisher = MqttPublisher(target(mosquitto.port, qos=1), SeqFormat())
        async with running(publisher):
            for record in events(1, 500):
                publisher.offer(record)
            await collector.wait_count(500, topic="plant/seq")
            await wait_for(lambda: publisher.messages_acknowledged == 500, what="500 acknowledgements")
            health = publisher.health()
            assert health["connected"] is True
            assert health["state"] == SessionState.CONNECTED
            assert collector.payloads("plant/availability")[-1] == b"online"
        assert seqs(collector) == list(range(1, 501))
        await collector.wait_for(lambda ms: any(m.topic == "plant/availability" and m.payload == b"offline"
                                                for m in ms))
        assert publisher.health()["messages_acknowledged"] == 500
    # a clean stop leaves no retained availability message behind (a retained marker shows the
    # new subscriber got the topic's retained messages)
    marker = ["mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "plant/marker", "-m", "here",
              "-r", "-q", "1"]
    await asyncio.to_thread(subprocess.run, marker, check=True, timeout=30)
    async with MqttCollector(mosquitto.host, mosquitto.port, "plant/#") as late:
        await late.wait_for(lambda ms: any(m.topic == "plant/marker" for m in ms))
        assert [m for m in late.messages if m.topic == "plant/availability" and m.payload] == []


async def test_thousands_of_messages_through_the_default_receive_maximum_never_stall(
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory()  # Mosquitto's defaults: receive maximum 20, a window of 16
    publisher = MqttPublisher(target(broker.port, qos=1, queue={"capacity": 20_001}), SeqFormat())
    async with running(publisher):
        await publisher.session.wait_ready()
        assert publisher.session.window <= 16
        for record in events(1, 12_000):
            publisher.offer(record)
        await wait_for(lambda: publisher.messages_acknowledged == 12_000, 20, "12,000 acknowledgements")


async def test_connect_carries_last_will_and_client_id(connect_capture: ConnectCapture) -> None:
    publisher = MqttPublisher(target(connect_capture.port, client_id="sim-{name}-{pid}"), SeqFormat())
    async with running(publisher):
        connect = (await connect_capture.wait_connects(1))[0]
    assert connect.will_topic == "plant/availability"
    assert connect.will_payload == b"offline"
    assert connect.will_retain is True
    assert connect.client_id.startswith("sim-t-")
    assert connect.protocol == "5"


async def test_protocol_311(mosquitto: Mosquitto) -> None:
    async with MqttCollector(mosquitto.host, mosquitto.port, "plant/seq") as collector:
        publisher = MqttPublisher(target(mosquitto.port, protocol="3.1.1", qos=2), SeqFormat())
        async with running(publisher):
            for record in events(1, 50):
                publisher.offer(record)
            await collector.wait_count(50)
            await wait_for(lambda: publisher.messages_acknowledged == 50, what="QoS 2 completions")
        assert seqs(collector) == list(range(1, 51))


async def test_tls_with_test_ca_and_client_certificate(mosquitto_factory: Callable[..., Mosquitto],
                                                       test_pki: Pki) -> None:
    broker = mosquitto_factory(tls=test_pki, require_certificate=True)
    assert broker.tls_port is not None
    async with MqttCollector(broker.host, broker.port, "plant/seq") as collector:
        tls = {"enabled": True, "ca_file": str(test_pki.ca_cert), "cert_file": str(test_pki.client_cert),
               "key_file": str(test_pki.client_key)}
        publisher = MqttPublisher(target(broker.tls_port, host="localhost", tls=tls), SeqFormat())
        async with running(publisher):
            for record in events(1, 20):
                publisher.offer(record)
            await collector.wait_count(20)
        assert publisher.health()["tls"] is True


async def test_tls_with_the_wrong_ca_fails_clearly(mosquitto_factory: Callable[..., Mosquitto],
                                                   test_pki: Pki) -> None:
    broker = mosquitto_factory(tls=test_pki)
    assert broker.tls_port is not None
    publisher = MqttPublisher(target(broker.tls_port, host="localhost",
                                     tls={"enabled": True, "ca_file": str(test_pki.wrong_ca_cert)}), SeqFormat())
    async with running(publisher):
        await wait_for(lambda: publisher.session.last_error is not None, what="a connection error")
        error = publisher.session.last_error or ""
        assert "certificate verification failed" in error
        assert "tls.ca_file" in error
        assert publisher.connected is False


async def test_password_from_env_accepted_and_wrong_one_refused(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(users={"alice": "s3cret"})
    async with MqttCollector(broker.host, broker.port, "plant/seq", username="alice", password="s3cret") as collector:
        auth = {"method": "password", "username": "alice", "password_env": "PLANT_MQTT_PASSWORD"}
        good = MqttPublisher(target(broker.port, auth=auth), SeqFormat(), environ={"PLANT_MQTT_PASSWORD": "s3cret"})
        async with running(good):
            good.offer(events(1, 1)[0])
            await collector.wait_count(1)
    bad = MqttPublisher(target(broker.port, auth=auth), SeqFormat(), environ={"PLANT_MQTT_PASSWORD": "wrong"})
    async with running(bad):
        await wait_for(lambda: bad.session.last_error is not None, what="a refusal")
        assert "refused" in (bad.session.last_error or "")
        assert "s3cret" not in str(bad.health()) and "wrong" not in str(bad.health())


async def test_k8s_sat_token_sent_and_reread_on_reconnect(connect_capture: ConnectCapture, tmp_path: Path) -> None:
    token = tmp_path / "broker-sat"
    token.write_bytes(b"token-one\n")
    publisher = MqttPublisher(target(connect_capture.port, auth={"method": "k8s-sat", "token_file": str(token)}),
                              SeqFormat())
    async with running(publisher):
        first = (await connect_capture.wait_connects(1))[0]
        assert first.auth_method == "K8S-SAT"
        assert first.auth_data == b"token-one"
        token.write_bytes(b"token-two\n")  # Kubernetes rotated it
        await connect_capture.drop_clients()
        second = (await connect_capture.wait_connects(2))[1]
        assert second.auth_method == "K8S-SAT"
        assert second.auth_data == b"token-two"
        await wait_for(lambda: publisher.connected, what="reconnected")
        assert publisher.session.reconnects == 1


async def test_unacknowledged_messages_resent_in_order_acknowledged_never(connect_capture: ConnectCapture) -> None:
    publisher = MqttPublisher(target(connect_capture.port, availability_topic=None), SeqFormat())
    async with running(publisher):
        await connect_capture.wait_connects(1)
        for record in events(1, 5):
            publisher.offer(record)
        await connect_capture.wait_publishes(5)
        await wait_for(lambda: publisher.messages_acknowledged == 5, what="5 acknowledgements")
        connect_capture.hold_acks = True
        for record in events(6, 10):
            publisher.offer(record)
        await connect_capture.wait_publishes(10)
        await connect_capture.drop_clients()  # 6..10 were never acknowledged
        connect_capture.release_acks()
        await connect_capture.wait_connects(2)
        await connect_capture.wait_publishes(15)
        await wait_for(lambda: publisher.messages_acknowledged == 10, what="10 acknowledgements")
    payloads = [int(p.payload) for p in connect_capture.publishes]
    assert payloads == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 6, 7, 8, 9, 10]
    assert publisher.session.resent == 5
    assert publisher.health()["messages_resent"] == 5


async def test_broker_restart_queued_messages_delivered_once(mosquitto_factory: Callable[..., Mosquitto],
                                                             tmp_path: Path) -> None:
    broker = mosquitto_factory(users={"sim": "right", "reader": "r"})
    password = tmp_path / "password"
    password.write_text("right\n")
    auth = {"method": "password", "username": "sim", "password_file": str(password)}
    async with MqttCollector(broker.host, broker.port, "plant/seq", username="reader", password="r") as collector:
        publisher = MqttPublisher(target(broker.port, auth=auth), SeqFormat())
        async with running(publisher):
            for record in events(1, 300):
                publisher.offer(record)
            await collector.wait_count(300)
            await wait_for(lambda: publisher.messages_acknowledged == 300, what="first half acknowledged")
            # keep the target out after the restart until the subscriber is back (else messages it
            # publishes first reach nobody: the broker keeps no sessions across its restart)
            password.write_text("wrong\n")
            await broker.astop()
            await wait_for(lambda: not publisher.connected, what="the target to notice the outage")
            for record in events(301, 600):  # queued meanwhile
                publisher.offer(record)
            assert publisher.health()["state"] != SessionState.CONNECTED
            rounds = collector.subscribe_rounds
            await broker.astart()
            await collector.wait_subscribed(rounds + 1)
            password.write_text("right\n")
            await collector.wait_count(600, timeout_s=20)
            await wait_for(lambda: publisher.messages_acknowledged == 600, what="everything acknowledged")
            health = publisher.health()
        got = seqs(collector)
        assert sorted(set(got)) == list(range(1, 601))
        assert len(got) - len(set(got)) <= health["messages_resent"]
        assert got == sorted(got)  # per-target order kept
        assert health["reconnects"] >= 1
        assert health["connected"] is True


@pytest.mark.parametrize(("overflow", "expected"), [("drop-newest", list(range(1, 11))),
                                                    ("drop-oldest", list(range(16, 26)))])
async def test_overflow_drop_policies(mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path, overflow: str,
                                      expected: list[int]) -> None:
    broker = mosquitto_factory(users={"sim": "right", "reader": "r"})
    password = tmp_path / "password"
    password.write_text("wrong\n")  # refused until fixed: the target's queue fills meanwhile
    auth = {"method": "password", "username": "sim", "password_file": str(password)}
    async with MqttCollector(broker.host, broker.port, "plant/seq", username="reader", password="r") as collector:
        publisher = MqttPublisher(target(broker.port, auth=auth, queue={"capacity": 10, "overflow": overflow}),
                                  SeqFormat())
        async with running(publisher):
            await wait_for(lambda: publisher.session.last_error is not None, what="the refusal")
            for record in events(1, 25):
                publisher.offer(record)
            which = overflow.removeprefix("drop-")
            assert publisher.dropped[which] == 15
            assert publisher.health()[f"dropped_{which}"] == 15
            assert len(publisher) == 10
            assert publisher.full is False  # dropping policies never hold the producer
            password.write_text("right\n")  # read again on the next attempt
            await wait_for(lambda: publisher.messages_acknowledged == 10, timeout_s=15, what="the kept ten")
            await collector.wait_count(10)
        assert seqs(collector) == expected
        assert publisher.records_offered == 25


async def test_block_policy_holds_the_outbox_until_there_is_room(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    port = free_port()
    publisher = MqttPublisher(target(port, queue={"capacity": 10, "overflow": "block"}), SeqFormat())
    outbox = Outbox(1000)
    outbox.add_tap(publisher)
    woken: list[bool] = []
    publisher.on_room = lambda: woken.append(True)
    async with running(publisher):
        for record in events(1, 12):
            outbox.emit(record)
        assert publisher.full is True
        assert outbox.full is True  # the driver stops stepping: simulated time holds
        assert publisher.dropped == {"oldest": 0, "newest": 0}
        mosquitto_factory(port=port)
        await wait_for(lambda: not outbox.full, timeout_s=15, what="room again")
        await wait_for(lambda: publisher.messages_acknowledged == 12, what="all twelve published")
        assert woken


@pytest.mark.parametrize("template", ["plant/{client_id:999999999}/availability", "plant/{client_id!r}", "plant/{"])
def test_an_availability_topic_with_a_format_spec_or_a_broken_brace_is_a_config_error(template: str) -> None:
    # a width spec would build a string of a gigabyte before anything is sent
    with pytest.raises(ConfigError, match=r"^invalid configuration: mqtt\.targets\.a\.availability_topic: "):
        render(template, "mqtt.targets.a.availability_topic", TOPIC_FIELDS, client_id="c", name="a")
