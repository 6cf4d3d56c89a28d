"""Waiting with a time limit, safe for cancellation.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives while the awaited
operation completes (fixed in 3.12, where ``wait_for`` is built on ``asyncio.timeout``).  A task
that swallows its cancellation never ends, and whatever waits for it (a TaskGroup, a shutdown)
hangs with it.  Everything in factorysim waits through :func:`wait_for` instead (ruff bans
``asyncio.wait_for`` in the project).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """``await awaitable``, raising TimeoutError after ``timeout_s`` seconds (None: no limit).  A
    cancellation of the caller always propagates."""
    if timeout_s is None:
        return await awaitable
    async with asyncio.timeout(max(0.0, timeout_s)):
        return await awaitable


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` seconds for ``event``; True if it is set."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await wait_for(event.wait(), timeout_s)
    return event.is_set()
