"""A one-line progress bar on stderr for long offline runs."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from simulator.model.simulation import Simulation


def human_duration(seconds: float) -> str:
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


class ProgressBar:
    def __init__(self, *, lots: int | None, until_s: float | None, stream: TextIO = sys.stderr,
                 width: int = 30) -> None:
        self.lots = lots
        self.until_s = until_s
        self.stream = stream
        self.width = width
        self.started = time.monotonic()

    def __call__(self, sim: Simulation) -> None:
        stats = sim.stats
        finished = stats.completed + stats.scrapped
        fractions = []
        if self.lots:
            fractions.append(finished / self.lots)
        if self.until_s:
            fractions.append(sim.now / self.until_s)
        fraction = min(1.0, max(fractions, default=0.0))
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        lots = f"{finished}/{self.lots}" if self.lots else f"{finished}"
        line = (f"\r[{bar}] {fraction:6.1%}  lots {lots}  wip {stats.in_progress}  "
                f"sim {human_duration(sim.now)}  wall {time.monotonic() - self.started:5.1f}s ")
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def count_of(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` with its noun in the right number: "1 lot", "2 lots", "1,200 messages"."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"
