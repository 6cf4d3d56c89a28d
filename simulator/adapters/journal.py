"""The journal on Kafka: appending a plant's entries in order, acknowledged, and reading them back.

:class:`JournalWriter` sends entries through the service's publisher (same producer, the same
resending after outages) one by one, in the order they were appended, each keyed by its plant so
that a plant's entries keep their order on one partition.  :meth:`JournalWriter.append` returns a
future that is done when Kafka has acknowledged every entry given (or failed with the refusal).
Reading the journal back is :mod:`simulator.adapters.journal_reader`'s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.errors import FactorySimError
from simulator.formats import journal
from simulator.formats.journal import Entry

log = logging.getLogger(__name__)


class JournalFailed(FactorySimError):
    """Kafka refused a journal entry for good."""


@dataclass(slots=True)
class _Pending:
    entries: Sequence[Entry]
    acknowledged: asyncio.Future[None]
    left: int


class JournalWriter:
    def __init__(self, publisher: KafkaPublisher, topic: str) -> None:
        self.publisher = publisher
        self.topic = topic
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.appended = 0
        self.acknowledged = 0
        self.failure: BaseException | None = None

    def append(self, entries: Sequence[Entry]) -> asyncio.Future[None]:
        """Queue ``entries``; the future is done once Kafka acknowledged all of them."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not entries:
            done.set_result(None)
            return done
        self._queue.put_nowait(_Pending(entries, done, len(entries)))
        self.appended += len(entries)
        return done

    async def run(self) -> None:
        """Send what is appended, in order, for as long as the service runs; ends with
        JournalFailed when Kafka refuses an entry for good (nothing can apply any more)."""
        while True:
            pending = await self._queue.get()
            if self.failure is not None:
                raise JournalFailed(f"Kafka refused a journal entry ({self.failure!r}): no input can apply")
            await self._send(pending)

    async def drain(self) -> None:
        """Send what is queued and wait for its acknowledgement (at shutdown)."""
        while not self._queue.empty():
            await self._send(self._queue.get_nowait())
        await self.publisher.flush()

    async def _send(self, pending: _Pending) -> None:
        await self.publisher.submit_many([journal.encode(entry, self.topic) for entry in pending.entries],
                                         functools.partial(self._delivered, pending),
                                         functools.partial(self._refused, pending))

    def _delivered(self, pending: _Pending) -> None:
        self.acknowledged += 1
        pending.left -= 1
        if pending.left == 0 and not pending.acknowledged.done():
            pending.acknowledged.set_result(None)

    def _refused(self, pending: _Pending, exc: BaseException) -> bool:
        """Kafka refused an entry for good: its inputs do not apply, and the writer fails (the
        refusal also makes the service unhealthy through the publisher)."""
        if not pending.acknowledged.done():
            pending.acknowledged.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        if self.failure is None:
            self.failure = exc
            self._queue.put_nowait(_Pending((), pending.acknowledged, 0))  # wakes run() to fail
        return False
