"""A delivery target: records in, its wire format out, through a queue, faults and an outage switch
to a transport (an MQTT session or HTTP requests).

    offer(record) ──► queue (memory, or the spool on disk) ──► [outage: hold] ──► faults ──► transport

- The queue (:mod:`simulator.adapters.delivery.queue`, :mod:`simulator.adapters.delivery.spool`)
  keeps the target's overflow policy; records are encoded when they leave the memory queue, or
  when they are written to the spool.
- While the target's link is down — a ``network_outage`` command or a scheduled outage
  (:mod:`simulator.adapters.delivery.outage`) — nothing is taken from the queue: records wait there
  (with a spool, on disk) and go out in their order when the outage ends (the backfill).
- Delivery faults (:mod:`simulator.adapters.delivery.faults`) drop, duplicate, delay or reorder
  messages on the way out; the messages themselves are unchanged.
- A queued item's callback (``on_done``) runs when the queue has handed it over: delivered, or
  written to the spool.  Taken messages are removed from the spool once the transport has them
  acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from simulator.adapters.delivery.faults import FaultStage
from simulator.adapters.delivery.outage import OutageSwitch
from simulator.adapters.delivery.queue import DeliveryQueue, Done, Mark, MemoryQueue, Taken
from simulator.adapters.delivery.spool import SpoolQueue
from simulator.adapters.delivery.spool_file import SpoolError
from simulator.adapters.delivery.transport import Delivery, Transport
from simulator.asyncio_waits import wait_for
from simulator.config.delivery import DeliveryFaults, Spool
from simulator.config.http_sinks import HttpSink
from simulator.config.mqtt import MqttTarget
from simulator.errors import ConfigError
from simulator.formats import Format, WireMessage
from simulator.model.records import Record

log = logging.getLogger(__name__)
# messages handed to the transport between two yields to the event loop: sending a long queue without
# a pause would hold up every other task (the bridge's next Kafka fetch, the acknowledgements)
YIELD_EVERY = 64
MAX_HELD = 100_000  # messages delivery faults may hold back at once (delays of up to an hour at full rate)
STRANDED_CHECK_S = 0.25  # how often a stopping target with a spool checks whether it can still send
RunOf = Callable[[str], str | None]  # a plant -> the id of the run it is in (the spool's marks)


def spool_path(spool: Spool, name: str, program: str, instance_id: str | None = None,
               environ: dict[str, str] | None = None) -> Path:
    """The spool file of target ``name``: ``spool.path`` with its placeholders filled in."""
    env = os.environ if environ is None else environ
    hostname = socket.gethostname()
    text = spool.path.format_map({"name": name, "program": program, "hostname": hostname,
                                  "instance_id": instance_id or hostname,
                                  "state_dir": env.get("STATE_DIRECTORY", "").split(":")[0] or "."})
    return Path(text)


class DeliveryTarget:
    """One MQTT target or HTTP sink (``kind``).  The service offers every record (the outbox tap);
    the bridge offers Kafka messages, encoded or as records."""

    kind: ClassVar[str] = "target"
    key: ClassVar[str] = "targets"  # where its config lives: mqtt.targets, http_sinks

    def __init__(self, config: MqttTarget | HttpSink, fmt: Format, transport: Transport, *, seed: int,
                 program: str = "run", instance_id: str | None = None, batch_limit: int = YIELD_EVERY,
                 linger_s: float = 0.0) -> None:
        self.config = config
        self.name = config.name
        self.fmt = fmt
        self.transport = transport
        self.kinds = frozenset(config.records)
        self.uplink = config.uplink
        self.batch_limit = batch_limit
        self.linger_s = linger_s
        self.on_room: Callable[[], None] | None = None
        self.run_of: RunOf | None = None
        self.records_offered = 0
        self.records_skipped = 0  # kinds this target does not carry
        self.encode_errors = 0
        self.outage = OutageSwitch(config.faults.outages)
        self.faults = FaultStage(config.faults, seed, config.name)
        self.spool_file: Path | None = None
        queue: DeliveryQueue
        if config.spool is None:
            queue = MemoryQueue(config.queue.capacity, config.queue.overflow, self._encode, name=config.name)
        else:
            self.spool_file = spool_path(config.spool, config.name, program, instance_id)
            queue = SpoolQueue(self.spool_file, max_bytes=config.spool.max_bytes, policy=config.spool.policy,
                               encode=self._encode, fsync=config.spool.fsync, name=config.name)
        self.queue = queue
        queue.on_room = self._room
        self._finishing = asyncio.Event()
        if config.faults.active:
            log.warning("%s %s: DELIVERY FAULTS ON: %s", self.kind, self.name, config.faults.describe())

    def open(self) -> None:
        """Open the spool (the messages a previous process left are sent first); a spool that cannot
        be used is a configuration error naming its key."""
        if isinstance(self.queue, SpoolQueue):
            try:
                self.queue.open()
            except SpoolError as exc:
                raise ConfigError([f"{self.key}.{self.name}.spool.path: {exc}"]) from exc

    # -- the producer side (the outbox tap, or the bridge) ------------------------------------------
    def offer(self, record: Record, on_done: Done = None) -> None:
        """Queue ``record`` (synchronous, never blocks; see the overflow policies)."""
        if record.kind not in self.kinds:
            self._skip(on_done)
            return
        self.records_offered += 1
        mark: Mark | None = None
        if self.run_of is not None and self.spool_file is not None:  # only a spool outlives the process
            run = self.run_of(record.location)
            if run is not None:
                mark = (f"{run}:{record.location}", record.seq)
        self.queue.put(record, on_done, mark)

    def offer_encoded(self, kind: str, messages: list[WireMessage], on_done: Done = None,
                      mark: Mark | None = None) -> None:
        """Queue messages already in this target's format (the bridge's coffeemek pass-through)."""
        if kind not in self.kinds:
            self._skip(on_done)
            return
        self.records_offered += 1
        self.queue.put(messages, on_done, mark)

    def _skip(self, on_done: Done) -> None:
        self.records_skipped += 1
        if on_done is not None:
            on_done()

    def _encode(self, record: Record) -> list[WireMessage]:
        try:
            return self.fmt.encode(record)
        except Exception:
            self.encode_errors += 1
            log.exception("%s %s: cannot encode a %s record in format %s", self.kind, self.name, record.kind,
                          self.fmt.name)
            return []

    def _room(self) -> None:
        if self.on_room is not None:
            self.on_room()

    @property
    def full(self) -> bool:
        return self.queue.full

    async def wait_for_room(self) -> None:
        await self.queue.wait_for_room()

    def __len__(self) -> int:
        return len(self.queue)

    @property
    def dropped(self) -> dict[str, int]:
        dropped: dict[str, int] = getattr(self.queue, "dropped", {"oldest": 0, "newest": 0})
        return dropped

    # -- commands ------------------------------------------------------------------------------------
    def network_outage(self, on: bool, duration_s: float | None = None) -> dict[str, Any]:
        """Cut the link (records wait in the queue) or restore it (they go out in order)."""
        if on:
            self.outage.begin(duration_s)
            log.warning("%s %s: network outage%s: nothing is sent, %s", self.kind, self.name,
                        f" for {duration_s:g} s" if duration_s else "",
                        "records are spooled" if self.spool_file else "records wait in memory")
        else:
            self.outage.end()
            log.info("%s %s: network outage over; %d waiting record(s) go out", self.kind, self.name, len(self))
        return {"target": self.name, "outage": self.outage.active}

    def set_faults(self, faults: DeliveryFaults) -> dict[str, Any]:
        """Replace the delivery faults (and the outage schedule) at run time."""
        self.faults.configure(faults)
        self.outage.set_schedule(faults.outages)
        if faults.active:
            log.warning("%s %s: DELIVERY FAULTS ON: %s", self.kind, self.name, faults.describe())
        else:
            log.info("%s %s: delivery faults off", self.kind, self.name)
        return {"target": self.name, "faults": faults.describe()}

    @property
    def faults_on(self) -> bool:
        return self.faults.faults.active

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Send until :meth:`finish` was called and everything queued is delivered (or, during an
        outage, until finish: what is left stays in the spool, or is lost with a memory queue)."""
        self.outage.start()  # the outage schedule counts from here
        loop = asyncio.get_running_loop()
        transport = loop.create_task(self.transport.run(), name=f"{self.kind}-{self.name}")
        try:
            sending = loop.create_task(self._drain(), name=f"{self.kind}-{self.name}-send")
            while not sending.done():
                await asyncio.wait({sending}, timeout=STRANDED_CHECK_S)
                if self._finishing.is_set() and self.spool_file is not None and not self.transport.connected:
                    sending.cancel()  # nothing can go out now; the spool keeps it for the next start
                    with contextlib.suppress(asyncio.CancelledError):
                        await sending
                    log.warning("%s %s: stopped while not connected; %d message(s) kept in the spool", self.kind,
                                self.name, self.queue.health()["spool"]["messages"])
            if not sending.cancelled():
                sending.result()
        finally:
            await self.transport.close()
            transport.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await transport
            await self.queue.aclose()

    async def _drain(self) -> None:
        await self._send_loop()
        if not self.outage.active:
            await self.transport.send(self.faults.release_all())
            await self.transport.wait_idle()

    async def _send_loop(self) -> None:
        sent = 0
        while True:
            if not await self._link_up():
                return
            now = time.monotonic()
            due = self.faults.due(now)
            if due:
                await self.transport.send(due)
            if self.faults.held >= MAX_HELD and not self._finishing.is_set():
                # delayed messages wait in memory: take no more until some are released, so the queue's
                # own policy (and its bound) applies to what comes meanwhile
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._finishing.wait(), self._wait_s(time.monotonic()))
                continue
            batch = await self.queue.take(self.batch_limit, self._wait_s(now))
            if not batch:
                if self.queue.drained:
                    return
                continue
            if self.linger_s > 0:
                batch += await self._more(self.batch_limit - len(batch))
            if not await self._link_up():  # the outage began while the loop waited for records
                return
            deliveries = [d for taken in batch for d in self._deliveries(taken)]
            now = time.monotonic()
            await self.transport.send([out for d in deliveries for out in self.faults.feed(d, now)])
            sent += len(deliveries)
            if sent >= YIELD_EVERY:
                sent = 0
                await asyncio.sleep(0)  # let the other tasks run: Kafka fetches, acknowledgements

    async def _more(self, room: int) -> list[Taken]:
        """Up to ``room`` more items within ``linger_s`` (an HTTP sink's batch fills up before it goes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_s
        more: list[Taken] = []
        while len(more) < room and not self._finishing.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            taken = await self.queue.take(room - len(more), left)
            if not taken:
                break
            more += taken
        return more

    async def _link_up(self) -> bool:
        """Wait out an outage; False when the target is asked to finish during one."""
        while self.outage.active:
            if self._finishing.is_set():
                log.warning("%s %s: stopped during a network outage; %d record(s) not sent%s", self.kind,
                            self.name, len(self), " (kept in the spool)" if self.spool_file else "")
                return False
            await self._until_link_or_finish()
        return True

    def _wait_s(self, now: float) -> float | None:
        """How long the loop may wait for records: until a held message or the outage schedule is due."""
        moments = [t for t in (self.faults.next_due(), self.outage.next_change()) if t is not None]
        return max(0.0, min(moments) - now) if moments else None

    async def _until_link_or_finish(self) -> None:
        clear = asyncio.ensure_future(self.outage.wait_clear())
        finishing = asyncio.ensure_future(self._finishing.wait())
        try:
            await asyncio.wait({clear, finishing}, timeout=self._wait_s(time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            clear.cancel()
            finishing.cancel()

    @staticmethod
    def _deliveries(taken: Taken) -> Iterator[Delivery]:
        """Each message of ``taken`` with a callback; ``taken.done`` once every one is delivered."""
        messages = taken.messages
        if not messages:
            taken.done()
            return
        if len(messages) == 1:
            yield messages[0], taken.done
            return
        left = [len(messages)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                taken.done()
        for message in messages:
            yield message, one_done

    def finish(self) -> None:
        """No more records: deliver what is queued, wait for the acknowledgements, disconnect."""
        self._finishing.set()
        self.queue.close()

    # -- views ---------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.transport.connected

    @property
    def in_flight(self) -> int:
        return int(self.transport.health().get("in_flight", 0))

    def delivery_health(self) -> dict[str, Any]:
        """What every kind of target shows: queue (or spool), outage, faults, counters."""
        return {
            "kind": self.kind,
            "format": self.fmt.name,
            "records_offered": self.records_offered,
            "encode_errors": self.encode_errors,
            **self.queue.health(),
            "outage": self.outage.health(),
            "faults": self.faults.health(),
        }
