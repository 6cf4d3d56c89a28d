"""The statistics line (README "Configuration reference", ``logging.stats_interval_s``): the service
logs one INFO line per interval whose counts agree with the service's own and whose growth and
rates are those since the line before; 0 turns it off."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import re
from typing import Any

import pytest

from simulator.programs.stats_log import Growth, StatsLog

from harness.mosquitto import Mosquitto
from harness.service import running_service, service_config, wait_for

LOGGER = "simulator.programs.stats_log"
LINE = re.compile(
    r"^stats: lots received (?P<received>\d+) \(\+(?P<received_added>\d+)\), completed (?P<completed>\d+) "
    r"\(\+(?P<completed_added>\d+)\), scrapped (?P<scrapped>\d+), in progress (?P<in_progress>\d+); "
    r"Kafka sent (?P<kafka>\d+) \((?P<kafka_rate>[\d.]+)/s\)(?:, not connected)?; "
    r"MQTT local (?P<mqtt>\d+) \((?P<mqtt_rate>[\d.]+)/s\)(?:, (?P<mqtt_state>[a-z]+))?; "
    r"simulated time (?P<sim_time>\S+) \(speed max\), lag (?P<lag>[\d.]+) s$")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_growth_and_rates_are_since_the_previous_line() -> None:
    clock = Clock()
    counts = {"lots": 0, "messages": 0}

    def compose(growth: Growth) -> str:
        return f"lots {growth.added('lots', counts['lots'])}, messages {growth.rate('messages', counts['messages'])}"

    log = StatsLog(30, compose, clock=clock)
    clock.now += 10
    counts.update(lots=3, messages=250)
    assert log.line() == "lots 3 (+3), messages 250 (25.0/s)"  # since the start
    clock.now += 4
    counts.update(lots=5, messages=260)
    assert log.line() == "lots 5 (+2), messages 260 (2.5/s)"
    clock.now += 2
    assert log.line() == "lots 5 (+0), messages 260 (0.0/s)"


async def test_a_failing_line_is_logged_and_the_next_one_comes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    calls = 0

    def compose(growth: Growth) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a view that is not ready")
        return f"line {calls}"

    task = asyncio.get_running_loop().create_task(StatsLog(0.1, compose).run())
    try:
        await wait_for(lambda: any(r.getMessage() == "line 2" for r in caplog.records), 5, "the second line")
    finally:
        task.cancel()
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    found = []
    for record in caplog.records:
        if record.name == LOGGER and record.levelno == logging.INFO:
            match = LINE.match(record.getMessage())
            assert match is not None, record.getMessage()
            found.append(match.groupdict())
    return found


async def test_the_service_logs_its_counts_every_interval(default_yaml: dict[str, Any], kafka_bootstrap: str,
                                                          unique: str, mosquitto: Mosquitto,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    config = service_config(default_yaml, kafka_bootstrap, unique, **{
        "logging.stats_interval_s": 0.3,
        "arrivals.in_service": True,
        "arrivals.rate_per_hour": 20,
        "mqtt.targets": [{"name": "local", "host": mosquitto.host, "port": mosquitto.port, "format": "uns"}],
    })
    async with running_service(config) as service:
        await wait_for(lambda: sum(int(line["received"]) > 0 and int(line["mqtt"]) > 0
                                   for line in _lines(caplog)) >= 3,
                       30, "three statistics lines with lots and MQTT messages")
        stats, sent = service.sim.stats, service.publisher.sent if service.publisher else 0
        lines = _lines(caplog)
    for line in lines:
        received, completed = int(line["received"]), int(line["completed"])
        assert int(line["in_progress"]) == received - completed - int(line["scrapped"])
        assert float(line["lag"]) == 0.0  # as fast as possible: never behind
        dt.datetime.fromisoformat(line["sim_time"])
    for before, after in itertools.pairwise(lines):
        assert int(after["received_added"]) == int(after["received"]) - int(before["received"])
        assert int(after["completed_added"]) == int(after["completed"]) - int(before["completed"])
        assert int(after["kafka"]) >= int(before["kafka"])
        assert (float(after["kafka_rate"]) > 0) == (int(after["kafka"]) > int(before["kafka"]))
        assert (float(after["mqtt_rate"]) > 0) == (int(after["mqtt"]) > int(before["mqtt"]))
        assert after["sim_time"] >= before["sim_time"]
    last = lines[-1]
    assert int(last["received"]) <= stats.received and int(last["completed"]) <= stats.completed
    assert 0 < int(last["kafka"]) <= sent


async def test_interval_zero_turns_the_line_off(default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"logging.stats_interval_s": 0,
                                                                      "arrivals.in_service": True})
    async with running_service(config) as service:
        await wait_for(lambda: service.sim.stats.received > 0, 30, "a lot")
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "stats-log"]
    assert not [r for r in caplog.records if r.name == LOGGER]
