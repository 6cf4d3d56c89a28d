"""An HTTP sink of the service against a real aiohttp server that misbehaves: one request in five
fails with 500, some get 429 with Retry-After, one hangs past the timeout, one is refused with 400.
Every record the service published on Kafka reaches the API in each machine's order, but those of
the refused request, which is never sent again; retries and rejections are counted in /health and
/metrics, and the API key is sent without ever being shown."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from simulator.formats.coffeemek import CoffeeMekFormat

from harness.delivered import Delivered, event_id, published_ids
from harness.http_receiver import HttpReceiver, ReceivedRequest, Reply
from harness.service import Reader, control_headers, orders, produce, running_service, service_config, wait_for

API_KEY = "k-3f9a-secret-value"
FINAL = {"lot.completed", "lot.scrapped"}
REFUSED = 11  # the request answered 400


def plan(request: ReceivedRequest) -> Reply:
    i = request.index
    if i == REFUSED:
        return Reply(400, b'{"error": "bad batch"}')
    if i == 7:
        return Reply(hang_s=3.0)  # past timeout_s: the client gives up and tries again
    if i % 17 == 3:
        return Reply(429, headers={"Retry-After": "1"})
    if i % 5 == 1:
        return Reply(500, b"boom")
    return Reply(200)


async def test_records_reach_a_flaky_api_in_order_and_only_a_4xx_batch_is_given_up(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    lots = 60
    async with HttpReceiver(plan) as api:
        config = service_config(default_yaml, kafka_bootstrap, unique, **{"http_sinks": [{
            "name": "cloud", "url": api.url, "path": "/ingest", "format": "coffeemek", "body": "json-array",
            "auth": {"method": "api-key", "header": "X-API-Key", "value_env": "CLOUD_KEY"},
            "timeout_s": 1.0, "retry": {"initial_s": 0.05, "max_s": 0.2},
            "batch": {"max_records": 20, "linger_ms": 20}}]})
        fmt = CoffeeMekFormat(config, config.simulation.seed)
        topics = [config.kafka.topics.events, *fmt.cycle_topics.values()]
        async with running_service(config, environ={"CLOUD_KEY": API_KEY}) as service:
            sink = service.targets[0]
            await produce(kafka_bootstrap, config.kafka.topics.orders, orders(lots, unique, seed=9))
            async with Reader(kafka_bootstrap, topics) as reader:
                await reader.read_until(
                    lambda c: len({e["lot_code"] for e in c.json(topics[0]) if e["event_type"] in FINAL}) == lots,
                    60, "every lot finished")
            await wait_for(lambda: len(service.outbox) == 0 and len(sink) == 0 and sink.http.state == "idle"
                           and sink.faults.held == 0, 60, "the sink drained")
            async with Reader(kafka_bootstrap, topics) as reader:
                collected = await reader.read_all()
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
                    health = await response.json()
                async with http.get(f"http://127.0.0.1:{service.http_port}/metrics") as response:
                    metrics = await response.text()
    on_kafka = published_ids(body for topic in topics for body in collected.json(topic))
    refused = api.requests[REFUSED]
    assert refused.reply.status == 400
    refused_ids = {event_id(item) for item in refused.items()}
    assert len(refused_ids) == 20
    assert all(r.body != refused.body for r in api.requests[REFUSED + 1:]), "a 4xx batch was sent again"
    delivered = Delivered([item for request in api.delivered() for item in _items(request)])
    assert delivered.ids == on_kafka - refused_ids
    assert delivered.out_of_order() == []
    failed = [r for r in api.requests if r.reply.status >= 500 or r.reply.status in (408, 429) or r.reply.hang_s]
    (view,) = health["http_sinks"]["targets"]
    assert view["retries"] == len(failed) >= 10
    assert view["records_rejected"] == 20
    assert view["last_rejection"]["status"] == 400
    assert view["records_sent"] == len(delivered.received)
    assert all(r.headers["X-API-Key"] == API_KEY and r.path == "/ingest" for r in api.requests)
    assert API_KEY not in str(health) and API_KEY not in metrics
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    (retries,) = families["factorysim_http_sink_retries"].samples
    assert retries.value == len(failed)


def _items(request: ReceivedRequest) -> list[bytes]:
    """The request's records as JSON texts."""
    return [orjson.dumps(item) for item in request.items()]


async def test_delivery_commands_over_http_set_faults_and_cut_the_link_and_health_says_so(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    async with HttpReceiver() as api:
        config = service_config(default_yaml, kafka_bootstrap, unique, **{"http_sinks": [
            {"name": "cloud", "url": api.url, "path": "/ingest"}]})
        async with running_service(config) as service, \
                aiohttp.ClientSession(headers=control_headers(service)) as http:
            base = f"http://127.0.0.1:{service.http_port}"

            async def call(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                async with http.post(base + path, json=body) as response:
                    return response.status, await response.json()

            async def health() -> dict[str, Any]:
                async with http.get(f"{base}/health") as response:
                    body: dict[str, Any] = await response.json()
                    return body

            status, answer = await call("/delivery/faults", {"target": "cloud", "drop": 0.5,
                                                             "delay": {"fraction": 0.1, "max_s": 2}})
            assert (status, answer) == (200, {"command": "delivery_faults",
                                              "targets": {"cloud": "drop 0.5, delay 0.1 by 1-2 s"}})
            view = await health()
            assert view["delivery"]["faults"] == {"cloud": "drop 0.5, delay 0.1 by 1-2 s"}
            assert any("DELIVERY FAULTS ON cloud" in w for w in view["delivery"]["warnings"])
            assert view["http_sinks"]["targets"][0]["faults"]["drop"] == 0.5
            status, answer = await call("/plant/network_outage", {"value": True, "target": "cloud"})
            assert (status, answer["targets"]) == (200, ["cloud"])
            view = await health()
            assert view["delivery"]["network_outage"] == {"cloud": "command"}
            assert view["http_sinks"]["targets"][0]["outage"]["active"] is True
            status, answer = await call("/plant/network_outage", {"value": True, "target": "nowhere"})
            assert (status, answer["error"]) == (400, "unknown_target")
            assert "cloud" in answer["detail"]
            assert (await call("/plant/network_outage", {"value": False}))[0] == 200
            assert (await call("/delivery/faults", {}))[0] == 200  # all off
            view = await health()
            assert view["delivery"] == {"network_outage": {}, "faults": {}, "warnings": []}
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
    counted = {(s.labels["command"], s.labels["outcome"]): s.value
               for family in text_string_to_metric_families(metrics) for s in family.samples
               if s.name == "factorysim_commands_total"}
    assert counted == {("delivery_faults", "accepted"): 2, ("network_outage", "accepted"): 2,
                       ("network_outage", "rejected"): 1}
