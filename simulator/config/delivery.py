"""Delivery to the MQTT targets and HTTP sinks: the durable spool and delivery faults on purpose.

- ``spool``: a target's outgoing queue kept on disk (SQLite), so a broker outage, a network outage
  command or a restart of the process loses nothing; see :mod:`simulator.adapters.delivery.spool`.
- ``faults``: duplicates, drops, late and reordered messages and scheduled outages, applied to the
  delivery only (the messages themselves are unchanged), deterministic per seed; see
  :mod:`simulator.adapters.delivery.faults`.

The HTTP sinks themselves are :mod:`simulator.config.http_sinks`.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import Field, model_validator

from simulator.config.common import NonNegFloat, Probability, Strict

OverflowPolicy = Literal["block", "drop-oldest", "drop-newest"]
MAX_DELAY_S = 3600.0  # a message held back longer is no longer "late", it is lost to the test
MAX_FAULT_WINDOW = 10_000
MAX_OUTAGE_S = 7 * 86_400.0
SPOOL_PLACEHOLDERS = ("name", "program", "hostname", "instance_id", "state_dir")


class Spool(Strict):
    """A target's outgoing queue on disk.  ``path`` placeholders: {name} (the target), {program}
    (``run`` or ``bridge``), {hostname}, {instance_id} (``kafka.scale_out.instance_id``), {state_dir}
    ($STATE_DIRECTORY as systemd sets it, else the working directory)."""

    path: Annotated[str, Field(min_length=1, max_length=1000)] = "{state_dir}/spool/{program}-{name}.sqlite3"
    max_bytes: Annotated[int, Field(ge=65_536, le=1 << 40)] = 1 << 30  # message bytes kept at most
    policy: OverflowPolicy = "block"  # when max_bytes is reached
    fsync: bool = False  # true: every write reaches the disk before it counts (survives power loss; slower)

    @model_validator(mode="after")
    def _placeholders(self) -> Spool:
        try:
            fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(self.path)
                      if name is not None]
        except ValueError as exc:
            raise ValueError(f"path {self.path!r}: {exc} (write a brace as {{{{ or }}}})") from exc
        if any(spec or conversion for _, spec, conversion in fields):
            raise ValueError("path placeholders take no format spec or conversion (write {name}, not {name:…})")
        names = {name for name, _, _ in fields}
        unknown = sorted(names - set(SPOOL_PLACEHOLDERS))
        if unknown:
            raise ValueError(f"path has the unknown placeholder {{{unknown[0]}}}; allowed: "
                             f"{', '.join('{' + p + '}' for p in SPOOL_PLACEHOLDERS)}")
        return self


class DelayFault(Strict):
    """Hold back a fraction of the messages for a while (late events: later ones overtake them)."""

    fraction: Probability = 0.0
    min_s: NonNegFloat = 1.0
    max_s: Annotated[float, Field(ge=0, le=MAX_DELAY_S, allow_inf_nan=False)] = 10.0

    @model_validator(mode="after")
    def _ordered(self) -> DelayFault:
        if self.max_s < self.min_s:
            raise ValueError("max_s must be >= min_s")
        return self


class ReorderFault(Strict):
    """Let a fraction of the messages be overtaken by up to ``window`` later messages."""

    fraction: Probability = 0.0
    window: Annotated[int, Field(ge=1, le=MAX_FAULT_WINDOW)] = 10


class ScheduledOutage(Strict):
    """The link is down from ``after_s`` wall seconds after the target started, for ``duration_s``,
    and again every ``every_s`` when it is given."""

    after_s: Annotated[float, Field(ge=0, le=MAX_OUTAGE_S * 52, allow_inf_nan=False)] = 0.0
    duration_s: Annotated[float, Field(ge=0.1, le=MAX_OUTAGE_S, allow_inf_nan=False)]
    every_s: Annotated[float, Field(ge=1, le=MAX_OUTAGE_S * 52, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _fits(self) -> ScheduledOutage:
        if self.every_s is not None and self.every_s <= self.duration_s:
            raise ValueError("every_s must be more than duration_s (an outage ends before the next begins)")
        return self


class DeliveryFaults(Strict):
    """Faults on the way out, all off by default.  Which messages they hit depends only on the seed,
    the target's name and the message (its topic and bytes), never on timing: the same seed gives
    the same faults."""

    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None  # default: simulation.seed
    duplicate: Probability = 0.0  # fraction of messages delivered twice
    drop: Probability = 0.0  # fraction of messages never delivered
    delay: DelayFault = DelayFault()
    reorder: ReorderFault = ReorderFault()
    outages: Annotated[tuple[ScheduledOutage, ...], Field(max_length=100)] = ()

    @property
    def active(self) -> bool:
        return bool(self.duplicate or self.drop or self.delay.fraction or self.reorder.fraction or self.outages)

    def describe(self) -> str:
        """One line for logs and /health: the faults that are on."""
        parts = []
        if self.duplicate:
            parts.append(f"duplicate {self.duplicate:.4g}")
        if self.drop:
            parts.append(f"drop {self.drop:.4g}")
        if self.delay.fraction:
            parts.append(f"delay {self.delay.fraction:.4g} by {self.delay.min_s:g}-{self.delay.max_s:g} s")
        if self.reorder.fraction:
            parts.append(f"reorder {self.reorder.fraction:.4g} within {self.reorder.window}")
        if self.outages:
            parts.append(f"{len(self.outages)} scheduled outage(s)")
        return ", ".join(parts) or "none"
