"""The HTTP API described and browsable, and the earlier simulators' HTTP surface: the OpenAPI document
passes openapi-spec-validator; /docs renders it in a real headless Chromium (loading nothing from
elsewhere) and sends requests from it; the EnMS simulator's /simulator/... routes map onto pause,
resume, block, repair and anomalies behind the bearer token; /health carries MokaMetrics' top-level
fields beside the nested ones."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import aiohttp
import jsonschema_rs
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from simulator.adapters import openapi
from simulator.model.machine import MachineState

from harness.dependencies import require_executable
from harness.service import control_headers, running_service, service_config, wait_for

MACHINE = "Italia-fresa_cnc-02"
OTHER = "Vietnam-tornio-01"


def schema_validator(name: str) -> Any:
    """A validator of the document's component schema ``name`` (its references resolved in the document)."""
    components = openapi.document()["components"]
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}", "components": components})


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


def test_the_document_passes_openapi_spec_validator() -> None:
    document = openapi.document(machine_ids=[MACHINE, OTHER])
    validate(document)  # raises OpenAPIValidationError naming the place
    paths = document["paths"]
    assert paths["/docs"]["get"]["responses"]["200"]["content"] == {"text/html": {"schema": {"type": "string"}}}
    for path in ("/simulator/start", "/simulator/stop"):
        assert paths[path]["post"]["security"] == [{openapi.SECURITY_SCHEME: []}]
    for method in ("post", "delete"):
        alias = paths["/simulator/machines/{machine_id}/anomaly"][method]
        assert alias["security"] == [{openapi.SECURITY_SCHEME: []}]
        assert alias["requestBody"] == paths["/machines/{machine_id}/anomaly"][method]["requestBody"]
    assert paths["/simulator/status"]["get"]["security"] == []
    ids = [op["operationId"] for item in paths.values() for m, op in item.items() if m != "parameters"]
    assert len(ids) == len(set(ids))
    health = document["components"]["schemas"]["Health"]
    assert {"status", "timestamp", "uptime_seconds", "kafka_broker"} <= set(health["required"])


async def test_health_carries_the_mokametrics_top_level_fields(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 60})
    async with running_service(config) as service, aiohttp.ClientSession() as http:
        before = dt.datetime.now(dt.UTC)
        status, health = await call(http, "GET", f"http://127.0.0.1:{service.http_port}/health")
        after = dt.datetime.now(dt.UTC)
    assert status == 200, health
    assert health["status"] == "healthy"
    assert health["timestamp"].endswith("Z")
    assert before - dt.timedelta(milliseconds=1) <= dt.datetime.fromisoformat(health["timestamp"]) <= after
    assert health["kafka_broker"] == health["kafka"]["broker"] == kafka_bootstrap
    assert health["uptime_seconds"] > 0
    errors = [str(e) for e in schema_validator("Health").iter_errors(health)]
    assert not errors, errors


