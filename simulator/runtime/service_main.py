"""Run the service in the foreground until SIGTERM/SIGINT (``factorysim run``)."""

from __future__ import annotations

import asyncio

from simulator.config_schema import Config
from simulator.runtime.app import Service
from simulator.runtime.demo import console_summary, feed_orders


def run_service(config: Config, *, demo: bool = False) -> int:
    async def main() -> None:
        service = Service(config)
        service.install_signal_handlers()
        await service.run([feed_orders, console_summary] if demo else [])

    asyncio.run(main())
    return 0
