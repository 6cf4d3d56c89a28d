"""The project's exception hierarchy; library errors are translated at the boundary."""

from __future__ import annotations


class FactorySimError(Exception):
    """Base of every error factorysim raises on purpose."""


class ConfigError(FactorySimError):
    """The configuration is invalid; ``problems`` has one line per bad key, each naming where the
    value came from (see simulator/config/origins.py).  One problem is one line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:
            super().__init__(f"invalid configuration: {problems[0]}")
        else:
            super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class UsageError(FactorySimError):
    """A bad command-line value, or a setting this machine cannot honour (an output path whose
    directory does not exist, a port it may not listen on); one line, exit code 2."""


class CannotWrite(FactorySimError):
    """An output file could not be written although it was checked before the run (a full disk,
    say); one line, exit code 1."""


class PortInUse(FactorySimError):
    """Another process listens on the port a listener was given (exit code 1: a runtime failure,
    the port may be free at the next start)."""


class OrderRejected(FactorySimError):
    """An order cannot be admitted; ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class CommandRejected(FactorySimError):
    """A runtime command (block, repair, anomaly, pause, speed …) cannot be applied; ``reason`` is a
    stable machine-readable code, ``detail`` says why in words."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class JournalRefused(FactorySimError):
    """Kafka refused an input's journal entry: the input was not applied (and is not done)."""


class SnapshotRefused(FactorySimError):
    """Kafka refused a part of a snapshot for good: the snapshot is not written."""


class IllegalTransition(FactorySimError):
    """A lot was asked to move between states the lot state machine forbids (a bug)."""


class BrokerUnavailable(FactorySimError):
    """A message broker cannot be reached."""