async def test_the_enms_simulator_routes_map_onto_pause_resume_block_repair_and_anomalies(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 60})
    answer_schema = schema_validator("ControlAnswer")
    async with running_service(config) as service, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{service.http_port}"
        auth = control_headers(service)
        # commands need the token, the views do not
        for method, path in (("POST", "/simulator/start"), ("POST", "/simulator/stop"),
                             ("POST", f"/simulator/machines/{MACHINE}/anomaly"),
                             ("DELETE", f"/simulator/machines/{MACHINE}/anomaly")):
            status, refused = await call(http, method, base + path, {"anomaly_type": "bearing_fault"})
            assert (status, refused["error"]) == (401, "unauthorized"), path
        assert not service.driver.paused
        status, state = await call(http, "GET", f"{base}/simulator/status")
        assert status == 200, state
        assert not [str(e) for e in schema_validator("SimulatorStatus").iter_errors(state)]
        total = len(service.sim.plant.machines)
        assert (state["status"], state["factories_count"], state["machines_count"]) == ("running", 3, total) == (
            "running", 3, 26)
        assert state["configuration"]["enable_anomalies"] is False
        assert state["configuration"]["anomaly_probability"] is None
        assert state["mqtt_connected"] is False and state["mqtt_messages_published"] == 0

        # the whole simulation: stop = pause, start = resume
        status, stopped = await call(http, "POST", f"{base}/simulator/stop", headers=auth)
        assert status == 200, stopped
        assert not list(answer_schema.iter_errors(stopped))
        assert (stopped["success"], stopped["data"]["command"], stopped["data"]["paused"]) == (True, "pause", True)
        assert service.driver.paused
        status, state = await call(http, "GET", f"{base}/simulator/status")
        assert (state["status"], state["paused"]) == ("stopped", True)
        status, started = await call(http, "POST", f"{base}/simulator/start", {}, headers=auth)
        assert (status, started["data"]["command"], started["data"]["paused"]) == (200, "resume", False)
        assert not service.driver.paused

        # machines: stop = block until started again, start = repair
        machine = service.sim.plant.machines[MACHINE]
        status, stopped = await call(http, "POST", f"{base}/simulator/stop", {"machine_ids": [MACHINE]}, headers=auth)
        assert status == 200, stopped
        assert not list(answer_schema.iter_errors(stopped))
        assert stopped["success"] is True
        assert stopped["data"]["command"] is None
        assert stopped["data"]["machines"] == [{"machine_id": MACHINE, "outcome": "stopped", "state": "blocked"}]
        assert stopped["data"]["total_machines"] == total
        assert machine.state == MachineState.BLOCKED and machine.block_reason == "stopped"
        status, view = await call(http, "GET", f"{base}/simulator/machines/{MACHINE}")
        assert status == 200
        assert (view["block"]["reason"], view["block"]["cause"], view["block"]["until_s"]) == (
            "stopped", "command", None)
        status, again = await call(http, "POST", f"{base}/simulator/stop", {"machine_ids": [MACHINE]}, headers=auth)
        assert again["data"]["machines"][0]["outcome"] == "already stopped"
        # an unknown machine: 404 and nothing applied, the known one included
        status, unknown = await call(http, "POST", f"{base}/simulator/start",
                                     {"machine_ids": [MACHINE, "Atlantis-lathe-01"]}, headers=auth)
        assert (status, unknown["error"]) == (404, "unknown_machine")
        assert machine.state == MachineState.BLOCKED
        status, bad = await call(http, "POST", f"{base}/simulator/start", {"machine_ids": "all"}, headers=auth)
        assert (status, bad["error"]) == (400, "invalid_field")
        status, bad = await call(http, "POST", f"{base}/simulator/start", {"machines": [MACHINE]}, headers=auth)
        assert (status, bad["error"]) == (400, "unknown_field")
        status, started = await call(http, "POST", f"{base}/simulator/start",
                                     {"machine_ids": [MACHINE, OTHER]}, headers=auth)
        assert status == 200, started
        assert [(m["machine_id"], m["outcome"]) for m in started["data"]["machines"]] == [
            (MACHINE, "started"), (OTHER, "already running")]
        assert machine.state != MachineState.BLOCKED
        # a factory (plant) by its alias: every machine of it
        status, plant = await call(http, "POST", f"{base}/simulator/stop", {"factory_ids": ["Brazil"]}, headers=auth)
        assert status == 200, plant
        brasile = sorted(mid for mid in service.sim.plant.machines if mid.startswith("Brasile-"))
        assert [m["machine_id"] for m in plant["data"]["machines"]] == brasile
        for entry in plant["data"]["machines"]:  # a machine in planned maintenance cannot be stopped: it says so
            assert entry["outcome"] == "stopped" or entry["error"] in ("in_maintenance", "off_shift", "busy"), entry
        assert plant["success"] == all(m["outcome"] == "stopped" for m in plant["data"]["machines"])
        status, plant = await call(http, "POST", f"{base}/simulator/start", {"factory_ids": ["Brasile"]},
                                   headers=auth)
        assert status == 200 and plant["success"], plant
        assert not any(service.sim.plant.machines[mid].state == MachineState.BLOCKED
                       and service.sim.plant.machines[mid].block_reason == "stopped" for mid in brasile)
        status, bad = await call(http, "POST", f"{base}/simulator/start", {"factory_ids": ["Atlantis"]}, headers=auth)
        assert (status, bad["error"]) == (400, "unknown_factory")

        # the anomaly endpoint with the EnMS simulator's own body
        status, injected = await call(http, "POST", f"{base}/simulator/machines/{OTHER}/anomaly",
                                      {"machine_id": OTHER, "anomaly_type": "bearing_fault",
                                       "duration_seconds": 300, "severity": 1.5}, headers=auth)
        assert status == 200, injected
        assert (injected["anomaly"]["type"], injected["anomaly"]["severity"]) == ("bearing_fault", 1.5)
        status, view = await call(http, "GET", f"{base}/simulator/machines/{OTHER}")
        assert view["anomaly"]["type"] == "bearing_fault"
        status, machines = await call(http, "GET", f"{base}/simulator/machines")
        assert status == 200 and machines[OTHER]["anomaly"]["type"] == "bearing_fault"
        status, cleared = await call(http, "DELETE", f"{base}/simulator/machines/{OTHER}/anomaly", headers=auth)
        assert (status, cleared["cleared"]) == (200, "bearing_fault")

        async with http.get(f"{base}/metrics") as response:
            families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    counted = {(s.labels["command"], s.labels["outcome"]): s.value
               for s in families["factorysim_commands"].samples if s.labels.get("source") == "http"}
    assert counted[("pause", "accepted")] == counted[("resume", "accepted")] == 1
    assert counted[("block", "accepted")] >= 2 and counted[("repair", "accepted")] >= 2
    assert counted[("simulator_stop", "unauthorized")] == counted[("simulator_start", "unauthorized")] == 1


