"""Delivery faults on purpose: a target's messages sent twice, never, late or out of order.

A :class:`FaultStage` sits between a delivery target's queue and its transport.  It changes only
*which* messages go out, *how often* and *when*; a message that goes out is the message the format
made, byte for byte, so a consumer can compare what it received with the clean stream (for example
the Kafka topics, or a run without faults).

Which messages a fault hits is decided per message from a keyed hash (BLAKE2b, keyed with the
seed and the target's name) of its topic and its bytes; never from timing or from a sequence of
random numbers.  So the same seed and target give the same faults for the same messages, whatever
the timing, the batching or a restart of the process in between; two targets (or two seeds) get
independent faults.  Two messages with the same topic and bytes get the same decisions.

Each fault picks its messages independently with its own fraction; a message picked by several
gets the first of: **drop**, then **delay**, then **reorder**.  **duplicate** is independent of
delay and reorder.  What a consumer measures over many distinct messages:

- ``drop``: that fraction of the messages is never sent (the queue counts them as delivered:
  they are given up, not retried).  Missing = ``drop`` of the messages.
- ``delay``: of the messages not dropped, that fraction is held back for ``d`` seconds, ``d``
  uniform in [``min_s``, ``max_s``], and then sent.  Of the messages received, ``delay.fraction``
  arrive after a later message (one the target was given after them), as long as others follow
  within ``d``.
- ``reorder``: of the messages neither dropped nor delayed, that fraction is held until ``k``
  further messages have gone out (``k`` uniform in 1..``window``), then sent right after the
  message that made ``k`` (every message going out counts, a duplicate copy does not).  So it is
  overtaken by at most ``k`` later messages, never more than ``window``.  A held message also
  goes out at most ``REORDER_MAX_HOLD_S`` (1 s) after it was held, so a quiet stream does not
  keep it.  Of the messages received, ``(1 - delay.fraction) × reorder.fraction`` arrive after
  a later one this way (slightly fewer when messages go out by time, or when an earlier
  message's delay ends while one is held: such releases count, and overtake nothing).
- ``duplicate``: of the messages not dropped, that fraction is sent twice, the copy right after
  the original wherever the original goes (at once, after its delay, after its reordering).
  Of the distinct messages received, ``duplicate`` arrive twice.

Overall a consumer receives ``N × (1 - drop) × (1 + duplicate)`` messages for ``N`` given to the
target.  :meth:`FaultStage.configure` changes the faults at run time; the scheduled outages of
:class:`~simulator.config.delivery.DeliveryFaults` are :mod:`simulator.adapters.delivery.outage`'s.

Every message's callback (``Delivery[1]``) keeps its exactly-once meaning: a dropped message's is
called by the stage; a sent message carries its own, and its duplicate copy carries one that does
nothing.  Held messages are released by :meth:`FaultStage.due` (and by ``feed``) when their time
comes, and all at once, in their original order, by :meth:`FaultStage.release_all` at shutdown.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from simulator.adapters.delivery.transport import Delivery
from simulator.config.delivery import DeliveryFaults
from simulator.formats import WireMessage

REORDER_MAX_HOLD_S = 1.0  # a reordered message goes out at most this long after it was held
_UNIFORMS = struct.Struct("<6Q")  # six independent 64-bit draws from one digest
_UNIT = 2.0**-53


def _nothing() -> None:
    pass


class Decision(NamedTuple):
    """What the faults do to one message."""

    drop: bool
    duplicate: bool
    delay_s: float | None  # held this long, when delayed
    reorder_k: int | None  # held until this many further messages have gone out, when reordered


CLEAN = Decision(False, False, None, None)


@dataclass(slots=True)
class _Held:
    seq: int  # feed order
    delivery: Delivery
    duplicate: bool
    released: bool = False


class FaultStage:
    """Applies a target's :class:`DeliveryFaults` to its stream of deliveries.  Pure: the caller
    passes the (monotonic) time, and sends what the methods return, in order."""

    def __init__(self, faults: DeliveryFaults, seed: int, target: str) -> None:
        self.default_seed = seed
        self.target = target
        self.messages = 0  # fed
        self.duplicated = 0
        self.dropped = 0
        self.delayed = 0
        self.reordered = 0
        self._seq = 0
        self._sent = 0  # messages gone out (copies not counted): the reorder count
        self._holding = 0
        self._timed: list[tuple[float, int, _Held]] = []  # by release time (delays; reorder time limits)
        self._counted: list[tuple[int, int, _Held]] = []  # reordered, by the _sent value releasing them
        self.configure(faults)

    def configure(self, faults: DeliveryFaults) -> None:
        """Change the faults from now on; held messages keep their release."""
        self.faults = faults
        self.seed = self.default_seed if faults.seed is None else faults.seed
        key = hashlib.blake2b(f"{self.seed}\0{self.target}".encode(), digest_size=32,
                              person=b"factorysim-fault").digest()
        self._hasher = hashlib.blake2b(key=key, digest_size=_UNIFORMS.size)
        self._on = bool(faults.duplicate or faults.drop or faults.delay.fraction or faults.reorder.fraction)

    def decide(self, message: WireMessage) -> Decision:
        """The faults' decisions for ``message`` (pure: the seed, the target and the message)."""
        faults = self.faults
        hasher = self._hasher.copy()
        hasher.update(message.topic.encode())
        hasher.update(b"\0")
        hasher.update(message.value)
        drop, duplicate, delay, delay_by, reorder, reorder_by = (
            (x >> 11) * _UNIT for x in _UNIFORMS.unpack(hasher.digest()))
        if drop < faults.drop:
            return Decision(True, False, None, None)
        twice = duplicate < faults.duplicate
        if delay < faults.delay.fraction:
            return Decision(False, twice, faults.delay.min_s + delay_by * (faults.delay.max_s - faults.delay.min_s),
                            None)
        if reorder < faults.reorder.fraction:
            return Decision(False, twice, None, 1 + int(reorder_by * faults.reorder.window))
        return Decision(False, twice, None, None) if twice else CLEAN

    def feed(self, delivery: Delivery, now: float) -> list[Delivery]:
        """What to send now, in order: held messages due by ``now``, then ``delivery`` unless it
        is dropped or held, then held messages it released."""
        self.messages += 1
        self._seq += 1
        timed = self._timed
        if not self._on and not self._holding:
            return [delivery]
        out: list[Delivery] = []
        if timed and timed[0][0] <= now:
            self._release_due(now, out)
        decision = self.decide(delivery[0]) if self._on else CLEAN
        if decision.drop:
            self.dropped += 1
            delivery[1]()
            return out
        if decision.duplicate:
            self.duplicated += 1
        held = _Held(self._seq, delivery, decision.duplicate)
        if decision.delay_s is not None:
            self.delayed += 1
            self._holding += 1
            heapq.heappush(timed, (now + decision.delay_s, held.seq, held))
        elif decision.reorder_k is not None:
            self.reordered += 1
            self._holding += 1
            heapq.heappush(self._counted, (self._sent + decision.reorder_k, held.seq, held))
            heapq.heappush(timed, (now + REORDER_MAX_HOLD_S, held.seq, held))
        else:
            self._emit(held, out)
        return out

    def due(self, now: float) -> list[Delivery]:
        """Held messages whose time has come by ``now``, in their release order."""
        out: list[Delivery] = []
        if self._timed and self._timed[0][0] <= now:
            self._release_due(now, out)
        return out

    def next_due(self) -> float | None:
        """The (monotonic) time :meth:`due` next has something, or None when nothing is held."""
        timed = self._timed
        while timed and timed[0][2].released:
            heapq.heappop(timed)
        return timed[0][0] if timed else None

    def release_all(self) -> list[Delivery]:
        """Everything held, in the order it was fed (at shutdown)."""
        held = sorted((entry for _, _, entry in self._timed if not entry.released), key=lambda entry: entry.seq)
        self._timed.clear()
        self._counted.clear()
        self._holding = 0
        out: list[Delivery] = []
        for entry in held:
            entry.released = True
            self._send(entry, out)
        return out

    @property
    def held(self) -> int:
        return self._holding

    def health(self) -> dict[str, Any]:
        faults = self.faults
        return {"faults": faults.describe(), "seed": self.seed, "duplicate": faults.duplicate, "drop": faults.drop,
                "delay": faults.delay.model_dump(), "reorder": faults.reorder.model_dump(),
                "messages": self.messages, "duplicated": self.duplicated, "dropped": self.dropped,
                "delayed": self.delayed, "reordered": self.reordered, "held": self._holding}

    def _release_due(self, now: float, out: list[Delivery]) -> None:
        timed = self._timed
        while timed and timed[0][0] <= now:
            entry = heapq.heappop(timed)[2]
            if not entry.released:
                entry.released = True
                self._holding -= 1
                self._emit(entry, out)

    def _emit(self, entry: _Held, out: list[Delivery]) -> None:
        """Send ``entry``, then the reordered messages whose count it (or those after it) completes."""
        self._send(entry, out)
        counted = self._counted
        while counted and counted[0][0] <= self._sent:
            entry = heapq.heappop(counted)[2]
            if not entry.released:
                entry.released = True
                self._holding -= 1
                self._send(entry, out)

    def _send(self, entry: _Held, out: list[Delivery]) -> None:
        out.append(entry.delivery)
        if entry.duplicate:
            out.append((entry.delivery[0], _nothing))
        self._sent += 1
