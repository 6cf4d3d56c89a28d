"""Runtime commands over HTTP against the real service on a real broker: block and repair show in
telemetry, lot events and /machines; malformed commands get 400; the bearer token guards commands
but not the read-only endpoints; pause, resume and speed drive the driver."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.adapters.http import HttpServer
from simulator.errors import ConfigError
from simulator.programs.service import Service

from harness.service import Reader, control_headers, produce, running_service, service_config, wait_for

MACHINE = "Italia-fresa_cnc-01"  # the first free milling machine in Italia takes the first Italian lot
TOKEN = "s3cret-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def lot_order(code: str) -> bytes:
    return f'{{"lot_code": "{code}", "customer": "Bar Sport", "quantity": 120, "location": "Italia"}}'.encode()


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body, data=raw, headers=headers) as response:
        return response.status, await response.json()


async def test_block_and_repair_show_in_telemetry_lot_events_and_machine_view(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "simulation.speed": 60, "disruptions.block_probability": 0.0,
        "machine_types": {"fresa_cnc": {"sample_interval_s": 20}}})
    topics = config.kafka.topics
    samples, cycles = f"{topics.telemetry_prefix}.fresa_cnc.samples", f"{topics.telemetry_prefix}.fresa_cnc"
    lot = f"{unique}-lot"
    async with running_service(config) as service, \
            aiohttp.ClientSession(headers=control_headers(service)) as http:
        base = f"http://127.0.0.1:{service.http_port}"
        machine = service.sim.plant.machines[MACHINE]
        await produce(kafka_bootstrap, topics.orders, [lot_order(lot)])
        await wait_for(lambda: machine.current_lot is not None and machine.in_work, 30, "the lot on the machine")

        status, blocked = await call(http, "POST", f"{base}/machines/{MACHINE}/block", {"reason": "jam by hand"})
        assert status == 200, blocked
        assert blocked["state"] == "blocked"
        assert blocked["lot"] == lot
        assert blocked["block"]["cause"] == "command"
        status, anomaly = await call(http, "POST", f"{base}/machines/{MACHINE}/anomaly",
                                     {"type": "bearing_fault", "severity": 2, "duration_s": 600})
        assert status == 200, anomaly
        status, view = await call(http, "GET", f"{base}/machines/{MACHINE}")
        assert status == 200
        assert view["state"] == "blocked"
        assert view["blocked"] is True
        assert view["current_lot"] == lot
        assert view["block"]["reason"] == "jam by hand"
        assert view["block"]["cause"] == "command"
        assert view["block"]["until_s"] is None
        assert view["anomaly"]["type"] == "bearing_fault"
        assert view["anomaly"]["severity"] == 2.0
        assert view["anomaly"]["until_s"] == pytest.approx(anomaly["anomaly"]["until_s"])

        async with Reader(kafka_bootstrap, [topics.events, samples, cycles]) as reader:
            def blocked_sample(c: Any) -> bool:
                return any(m["id_macchina"] == MACHINE and m["stato"] == "bloccata" for m in c.json(samples))

            collected = await reader.read_until(blocked_sample, 30, "a sample of the blocked machine")
            sample = next(m for m in collected.json(samples)
                          if m["id_macchina"] == MACHINE and m["stato"] == "bloccata")
            assert sample["blocco_macchina"] is True
            assert sample["motivo_blocco"] == "jam by hand"
            assert sample["allarmi_utente"] == "BLOCK: jam by hand"
            assert sample["codice_lotto"] == lot

            status, repaired = await call(http, "POST", f"{base}/machines/{MACHINE}/repair")
            assert status == 200, repaired
            assert repaired["repaired"] == "command"
            assert repaired["state"] == "running"
            status, view = await call(http, "GET", f"{base}/machines/{MACHINE}")
            assert view["state"] == "running"
            assert view["block"] is None
            status, _ = await call(http, "PUT", f"{base}/simulation/speed", {"speed": 3600})
            assert status == 200

            def completed(c: Any) -> bool:
                return any(e["event_type"] == "lot.completed" and e["lot_code"] == lot for e in c.json(topics.events))

            collected = await reader.read_until(completed, 30, "the lot completed")
        events = [e for e in collected.json(topics.events) if e["machine_id"] == MACHINE or e["lot_code"] == lot]
        kinds = [(e["event_type"], e["cause"], e["stage"]) for e in events if e["machine_id"] == MACHINE]
        assert kinds[:4] == [("stage.started", None, "fresa_cnc"), ("machine.blocked", "command", "fresa_cnc"),
                             ("machine.repaired", "command", "fresa_cnc"), ("stage.completed", None, "fresa_cnc")]
        block_event = next(e for e in events if e["event_type"] == "machine.blocked")
        assert (block_event["lot_code"], block_event["lot_state"], block_event["reason"]) == (
            lot, "BLOCKED", "jam by hand")
        cycle = next(m for m in collected.json(cycles) if m["codice_lotto"] == lot)
        assert cycle["blocco_macchina"] is True
        assert cycle["motivo_blocco"] == "jam by hand"
        assert cycle["durata_blocco_min"] > 0
        assert "jam by hand" in cycle["allarmi_utente"]
        async with http.get(f"{base}/metrics") as response:
            metrics = {(s.labels.get("command"), s.labels.get("outcome")): s.value
                       for family in text_string_to_metric_families(await response.text())
                       for s in family.samples if s.name == "factorysim_commands_total"
                       and s.labels.get("source") == "http"}
        assert metrics[("block", "accepted")] == 1
        assert metrics[("repair", "accepted")] == 1


async def test_malformed_and_inapplicable_commands_get_400_with_a_reason(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 60})
    async with running_service(config) as service, \
            aiohttp.ClientSession(headers=control_headers(service)) as http:
        base = f"http://127.0.0.1:{service.http_port}"
        cases: list[tuple[str, str, Any, bytes | None, int, str]] = [
            ("POST", f"/machines/{MACHINE}/block", None, b"{not json", 400, "not_json"),
            ("POST", f"/machines/{MACHINE}/block", None, b"[1, 2]", 400, "not_object"),
            ("POST", f"/machines/{MACHINE}/block", {"duration_s": "long"}, None, 400, "invalid_field"),
            ("POST", f"/machines/{MACHINE}/block", {"duration_s": -10}, None, 400, "invalid_duration"),
            ("POST", f"/machines/{MACHINE}/block", {"resaon": "typo"}, None, 400, "unknown_field"),
            ("POST", f"/machines/{MACHINE}/block", {"machine_id": "Vietnam-test-01"}, None, 400, "invalid_field"),
            ("POST", f"/machines/{MACHINE}/repair", None, None, 400, "not_blocked"),
            ("POST", f"/machines/{MACHINE}/anomaly", {"type": "belt_slip"}, None, 400, "unknown_anomaly"),
            ("POST", f"/machines/{MACHINE}/anomaly", {"severity": 2}, None, 400, "missing_field"),
            ("POST", f"/machines/{MACHINE}/anomaly", {"type": "energy_spike", "severity": 9}, None, 400,
             "invalid_severity"),
            ("PUT", "/simulation/speed", {"speed": -1}, None, 400, "invalid_field"),
            ("PUT", "/simulation/speed", {"speed": "fast"}, None, 400, "invalid_field"),
            ("PUT", "/simulation/speed", None, None, 400, "missing_field"),
            ("POST", "/plant/network_outage", {"value": True}, None, 400, "no_targets"),
            ("POST", "/plant/network_outage", {"value": "yes"}, None, 400, "invalid_field"),
            ("POST", "/delivery/faults", {"drop": 2}, None, 400, "invalid_field"),
            ("POST", "/delivery/faults", {"delay": {"fraction": 0.1, "min_s": 9, "max_s": 1}}, None, 400,
             "invalid_field"),
            ("POST", "/plant/bearing_fault", None, None, 400, "missing_field"),
            ("POST", "/machines/Atlantis-lathe-01/block", None, None, 404, "unknown_machine"),
            ("DELETE", "/machines/Atlantis-lathe-01/anomaly", None, None, 404, "unknown_machine"),
        ]
        for method, path, body, raw, expected, reason in cases:
            status, answer = await call(http, method, base + path, body, raw=raw)
            assert (status, answer["error"]) == (expected, reason), (method, path, body, raw, answer)
            assert answer["detail"]
        status, answer = await call(http, "POST", f"{base}/machines/{MACHINE}/anomaly", {"type": "belt_slip"})
        assert "bearing_fault, energy_spike" in answer["detail"]  # names the allowed anomalies
        assert service.sim.plant.machines[MACHINE].state == "idle"  # nothing was applied
        assert service.sim.plant.machines[MACHINE].anomaly is None
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
        rejected = sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                       if s.name == "factorysim_commands_total" and s.labels.get("outcome") == "rejected")
        assert rejected == len(cases) + 1


async def test_plant_wide_switches_over_http_and_network_outage_without_targets_refused_and_counted(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 60})
    async with running_service(config) as service, \
            aiohttp.ClientSession(headers=control_headers(service)) as http:
        base = f"http://127.0.0.1:{service.http_port}"
        machines = service.sim.plant.machines
        status, answer = await call(http, "POST", f"{base}/plant/bearing_fault", {"value": True})
        assert status == 200, answer
        assert answer == {"command": "bearing_fault", "anomaly": "bearing_fault", "value": True,
                          "machines": sorted(machines)}
        assert {m.anomaly for m in machines.values()} == {"bearing_fault"}
        status, view = await call(http, "GET", f"{base}/machines/{MACHINE}")
        assert view["anomaly"] == {"type": "bearing_fault", "severity": 1.0, "until_s": None}
        status, answer = await call(http, "POST", f"{base}/plant/energy_spike",
                                    {"value": True, "machine_id": MACHINE, "duration_s": 600})
        assert (status, answer["machines"]) == (200, [MACHINE])
        status, answer = await call(http, "POST", f"{base}/plant/bearing_fault", {"value": False})
        assert (status, answer["value"]) == (200, False)
        assert MACHINE not in answer["machines"]  # its bearing fault was replaced by the energy spike
        assert {m.anomaly for mid, m in machines.items() if mid != MACHINE} == {None}

        status, answer = await call(http, "POST", f"{base}/plant/network_outage", {"value": True})
        assert (status, answer["error"]) == (400, "no_targets")
        assert "MQTT targets and HTTP sinks" in answer["detail"]
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
        counted = {(s.labels["command"], s.labels["outcome"]): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples
                   if s.name == "factorysim_commands_total" and s.labels.get("source") == "http"}
        assert counted == {("bearing_fault", "accepted"): 2, ("energy_spike", "accepted"): 1,
                           ("network_outage", "rejected"): 1}


async def test_token_guards_commands_only_and_pause_resume_speed_drive_the_driver(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "simulation.speed": 60, "http.token_env": "FACTORYSIM_TEST_HTTP_TOKEN"})
    async with running_service(config, environ={"FACTORYSIM_TEST_HTTP_TOKEN": TOKEN}) as service, \
            aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{service.http_port}"
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}):
            async with http.post(f"{base}/simulation/pause", headers=headers) as response:
                assert response.status == 401, headers
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert (await response.json())["error"] == "unauthorized"
        assert not service.driver.paused
        for path in ("/health", "/health/live", "/machines", f"/machines/{MACHINE}", "/metrics"):
            async with http.get(base + path) as response:
                assert response.status == 200, path

        async def health() -> dict[str, Any]:
            status, body = await call(http, "GET", f"{base}/health")
            assert status == 200
            simulation: dict[str, Any] = body["simulation"]
            return simulation

        status, answer = await call(http, "POST", f"{base}/simulation/pause", headers=AUTH)
        assert (status, answer["paused"]) == (200, True)
        assert (await health())["paused"] is True
        async with http.get(f"{base}/health/ready") as response:
            assert response.status == 503  # paused: not ready, and it says why
            assert (await response.json())["reasons"] == ["the simulation is paused (POST /simulation/resume)"]
        lot = f"{unique}-lot"
        paused_at = service.sim.now
        await produce(kafka_bootstrap, config.kafka.topics.orders, [lot_order(lot)])
        await wait_for(lambda: lot in service.sim.lots, 30, "the lot admitted while paused")
        admitted = service.sim.lots[lot]
        assert str(admitted.state) == "PROCESSING"  # it got a free machine at the instant it was admitted …
        assert service.sim.now == paused_at == admitted.started  # … and simulated time stands still
        status, answer = await call(http, "POST", f"{base}/simulation/resume", headers=AUTH)
        assert (status, answer["paused"]) == (200, False)
        assert (await health())["paused"] is False
        await wait_for(lambda: service.driver.stamp() > paused_at, 10, "simulated time to go on after resume")
        status, answer = await call(http, "PUT", f"{base}/simulation/speed", {"speed": 3600}, headers=AUTH)
        assert (status, answer["speed"]) == (200, 3600.0)
        assert (await health())["speed"] == 3600.0
        assert service.driver.speed == 3600.0
        status, answer = await call(http, "PUT", f"{base}/simulation/speed", {"speed": "max"}, headers=AUTH)
        assert (status, answer["speed"]) == (200, "max")
        assert (await health())["speed"] == "max"
        assert service.driver.speed is None


async def test_token_from_a_file_and_a_missing_token_fails_at_start(
        default_yaml: dict[str, Any], tmp_path: Path, unique: str) -> None:
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n", encoding="utf-8")
    service = Service(service_config(default_yaml, "127.0.0.1:9", unique, **{"http.token_file": str(secret)}),
                      environ={})
    server = HttpServer(service, "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{server.port}/simulation/pause"
            async with http.post(url) as response:
                assert response.status == 401
            async with http.post(url, headers=AUTH) as response:
                assert response.status == 200
        assert service.driver.paused
    finally:
        await server.stop()
    missing = Service(service_config(default_yaml, "127.0.0.1:9", unique, **{"http.token_env": "NO_SUCH_TOKEN"}),
                      environ={})
    with pytest.raises(ConfigError, match="NO_SUCH_TOKEN"):
        HttpServer(missing, "127.0.0.1", 0)


async def test_commands_need_a_token_by_default_one_is_generated_printed_once_and_written_privately(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    token_file = tmp_path / "state" / "http-token"
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"http.generated_token_file": str(token_file)})
    caplog.set_level(logging.INFO)
    async with running_service(config) as service, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{service.http_port}"
        token = token_file.read_text(encoding="utf-8").strip()
        assert len(token) >= 40
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # only the service's user reads it
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        printed = [r.getMessage() for r in caplog.records if token in r.getMessage()]
        assert len(printed) == 1  # printed once, with a ready-to-paste example
        example = f"curl -X POST -H 'Authorization: Bearer {token}' http://127.0.0.1:{service.http_port}/simulation/pause"
        assert example in printed[0]
        assert str(token_file) in printed[0]
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token[:-1]}"}):
            async with http.post(f"{base}/simulation/pause", headers=headers) as response:
                assert response.status == 401
                body = await response.json()
                assert "printed once in its log" in body["detail"]  # says how to get one
        assert not service.driver.paused
        async with http.post(f"{base}/simulation/pause", headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200
        assert service.driver.paused
    assert not token_file.exists()  # the token ends with the service


async def test_open_controls_is_an_explicit_opt_out(default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"http.open_controls": True})
    async with running_service(config) as service, aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{service.http_port}/simulation/pause") as response:
            assert response.status == 200
        assert service.driver.paused
    assert any("http.open_controls is true" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    with pytest.raises(ConfigError, match="open_controls: true opens the commands to everyone"):
        service_config(default_yaml, kafka_bootstrap, unique,
                       **{"http.open_controls": True, "http.token_env": "FACTORYSIM_TEST_HTTP_TOKEN"})


async def test_extreme_values_are_400_with_the_bound_and_the_service_lives_on(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    # samples on every machine: the configuration that once let one command build unbounded work
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "simulation.speed": 60, "telemetry.sample_interval_s": 1})
    async with running_service(config) as service, \
            aiohttp.ClientSession(headers=control_headers(service)) as http:
        base = f"http://127.0.0.1:{service.http_port}"
        cases: list[tuple[str, str, Any, str, str]] = [
            ("POST", f"/machines/{MACHINE}/block", {"duration_s": 1e14}, "invalid_duration", "315360000"),
            ("POST", f"/machines/{MACHINE}/block", {"duration_s": 0}, "invalid_duration", "more than 0"),
            ("POST", f"/machines/{MACHINE}/block", {"reason": "\x1b[31mred\x1b[0m"}, "invalid_field",
             "control characters"),
            ("POST", f"/machines/{MACHINE}/block", {"reason": "line\nbreak"}, "invalid_field", "control characters"),
            ("POST", f"/machines/{MACHINE}/anomaly", {"type": "bearing_fault", "duration_s": 1e300},
             "invalid_duration", "315360000"),
            ("POST", f"/machines/{MACHINE}/anomaly", {"type": "bearing_fault", "severity": 1e308},
             "invalid_severity", "at most 5"),
            ("PUT", "/simulation/speed", {"speed": 1e308}, "invalid_field", "1,000,000"),
            ("PUT", "/simulation/speed", {"speed": 1e9}, "invalid_field", "1,000,000"),
            ("PUT", "/simulation/speed", {"speed": 1e-9}, "invalid_field", "0.001"),
        ]
        for method, path, body, reason, bound in cases:
            status, answer = await call(http, method, base + path, body)
            assert (status, answer["error"]) == (400, reason), (path, body, answer)
            assert bound in answer["detail"], answer
        assert service.driver.speed == 60.0
        assert service.sim.plant.machines[MACHINE].state == "idle"

        # the highest speed allowed, then a block: the service keeps answering and its memory stays bounded
        status, _ = await call(http, "PUT", f"{base}/simulation/speed", {"speed": 1_000_000})
        assert status == 200
        rss_before = _rss_mb()
        status, answer = await call(http, "POST", f"{base}/machines/{MACHINE}/block", {"duration_s": 315_360_000})
        assert status == 200, answer
        slowest = 0.0
        for _ in range(40):
            started = time.monotonic()
            status, health = await call(http, "GET", f"{base}/health")
            slowest = max(slowest, time.monotonic() - started)
            assert status == 200, health
            assert health["simulation"]["outbox_depth"] <= service.outbox.capacity + 1000
            await asyncio.sleep(0.05)
        assert slowest < 1.0
        assert _rss_mb() - rss_before < 300
        assert service.sim.now > 3600  # it did simulate, fast


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def test_a_malformed_request_is_one_line_in_the_log_not_a_traceback(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, caplog: pytest.LogCaptureFixture) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    caplog.set_level(logging.INFO)
    async with running_service(config) as service, aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{service.http_port}/" + "a" * 10_000) as response:
            assert response.status == 400
        async with http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
            assert response.status == 200
    server_records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelno for r in server_records] == [logging.INFO]
    assert "malformed HTTP request" in server_records[0].getMessage()
    assert server_records[0].exc_info is None