async def test_the_docs_page_renders_every_operation_in_headless_chromium_and_sends_requests(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Any) -> None:
    chromium = require_executable("chromium", "chromium")
    from playwright.async_api import async_playwright, expect

    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 60})
    document = openapi.document()
    operations = [(method, path) for path, item in document["paths"].items() for method in item
                  if method != "parameters"]
    async with running_service(config) as service, async_playwright() as playwright:
        base = f"http://127.0.0.1:{service.http_port}"
        token = control_headers(service)["Authorization"].removeprefix("Bearer ")
        browser = await playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = await browser.new_page()
            requested: list[str] = []
            problems: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            response = await page.goto(f"{base}/docs")
            assert response is not None and response.status == 200
            assert "default-src 'none'" in (await response.all_headers())["content-security-policy"]
            await page.wait_for_selector("details.op")
            shown = await page.eval_on_selector_all(
                "details.op", "nodes => nodes.map(n => [n.querySelector('.method').textContent, "
                              "n.querySelector('.path').textContent])")
            assert sorted(map(tuple, shown)) == sorted(operations)
            assert await page.title() == f"factorysim {document['info']['version']} — HTTP API"
            locked = await page.eval_on_selector_all(
                "details.op", "nodes => nodes.filter(n => n.querySelector('.lock'))"
                              ".map(n => n.querySelector('.path').textContent)")
            assert set(locked) == {p for p, item in document["paths"].items() for m, op in item.items()
                                   if m != "parameters" and op["security"]}

            # the filter narrows the list
            await page.fill("#filter", "post /simulator/start")
            visible = await page.eval_on_selector_all("details.op:not(.hidden) .path", "n => n.map(x => x.textContent)")
            assert visible == ["/simulator/start"]
            await page.fill("#filter", "")

            # a view, sent from the page
            status_op = page.locator("details#simulator_status")
            await status_op.locator("summary").click()
            await status_op.locator("button").click()
            await expect(status_op.locator(".status")).to_have_text("200 OK")
            assert '"machines_count": 26' in (await status_op.locator(".answer").text_content() or "")

            # a command: refused without the token, applied with it
            stop = page.locator("details#simulator_stop")
            await stop.locator("summary").click()
            await stop.locator("button").click()
            await expect(stop.locator(".status")).to_have_text(re.compile(r"^401 "))
            await page.fill("#token", token)
            await stop.locator("button").click()
            await expect(stop.locator(".status")).to_have_text("200 OK")
            await wait_for(lambda: service.driver.paused, 5, "the simulation paused from the page")

            # a machine command with a path parameter and a body
            anomaly = page.locator("details#anomaly")
            await anomaly.locator("summary").click()
            await anomaly.locator("input[data-param='machine_id']").fill(MACHINE)
            await anomaly.locator("textarea").fill('{"type": "energy_spike", "severity": 2}')
            await anomaly.locator("button").click()
            await expect(anomaly.locator(".status")).to_have_text("200 OK")
            assert service.sim.plant.machines[MACHINE].anomaly == "energy_spike"
            await page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
        finally:
            await browser.close()
    # nothing failed but the command sent without the token, on purpose
    assert problems == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
    assert requested and all(url.startswith(base + "/") for url in requested), requested
    assert f"{base}/openapi.json" in requested


async def test_the_docs_page_and_the_document_need_no_token_and_the_page_links_nowhere_else(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    async with running_service(config) as service, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{service.http_port}"
        async with http.get(f"{base}/docs") as response:
            assert (response.status, response.content_type) == (200, "text/html")
            page = await response.text()
        async with http.get(f"{base}/openapi.json") as response:
            assert response.status == 200
            served = await response.json()
    assert page.startswith("<!doctype html>") and 'fetch("openapi.json")' in page
    assert "://" not in page  # no script, style or font from anywhere else
    assert served["paths"].keys() == openapi.document()["paths"].keys()
