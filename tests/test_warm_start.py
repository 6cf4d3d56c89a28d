"""The warm start (``simulation.warm_up``): a new run first simulates the warm-up as fast as it can,
publishes nothing of it, and goes live with a busy plant whose calendar shows the wall clock; the
order intake and model commands wait for its end; a restart continues the run without publishing
the warm-up again."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import aiohttp

from simulator.config.loader import load
from simulator.config.plant import MAX_WARM_UP_S
from simulator.model.machine import MachineState

from harness.service import Reader, orders, produce, running_service, service_config, wait_for

WARM_UP_S = 7200.0
STAGE_TOPICS = ("fresa_cnc", "tornio", "assemblaggio", "test")


async def test_a_new_run_goes_live_warm_busy_and_on_the_wall_clock(default_yaml: dict[str, Any],
                                                                  kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique,
                            **{"simulation.speed": 1, "simulation.warm_up": "2h"})
    topics = config.kafka.topics
    wanted = [topics.events, *(f"{topics.telemetry_prefix}.{stage}" for stage in STAGE_TOPICS)]
    async with running_service(config, start_now=True) as service:
        await wait_for(lambda: service.ready, 30, "the end of the warm-up")
        went_live = dt.datetime.now(dt.UTC)
        assert service.sim.now >= WARM_UP_S
        behind = went_live - service.sim.calendar_time()
        assert dt.timedelta(0) <= behind < dt.timedelta(seconds=2)  # the warm-up ended at the wall clock
        busy = Counter(m.state for m in service.sim.plant.machines.values())
        assert busy[MachineState.RUNNING] + busy[MachineState.BLOCKED] >= 3, busy  # not an empty, idle plant
        assert service.sim.stats.in_progress > 0
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
            simulation = (await response.json())["simulation"]
        assert (simulation["warm_up_s"], simulation["warming_up"]) == (WARM_UP_S, False)
        await produce(kafka_bootstrap, topics.orders, orders(3, unique))  # the intake runs after the warm-up
        async with Reader(kafka_bootstrap, wanted) as reader:
            collected = await reader.read_until(
                lambda c: {e["lot_code"] for e in c.json(topics.events) if e["event_type"] == "lot.received"}
                >= {f"{unique}-{i}" for i in range(3)}, 60, "the new orders received")
    published = [m for topic in wanted for m in collected.json(topic)]
    assert published
    assert min(m["sim_time_s"] for m in published) >= WARM_UP_S  # nothing of the warm-up was published


async def test_a_restart_continues_the_warm_run_without_publishing_the_warm_up(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique,
                            **{"simulation.speed": 600, "simulation.warm_up": "2h"})
    topics = config.kafka.topics
    async with Reader(kafka_bootstrap, [topics.events]) as reader:
        async with running_service(config) as first:
            await wait_for(lambda: first.ready, 30, "the end of the warm-up")
            run_id = first.run_id
            await reader.read_until(lambda c: len(c.of(topics.events)) >= 10, 60, "lot events of the first process")
        published = len(reader.collected.of(topics.events))
        async with running_service(config) as second:
            await wait_for(lambda: second.ready, 60, "the continued run live")
            assert second.run_id == run_id
            assert "warming up" not in " ".join(second.not_ready_because())
            collected = await reader.read_until(lambda c: len(c.of(topics.events)) >= published + 10, 60,
                                                "lot events of the second process")
    events = collected.json(topics.events)
    assert min(e["sim_time_s"] for e in events) >= WARM_UP_S  # the replayed warm-up was hidden again
    first_seen: dict[str, dict[str, Any]] = {}
    for event in events:  # a record published again (at least once) is the same message
        assert first_seen.setdefault(event["event_id"], event) == event


def test_auto_is_twice_the_route_plus_a_gap_and_bounded() -> None:
    config = load("config.yaml", environ={}, overrides={"simulation.warm_up": "auto"})
    assert 0 < config.warm_up_s <= MAX_WARM_UP_S
    assert config.warm_up_s % 60 == 0
    slower = load("config.yaml", environ={}, overrides={"simulation.warm_up": "auto", "arrivals.rate_per_hour": 0.004})
    assert slower.warm_up_s == MAX_WARM_UP_S  # one gap of 250 h would be more than the bound
    assert load("config.yaml", environ={}, overrides={"simulation.warm_up": "90m"}).warm_up_s == 5400
