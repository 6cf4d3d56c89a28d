"""The service against a real broker: lots in, telemetry and events out, dead letters, health."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from harness.service import Reader, finished, orders, produce, running_service, service_config, wait_for

STAGES = ("fresa_cnc", "tornio", "assemblaggio", "test")
COMMON_FIELDS = {"codice_lotto", "luogo", "timestamp_locale", "timestamp_utc", "id_macchina", "macchina", "stato",
                 "blocco_macchina", "motivo_blocco", "ultima_manutenzione", "tempo_ciclo", "allarmi_utente",
                 "id_evento", "pezzi_da_ultima_manutenzione"}
STAGE_FIELDS = {"fresa_cnc": {"profondita_taglio", "vibrazione", "velocita_mandrino"},
                "tornio": {"velocita_rotazione", "temperatura_mandrino"},
                "assemblaggio": {"operatori_attivi"},
                "test": {"risultati_test", "esito"}}


async def test_two_hundred_lots_flow_end_to_end(default_yaml: dict[str, Any], kafka_bootstrap: str,
                                                unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    topics = config.kafka.topics
    stage_topics = [f"{topics.telemetry_prefix}.{s}" for s in STAGES]
    async with running_service(config) as service:
        await produce(kafka_bootstrap, topics.orders, orders(200, unique))
        async with Reader(kafka_bootstrap, [topics.events, *stage_topics]) as reader:
            # (every stage's cycle records too: Kafka may hand a topic's records over later than another's)
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == 200
                and all(len({m["codice_lotto"] for m in c.json(t)}) == 200 for t in stage_topics), 90,
                "200 finished lots and their cycle records")
        assert service.healthy
        await wait_for(lambda: service.intake is not None and service.intake.in_flight == 0, 10, "offsets done")
    events = collected.json(topics.events)
    by_type = Counter(e["event_type"] for e in events)
    assert by_type["lot.received"] == 200
    assert by_type["lot.completed"] + by_type["lot.scrapped"] == 200
    reworked = Counter(e["lot_code"] for e in events if e["event_type"] == "lot.reworked")
    scrapped = {e["lot_code"] for e in events if e["event_type"] == "lot.scrapped"}
    for stage, topic in zip(STAGES, stage_topics, strict=True):
        messages = collected.json(topic)
        per_lot = Counter(m["codice_lotto"] for m in messages)
        assert set(per_lot) == {f"{unique}-{i}" for i in range(200)}, stage
        for lot, count in per_lot.items():
            # a rework sends the lot back to assemblaggio, so assemblaggio and test see it again
            extra = reworked[lot] if stage in ("assemblaggio", "test") else 0
            assert count == 1 + extra, (stage, lot, count)
        for message in messages:
            assert COMMON_FIELDS | STAGE_FIELDS[stage] <= set(message), stage
        keys = {m.key.decode() for m in collected.of(topic)}
        assert keys == {m["id_macchina"] for m in messages}  # keyed by machine id
        headers = dict(collected.of(topic)[0].headers)
        assert set(headers) >= {"event_id", "event_type", "schema_version", "content_type"}
    assert all(e["lot_code"] in scrapped or e["event_type"] != "lot.scrapped" for e in events)


BAD_MESSAGES: list[tuple[bytes, str]] = [
    (b"this is not json", "not_json"),
    (b"[1,2,3]", "not_object"),
    (b"", "empty"),
    (orjson.dumps({"lot_code": "X", "quantity": "ten", "location": "Italia"}), "invalid_field"),
    (orjson.dumps({"lot_code": "X", "quantity": 5, "location": "Atlantis"}), "unknown_location"),
    (orjson.dumps({"lot_code": "X", "quantity": 5, "location": "Italia", "priority": "asap"}), "unknown_priority"),
    (orjson.dumps({"lot_code": "Y" * 40, "quantity": 5, "location": "Italia", "customer": "z" * 70_000}),
     "oversized"),
]


async def test_bad_orders_are_dead_lettered_and_valid_ones_complete(default_yaml: dict[str, Any],
                                                                   kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    topics = config.kafka.topics
    valid = orders(30, unique, seed=2)
    duplicate = valid[3]
    values: list[bytes] = []
    expected: list[str] = []
    for i, good in enumerate(valid):
        values.append(good)
        bad, reason = BAD_MESSAGES[i % len(BAD_MESSAGES)]
        values.append(bad)
        expected.append(reason)
    values.append(duplicate)
    expected.append("duplicate_lot")
    async with running_service(config) as service:
        await produce(kafka_bootstrap, topics.orders, values)
        async with Reader(kafka_bootstrap, [topics.events, topics.dead_letter]) as reader:
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == 30 and len(c.of(topics.dead_letter)) == 31,
                90, "30 finished lots and 31 dead letters")
        assert service.healthy
        url = f"http://127.0.0.1:{service.http_port}/health"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
    letters = collected.of(topics.dead_letter)
    reasons = Counter(dict(m.headers)["dlq.reason"].decode() for m in letters)
    assert reasons == Counter(expected)
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["dlq.topic"].decode() == topics.orders
        assert int(headers["dlq.offset"].decode()) >= 0
        assert headers["dlq.detail"]
        assert letter.value in values  # the original bytes, untouched


async def test_health_metrics_and_machines_while_running(default_yaml: dict[str, Any], kafka_bootstrap: str,
                                                        unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    async with running_service(config) as service:
        await produce(kafka_bootstrap, config.kafka.topics.orders, orders(20, unique))
        await wait_for(lambda: service.sim.stats.completed + service.sim.stats.scrapped == 20, 60, "20 lots")
        await wait_for(lambda: service.publisher is not None and service.publisher.in_flight == 0
                       and len(service.outbox) == 0, 30, "every record confirmed")
        base = f"http://127.0.0.1:{service.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/health") as response:
                health = await response.json()
                assert response.status == 200
            assert health["status"] == "healthy"
            assert health["kafka"]["connected"] is True
            assert health["kafka"]["broker"] == kafka_bootstrap
            assert health["lots"]["completed"] + health["lots"]["scrapped"] == 20
            assert health["simulation"]["speed"] == "max"
            assert {"uptime_seconds", "mqtt"} <= set(health)
            for path in ("/health/live", "/health/ready"):
                async with http.get(base + path) as response:
                    assert response.status == 200, path
            async with http.get(f"{base}/metrics") as response:
                text = await response.text()
            families = {f.name: f for f in text_string_to_metric_families(text)}
            lots = {s.labels["state"]: s.value for s in families["factorysim_lots"].samples}
            assert lots["received"] == 20
            sent = {s.labels["topic"]: s.value for s in families["factorysim_kafka_records_sent"].samples
                    if s.name.endswith("_total")}
            assert sent[config.kafka.topics.events] >= 20 * 6
            assert families["factorysim_orders_consumed"].samples[0].value == 20
            utilization = families["factorysim_pool_utilization"].samples
            assert len(utilization) == 12
            assert all(0 <= s.value <= 1 for s in utilization)
            async with http.get(f"{base}/machines") as response:
                machines = await response.json()
            assert len(machines) == 26  # 7 in Italia, 8 in Brasile, 11 in Vietnam
            assert sum(m["cycles"] for m in machines.values()) >= 80
            async with http.get(f"{base}/machines/Italia-fresa_cnc-01") as response:
                one = await response.json()
                assert one["location"] == "Italia"
                assert one["type"] == "fresa_cnc"
            async with http.get(f"{base}/machines/Atlantis-01") as response:
                assert response.status == 404
                assert (await response.json())["error"] == "unknown_machine"
            async with http.get(f"{base}/status") as response:
                status = await response.json()
                assert status["report"]["lots"]["received"] == 20


async def test_kafka_record_timestamps_are_the_event_times_when_asked(default_yaml: dict[str, Any],
                                                                      kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"kafka.producer.timestamps": "event"})
    topics = config.kafka.topics
    async with running_service(config):
        await produce(kafka_bootstrap, topics.orders, orders(5, unique))
        async with Reader(kafka_bootstrap, [topics.events]) as reader:
            collected = await reader.read_until(lambda c: len(finished(c.json(topics.events))) == 5, 60, "5 lots")
    records = collected.of(topics.events)
    assert len(records) > 30
    for record in records:  # the payload's own instant (the run starts in 2025, long before it is sent)
        shown = dt.datetime.fromisoformat(orjson.loads(record.value)["timestamp_utc"].replace("Z", "+00:00"))
        assert record.timestamp == round(shown.timestamp() * 1000)


async def test_a_run_started_now_shows_the_wall_clock_from_its_first_record(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    # the command line's "--start now": simulated time 0 is the instant the run goes live, however
    # long the start-up took (here: the configured start lies an hour back)
    an_hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 1,
                                                                      "simulation.start": an_hour_ago})
    async with running_service(config, start_now=True) as service:
        behind = dt.datetime.now(dt.UTC) - service.sim.calendar_time()
        started = service.sim.start
    assert dt.timedelta(0) <= behind < dt.timedelta(seconds=1)  # (it was 1 h, or the start-up's seconds)
    assert abs(started - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=60)
    async with running_service(service_config(default_yaml, kafka_bootstrap, f"{unique}-b",
                                              **{"simulation.start": an_hour_ago})) as configured:
        assert configured.sim.start == dt.datetime.fromisoformat(an_hour_ago)  # without it: the configured start
