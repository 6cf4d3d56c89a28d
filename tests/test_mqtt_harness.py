"""The MQTT test harness itself, against the real broker: Mosquitto options (anonymous, password file,
TLS, client certificates), restart on the same port, the reconnecting collector, the mosquitto CLI
clients, and ConnectCapture with real gmqtt and paho-mqtt clients (MQTT 5 and 3.1.1)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from typing import Any

import gmqtt
import paho.mqtt.client as paho
import pytest
from gmqtt.mqtt.constants import MQTTv50
from gmqtt.storage import PersistentStorage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness.collector import MqttCollector, MqttRefusedError
from harness.dependencies import require_executable
from harness.fake_broker import ConnectCapture
from harness.mosquitto import Mosquitto, password_file_line
from harness.pki import Pki

pytestmark = pytest.mark.timeout(30)


async def gmqtt_publish(host: str, port: int, messages: list[tuple[str, bytes, int, bool]], *,
                        tls: ssl.SSLContext | None = None, username: str | None = None,
                        password: str | None = None, **properties: Any) -> None:
    """Publish (topic, payload, qos, retain) tuples with gmqtt (MQTT 5; ``properties`` such as
    content_type=) and return once every QoS 1/2 message is acknowledged."""
    storage = PersistentStorage()
    client = gmqtt.Client(f"pub-{uuid.uuid4().hex[:8]}", persistent_storage=storage)
    if username is not None:
        client.set_auth_credentials(username, password)
    await client.connect(host, port, ssl=tls or False, version=MQTTv50)
    try:
        for topic, payload, qos, retain in messages:
            client.publish(topic, payload, qos=qos, retain=retain, **properties)
        await asyncio.wait_for(storage.wait_empty(), 10)
    finally:
        await client.disconnect()


class PahoEvents:
    """paho callbacks run in paho's thread: hand their arguments to the test's event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(self, kind: str, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    async def next(self, kind: str, timeout_s: float = 10.0) -> Any:
        got_kind, value = await asyncio.wait_for(self._queue.get(), timeout_s)
        assert got_kind == kind, f"expected {kind}, got {got_kind}: {value}"
        return value


def paho_client(client_id: str, protocol: int, events: PahoEvents) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         clean_session=True if protocol == paho.MQTTv311 else None)
    client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)  # type: ignore[arg-type]
    client.on_connect = lambda _c, _u, _f, reason, properties: events.put("connack", (reason, properties))
    client.on_publish = lambda _c, _u, mid, reason, _p: events.put("puback", (mid, reason))
    client.on_subscribe = lambda _c, _u, mid, reasons, _p: events.put("suback", (mid, reasons))
    return client


# --- Mosquitto and MqttCollector ----------------------------------------------------------------------------
async def test_anonymous_round_trip_records_topic_payload_qos_and_retain(mosquitto: Mosquitto) -> None:
    async with MqttCollector(mosquitto.host, mosquitto.port, ["plant/#", "other/x"], qos=1) as collector:
        await gmqtt_publish(mosquitto.host, mosquitto.port, [
            ("plant/a", b"one", 1, False), ("plant/b", b'{"n": 2}', 0, False), ("plant/status", b"up", 1, True)],
            content_type="application/json", user_property=[("site", "cesena")])
        received = {m.topic: m for m in await collector.wait_count(3)}
        with pytest.raises(AssertionError, match=r"timed out after 0\.2 s waiting for 4 messages"):
            await collector.wait_count(4, timeout_s=0.2)
    assert {t: (m.payload, m.qos, m.retain) for t, m in received.items()} == {
        "plant/a": (b"one", 1, False), "plant/b": (b'{"n": 2}', 0, False), "plant/status": (b"up", 1, False)}
    assert received["plant/b"].json() == {"n": 2}
    assert received["plant/a"].properties == {"ContentType": "application/json", "UserProperty": [("site", "cesena")]}
    assert collector.connections == collector.subscribe_rounds == 1
    # a later subscriber gets the retained message, flagged as retained
    async with MqttCollector(mosquitto.host, mosquitto.port, "plant/status", protocol="3.1.1") as late:
        (retained,) = await late.wait_count(1)
    assert (retained.payload, retained.retain) == (b"up", True)


