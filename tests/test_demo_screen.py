"""The demo's live screen (``factorysim run --demo``): rates over the last minute, utilisation per
stage and location, log lines kept out of the redrawn screen, one final screen saying the service
stopped, and the lot-sender command that feeds the running service."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

from simulator.programs.demo import Rates, console_summary, render_summary

from harness.service import orders, produce, running_service, service_config, wait_for

CLEAR = "\x1b[H\x1b[2J"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rates_are_over_the_last_minute_not_the_last_two_seconds() -> None:
    rates = Rates()
    assert rates.add(0.0, 0, 0) == (0.0, 0.0)
    for second in range(2, 121, 2):  # one lot finished every 4 s, 100 messages a second
        msgs_per_s, lots_per_min = rates.add(float(second), second * 100, second // 4)
        if second >= 60:
            assert abs(lots_per_min - 15.0) <= 0.6, (second, lots_per_min)  # not 0 or 30 by turns
            assert abs(msgs_per_s - 100.0) < 1e-9


async def test_the_screen_keeps_log_lines_at_its_bottom_and_draws_the_final_state_once(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 600})
    terminal = Terminal()
    root = logging.getLogger()
    console = logging.StreamHandler(terminal)  # the console handler the command line installs
    root.addHandler(console)
    try:
        async with running_service(config) as service:
            await produce(kafka_bootstrap, config.kafka.topics.orders, orders(5, unique, seed=2))
            await wait_for(lambda: service.sim.stats.received == 5, 30, "the orders admitted")
            screen = asyncio.create_task(console_summary(service, terminal, interval_s=0.05))
            await wait_for(lambda: terminal.getvalue().count(CLEAR) >= 2, 10, "two screens drawn")
            logging.getLogger("simulator.test").warning("a line logged while the screen is up")
            await wait_for(lambda: "a line logged" in terminal.getvalue(), 10, "the log line on the screen")
            text = render_summary(service, 0.0, 0.0)
            assert f"--broker {service.bootstrap_servers} --topic {config.kafka.topics.orders}" in text
            assert "lot-sender" in text
            service.request_stop()
            await wait_for(lambda: service.state == "stopped", 60, "the service stopped")
            screen.cancel()
            await asyncio.gather(screen, return_exceptions=True)
        assert root.handlers.count(console) == 1  # the console handler is back
    finally:
        root.removeHandler(console)
    screens = terminal.getvalue().split(CLEAR)
    logged = terminal.getvalue().split("a line logged")
    # the log line appears only inside screens, under "recent log:", never written between them
    assert all("recent log:" in part.rsplit(CLEAR, 1)[-1] for part in logged[:-1])
    last = screens[-1]
    assert "factorysim  stopped" in last and "unhealthy" not in last
    assert last.count("factorysim  ") == 1  # the final state once, in place of the last screen
    assert "busy" in last and "%" in last.split("busy", 1)[1].split("\n", 1)[0]  # utilisation per pool
