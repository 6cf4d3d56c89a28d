"""SIGTERM/SIGINT for the long-running commands: the first asks for an orderly stop, a second
exits at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)


def install_stop_signals(request_stop: Callable[[], None]) -> None:
    received = 0

    def on_signal(sig: int) -> None:
        nonlocal received
        received += 1
        name = signal.Signals(sig).name
        if received > 1:
            log.warning("second %s: exiting at once", name)
            os._exit(128 + sig)
        log.info("%s: shutting down (send it again to exit at once)", name)
        request_stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