async def test_password_file_accepts_its_users_and_refuses_others(mosquitto_factory: Any) -> None:
    broker = mosquitto_factory(users={"alice": "s3cret", "bob": "b0b:pw"})
    assert "password_file" in (broker.directory / "mosquitto.conf").read_text()
    async with MqttCollector(broker.host, broker.port, "secure/#", username="alice", password="s3cret") as collector:
        await gmqtt_publish(broker.host, broker.port, [("secure/x", b"ok", 1, False)],
                            username="bob", password="b0b:pw")
        assert (await collector.wait_count(1))[0].payload == b"ok"
    for username, password in (("alice", "wrong"), ("mallory", "s3cret"), (None, None)):
        with pytest.raises(MqttRefusedError) as refused:
            async with MqttCollector(broker.host, broker.port, "secure/#", username=username, password=password):
                pass
        assert refused.value.reason_code in (0x86, 0x87), refused.value  # bad credentials / not authorized
    with pytest.raises(ValueError, match="cannot contain"):
        password_file_line("a:b", "pw")


async def test_tls_listener_trusts_the_test_ca_and_not_a_wrong_one(mosquitto_factory: Any, test_pki: Pki) -> None:
    broker = mosquitto_factory(tls=test_pki)
    assert broker.tls_port not in (None, broker.port)
    async with MqttCollector(broker.host, broker.tls_port, "tls/#", tls=test_pki.client_context()) as collector:
        # the server certificate names localhost as well as 127.0.0.1
        await gmqtt_publish("localhost", broker.tls_port, [("tls/x", b"secret", 1, False)],
                            tls=test_pki.client_context())
        assert (await collector.wait_count(1))[0].payload == b"secret"
    with pytest.raises(ssl.SSLCertVerificationError):
        async with MqttCollector(broker.host, broker.tls_port, "tls/#", tls=test_pki.client_context(wrong_ca=True)):
            pass


async def test_tls_listener_can_require_a_client_certificate(mosquitto_factory: Any, test_pki: Pki) -> None:
    broker = mosquitto_factory(tls=test_pki, require_certificate=True)
    context = test_pki.client_context(client_cert=True)
    async with MqttCollector(broker.host, broker.tls_port, "mtls/#", tls=context) as collector:
        await gmqtt_publish(broker.host, broker.tls_port, [("mtls/x", b"hi", 1, False)], tls=context)
        await collector.wait_count(1)
    for refused in (test_pki.client_context(), test_pki.client_context(wrong_client_cert=True)):
        # a TLS alert, or (TLS 1.3: the client finishes its handshake first) the connection closed before CONNACK
        with pytest.raises((ssl.SSLError, ConnectionError)):
            async with MqttCollector(broker.host, broker.tls_port, "mtls/#", tls=refused, connect_timeout_s=5):
                pass


async def test_restart_and_kill_keep_the_port_and_the_collector_resubscribes(mosquitto: Mosquitto) -> None:
    port = mosquitto.port
    async with MqttCollector(mosquitto.host, mosquitto.port, "r/#") as collector:
        await gmqtt_publish(mosquitto.host, port, [("r/1", b"before", 1, False)])
        await collector.wait_count(1)

        await mosquitto.arestart()
        assert (mosquitto.port, mosquitto.running, mosquitto.starts) == (port, True, 2)
        await collector.wait_subscribed(2)
        await gmqtt_publish(mosquitto.host, port, [("r/2", b"after restart", 1, False)])
        assert (await collector.wait_message(lambda m: m.topic == "r/2")).connection == 2

        await mosquitto.akill()
        assert not mosquitto.running
        await mosquitto.astart()
        await collector.wait_subscribed(3)
        await gmqtt_publish(mosquitto.host, port, [("r/3", b"after kill", 1, False)])
        assert (await collector.wait_message(lambda m: m.topic == "r/3")).connection == 3
    assert [m.payload for m in collector.messages] == [b"before", b"after restart", b"after kill"]
    mosquitto.wait_for_log(f"as {collector.client_id} (p5, c1, k30")
    assert mosquitto.log_text().count("running") == 3, mosquitto.log_text()


