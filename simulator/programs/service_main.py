"""Run the service in the foreground until SIGTERM/SIGINT (``factorysim run``)."""

from __future__ import annotations

import asyncio
import os

from simulator.config.schema import Config
from simulator.programs.demo import console_summary, feed_orders
from simulator.programs.service import Service
from simulator.runtime.faults import FaultDrill


def run_service(config: Config, *, demo: bool = False, fresh: bool = False, start_now: bool = False) -> int:
    """0 after an orderly stop; a failed loop raises ServiceFailed (exit code 1)."""
    fault = FaultDrill.from_env(os.environ)

    async def main() -> None:
        service = Service(config, hard_exit=True, fault=fault, fresh=fresh, start_now=start_now)
        service.install_signal_handlers()
        await service.run([feed_orders, console_summary] if demo else [])

    asyncio.run(main())
    return 0
