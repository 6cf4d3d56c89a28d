"""Garbage-collector tuning while a service runs."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

# A burst of orders puts lots into the model much faster than the plant finishes them, so the
# process holds hundreds of thousands of live objects (each queued lot's process and events).  With
# CPython's default first-generation threshold (700) the collector promotes the records in flight
# and re-scans the old generation again and again: a third of the CPU time of the order intake.
# While a service runs, young collections run less often (measured: tools/bench/order_intake.py).
# At 50,000 a burst of orders still spent 6-7 % of its CPU time in young collections; at 200,000
# about half that (more of the records and messages in flight are freed before a collection sees
# them), at the price of a longer pause per collection (tens of milliseconds, once every few
# hundred thousand objects that stay alive).
GC_YOUNG_THRESHOLD = 200_000
_gc_state: dict[str, Any] = {"services": 0, "previous": None}


@contextlib.contextmanager
def fewer_young_collections() -> Iterator[None]:
    """Raise the collector's first threshold while at least one service runs; restore it after."""
    if _gc_state["services"] == 0:
        previous = gc.get_threshold()
        _gc_state["previous"] = previous
        if previous[0]:  # 0 = automatic collection switched off by the embedding program: leave it
            gc.set_threshold(max(previous[0], GC_YOUNG_THRESHOLD), *previous[1:])
    _gc_state["services"] += 1
    try:
        yield
    finally:
        _gc_state["services"] -= 1
        if _gc_state["services"] == 0 and _gc_state["previous"] is not None:
            gc.set_threshold(*_gc_state["previous"])
