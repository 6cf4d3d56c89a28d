"""Demo mode: feed generated lots to the orders topic through Kafka and show a live summary.

The feeder sends at the configured arrival rate scaled by the simulation speed (the first lot
at once), through the same topic and parser as any other producer.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, TextIO

from aiokafka import AIOKafkaProducer

from simulator.adapters.kafka_options import client_options
from simulator.model.arrivals import OrderGenerator, mix_with
from simulator.model.randomness import stream
from simulator.orders import order_to_json
from simulator.progress import human_duration
from simulator.reporting.summary import pool_utilization

if TYPE_CHECKING:
    from simulator.runtime.app import Service

MAX_DEMO_RATE_PER_S = 200.0


async def feed_orders(service: Service) -> None:
    config = service.config
    arrivals = config.arrivals
    mix = arrivals.location_mix or dict.fromkeys(config.locations, 1.0)
    generator = OrderGenerator(arrivals, mix_with(mix, config.location_of),
                               stream(service.sim.seed, "demo", service.instance),
                               code_prefix=f"D-{service.instance[:6]}")
    producer = AIOKafkaProducer(**client_options(config.kafka, service.bootstrap_servers, service.environ),
                                linger_ms=5, enable_idempotence=False)
    await producer.start()
    try:
        first = True
        for gap, order in generator:
            speed = service.driver.speed
            if not first:
                wall_gap = gap / speed if speed is not None else 1.0 / MAX_DEMO_RATE_PER_S
                await asyncio.sleep(max(wall_gap, 1.0 / MAX_DEMO_RATE_PER_S))
            first = False
            await producer.send(config.kafka.topics.orders, order_to_json(order), key=order.lot_code.encode())
    finally:
        await producer.stop()


async def console_summary(service: Service, out: TextIO | None = None, interval_s: float = 2.0) -> None:
    """A one-screen summary, redrawn in place on a terminal, a line block per interval otherwise."""
    stream_out = out or sys.stdout
    tty = stream_out.isatty()
    last = (time.monotonic(), 0, 0)
    rates = (0.0, 0.0)
    try:
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            sent = service.publisher.sent if service.publisher else 0
            completed = service.sim.stats.completed
            rates = ((sent - last[1]) / max(now - last[0], 1e-9), (completed - last[2]) / max(now - last[0], 1e-9))
            last = (now, sent, completed)
            text = render_summary(service, *rates)
            stream_out.write(("\x1b[H\x1b[2J" + text + "\n") if tty else (text + "\n\n"))
            stream_out.flush()
    finally:  # the final state, once, when the service stops
        stream_out.write(render_summary(service, *rates) + "\n")
        stream_out.flush()


def render_summary(service: Service, msgs_per_s: float, lots_per_s: float) -> str:
    sim = service.sim
    stats = sim.stats
    health = service.health()
    lines = [
        f"factorysim  {health['status']}  sim {sim.wall_time():%Y-%m-%d %H:%M} "
        f"(+{human_duration(sim.now)})  speed {health['simulation']['speed']}  Kafka {service.bootstrap_servers}"
        f"{'' if service.kafka_connected else ' (UNREACHABLE)'}",
        f"lots: {stats.received} received, {stats.in_progress} in progress, {stats.completed} completed, "
        f"{stats.scrapped} scrapped   {lots_per_s:.2f} lots/s   {msgs_per_s:,.0f} msgs/s",
        "",
        f"{'stage':<14}" + "".join(f"{loc:>22}" for loc in sim.config.locations),
    ]
    now = sim.now
    for plan in sim.plant.stages:
        cells = []
        for loc in sim.config.locations:
            pool = sim.plant.pool(loc, plan.machine_type)
            busy = sum(1 for m in pool.machines if m.current_lot is not None)
            cells.append(f"{busy}/{len(pool.machines)} busy, {pool.queue_length:>3} waiting")
        lines.append(f"{plan.name:<14}" + "".join(f"{c:>22}" for c in cells))
    lines.append("")
    util = []
    for loc in sim.config.locations:
        running_share, _ = pool_utilization([m for p in sim.plant.pools_at(loc) for m in p.machines], now)
        util.append(f"{loc} {running_share:.0%}")
    lines.append("utilisation: " + "   ".join(util))
    lines.append(f"dead-lettered: {service.intake.dead_lettered if service.intake else 0}   "
                 f"health: http://127.0.0.1:{service.http_port}/health   Ctrl-C stops")
    return "\n".join(lines)