async def test_mosquitto_command_line_clients_talk_to_the_broker(mosquitto: Mosquitto) -> None:
    mosquitto_sub = require_executable("mosquitto_sub", "mosquitto-clients")
    mosquitto_pub = require_executable("mosquitto_pub", "mosquitto-clients")
    async with MqttCollector(mosquitto.host, mosquitto.port, "cli/#") as collector:
        # retained first, so mosquitto_sub gets it as soon as it subscribes (no race with its start)
        await gmqtt_publish(mosquitto.host, mosquitto.port, [("cli/retained", b"from gmqtt", 1, True)])
        sub = await asyncio.create_subprocess_exec(
            mosquitto_sub, "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "cli/retained", "-q", "1",
            "-v", "-C", "1", "-W", "10", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(sub.communicate(), 15)
        assert (sub.returncode, out.decode().strip()) == (0, "cli/retained from gmqtt"), err.decode()

        pub = await asyncio.create_subprocess_exec(
            mosquitto_pub, "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "cli/from-pub", "-q", "1",
            "-m", "hello", stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(pub.communicate(), 15)
        assert pub.returncode == 0, err.decode()
        message = await collector.wait_message(lambda m: m.topic == "cli/from-pub")
    assert (message.payload, message.qos) == (b"hello", 1)


# --- ConnectCapture -------------------------------------------------------------------------------------------
async def test_capture_records_a_gmqtt_mqtt5_connect_publishes_and_its_reconnect(
        connect_capture: ConnectCapture) -> None:
    capture = connect_capture
    storage = PersistentStorage()
    will = gmqtt.Message("plant/availability", b"offline", qos=1, retain=True)
    client = gmqtt.Client("gm-client", will_message=will, persistent_storage=storage, auth_method="K8S-SAT",
                          session_expiry_interval=60)
    client.set_auth_credentials("sat-user", "token-1")
    client.set_config({"reconnect_delay": 0.05})
    await client.connect(capture.host, capture.port, keepalive=17, version=MQTTv50)
    try:
        (connect,) = await capture.wait_connects(1)
        assert (connect.protocol, connect.protocol_name, connect.client_id, connect.keepalive) == (
            "5", "MQTT", "gm-client", 17)
        assert (connect.clean_start, connect.username, connect.password) == (True, "sat-user", b"token-1")
        assert (connect.will_topic, connect.will_payload, connect.will_qos, connect.will_retain) == (
            "plant/availability", b"offline", 1, True)
        assert connect.auth_method == "K8S-SAT" and connect.auth_data is None  # gmqtt has no property 0x16
        assert connect.properties["session_expiry_interval"] == 60

        capture.hold_acks = True
        client.publish("plant/m1", b"q1", qos=1)
        client.publish("plant/m2", b"q2", qos=2)
        client.publish("plant/m0", b'{"q": 0}', qos=0)
        client.subscribe("cmd/#", qos=1)
        await capture.wait_publishes(3)
        await capture.wait_subscribes(1)
        assert not storage.is_empty  # PUBACK / PUBREC held back
        capture.release_acks()
        await asyncio.wait_for(storage.wait_empty(), 5)  # PUBACK, and PUBREC -> PUBREL -> PUBCOMP
        assert [(p.topic, p.payload, p.qos, p.dup) for p in capture.publishes] == [
            ("plant/m1", b"q1", 1, False), ("plant/m2", b"q2", 2, False), ("plant/m0", b'{"q": 0}', 0, False)]
        assert capture.publishes[2].json() == {"q": 0}
        assert capture.subscribes[0].filters == [("cmd/#", 1)]

        await capture.drop_clients()
        reconnect = (await capture.wait_connects(2))[1]
        assert (reconnect.connection, reconnect.client_id, reconnect.clean_start) == (1, "gm-client", False)

        port = capture.port  # a "broker" outage: the client retries until the port serves again
        await capture.stop()
        await capture.start()
        assert capture.port == port
        assert (await capture.wait_connects(3))[2].connection == 2
    finally:
        await client.disconnect()
    await capture.wait_for(lambda: capture.open_connections == 0, 5, "the client to close")
    assert (2, "DISCONNECT") in capture.packets
    assert capture.errors == []


async def test_capture_records_paho_mqtt5_authentication_data_and_refuses_on_request(
        connect_capture: ConnectCapture) -> None:
    capture = connect_capture
    events = PahoEvents()
    client = paho_client("paho-sat", paho.MQTTv5, events)
    properties = Properties(PacketTypes.CONNECT)
    properties.AuthenticationMethod = "K8S-SAT"
    properties.AuthenticationData = b"eyJhbGciOi.token\x00bytes"
    capture.reject_next(0x8C)
    await asyncio.to_thread(client.connect, capture.host, capture.port, 30, properties=properties)
    client.loop_start()
    try:
        refused, _ = await events.next("connack")
        assert (refused.value, refused.is_failure) == (0x8C, True)  # bad authentication method
        accepted, connack_properties = await events.next("connack")  # paho reconnects by itself
        assert accepted.value == 0
        assert connack_properties.AuthenticationMethod == "K8S-SAT"  # echoed in the CONNACK
        first, second = await capture.wait_connects(2)
        for connect in (first, second):
            assert (connect.auth_method, connect.auth_data) == ("K8S-SAT", b"eyJhbGciOi.token\x00bytes")
            assert connect.protocol_level == 5
        info = client.publish("sat/x", b"payload", qos=1)
        mid, reason = await events.next("puback")
        assert (mid, reason.value) == (info.mid, 0)
    finally:
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
    assert capture.errors == []


async def test_capture_speaks_mqtt_311_with_credentials_will_and_refusal_codes() -> None:
    async with ConnectCapture() as capture:
        events = PahoEvents()
        client = paho_client("paho-311", paho.MQTTv311, events)
        client.username_pw_set("operator", "pa55")
        client.will_set("plant/will", b"gone", qos=1, retain=False)
        capture.reject_next(0x86)  # sent to a 3.1.1 client as return code 4
        await asyncio.to_thread(client.connect, capture.host, capture.port, 25)
        client.loop_start()
        try:
            refused, _ = await events.next("connack")
            assert refused.getName() == "Bad user name or password"
            accepted, _ = await events.next("connack")
            assert accepted.value == 0
            connect = (await capture.wait_connects(2))[1]
            assert (connect.protocol, connect.protocol_level, connect.client_id, connect.keepalive) == (
                "3.1.1", 4, "paho-311", 25)
            assert (connect.username, connect.password, connect.will_topic, connect.will_payload) == (
                "operator", b"pa55", "plant/will", b"gone")
            assert connect.properties == {}
            _, mid = client.subscribe([("cmd/a", 2), ("cmd/b", 0)])
            sub_mid, granted = await events.next("suback")
            assert (sub_mid, [code.value for code in granted]) == (mid, [2, 0])
            info = client.publish("plant/x", b"1", qos=2)
            assert (await events.next("puback"))[0] == info.mid  # after PUBREC / PUBREL / PUBCOMP
        finally:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        await capture.wait_for(lambda: capture.open_connections == 0, 5, "the client to close")
        assert [p.topic for p in capture.publishes] == ["plant/x"]
        assert capture.errors == []
        with pytest.raises(ValueError, match="failure reason code"):
            capture.reject_next(0x00)
