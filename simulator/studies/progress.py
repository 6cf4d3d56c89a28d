"""The progress bar of a study on stderr: runs done of the runs planned, elapsed and remaining time."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from simulator.progress import human_duration


class ReplicationsBar:
    """``progress(done, total)`` for :func:`~simulator.studies.replications.run_replications`:
    the first ``pilots`` runs are the warm-up pilot's, the rest replications (the total may grow
    while a sequential procedure adds some).  The remaining time extrapolates the pace so far."""

    def __init__(self, *, pilots: int = 0, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.pilots = pilots
        self.stream = stream
        self.width = width
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        if done < self.pilots or (done == self.pilots and total > self.pilots and self.pilots):
            label = f"warm-up pilot {done}/{self.pilots}"
            fraction = done / self.pilots
        else:
            label = f"{done - self.pilots}/{total - self.pilots} replications"
            fraction = (done - self.pilots) / max(1, total - self.pilots)
        filled = int(min(1.0, fraction) * self.width)
        remaining = elapsed / done * (total - done) if done else None
        eta = f"~{human_duration(remaining)} left" if remaining is not None else "estimating"
        self.stream.write(f"\r[{'#' * filled}{'-' * (self.width - filled)}] {label}  "
                          f"elapsed {human_duration(elapsed)}  {eta}   ")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
