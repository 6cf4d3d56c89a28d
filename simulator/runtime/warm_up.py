"""The warm start of a new run (``simulation.warm_up``): the model first simulates that long as
fast as it can, so that the run goes live with lots on every stage and queues formed, instead of
an empty, idle plant.

What the model says before the end of the warm-up is not published: :class:`HideWarmUp` sits in
front of the outbox (Kafka and the MQTT targets), drops every record stamped before it and counts
them as done where the output's progress is measured (a snapshot waits for the records it covers
to be in Kafka; hidden ones never will be).  The warm-up is part of the run, decided by its
configuration and seed: a recovery replays it the same way (and drops its records again), and a
snapshot taken after it carries its lots.  The driver paces from the end of the warm-up
(:meth:`~simulator.runtime.driver.Driver.continue_from`), so simulated time reaches it at once
and the calendar shows the wall clock from there.  Without an order feed of its own
(``arrivals.in_service`` false) the plant takes generated orders (``arrivals``) during the
warm-up only.
"""

from __future__ import annotations

from simulator.model.records import Record, Sink


class HideWarmUp:
    """A sink that passes on records from ``until`` (simulated seconds) on."""

    def __init__(self, sink: Sink, until: float) -> None:
        self.sink = sink
        self.until = until
        self.hidden = 0
        self.through: dict[str, int] = {}  # per plant, the number of the last record hidden

    def emit(self, record: Record) -> None:
        if record.sim_time >= self.until:
            self.sink.emit(record)
        else:
            self.hidden += 1
            self.through[record.location] = record.seq
