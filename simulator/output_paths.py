"""Output files of the command-line tools: checked before any work starts, written with a one-line
error.

A run that would fail only at its end, when it writes its report, wastes the run: every output
path is checked first (its directory exists and is writable, the path is not a directory, no two
outputs and no output and input are the same file) and refused with one line naming the flag and
the path (:class:`~simulator.errors.UsageError`, exit code 2).  What can still fail later (a full
disk) is :class:`~simulator.errors.CannotWrite` (exit code 1), also one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from simulator.errors import CannotWrite, UsageError


def check_outputs(outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None] | None = None) -> None:
    """Refuse (UsageError) the first output, by flag, that cannot be written, or that is the same
    file as another output or as an input."""
    taken: dict[Path, str] = {p.resolve(): flag for flag, p in (inputs or {}).items() if p is not None}
    for flag, path in outputs.items():
        if path is None:
            continue
        check_output(flag, path)
        resolved = path.resolve()
        if resolved in taken:
            raise UsageError(f"{flag}: {path} is also the file of {taken[resolved]}; give each its own file")
        taken[resolved] = flag


def check_output(flag: str, path: Path) -> None:
    """Refuse (UsageError) a file that cannot be created or overwritten, saying why."""
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a directory; give a file name, such as {path / _example(flag)}")
    parent = path.parent
    if not parent.exists():
        raise UsageError(f"{flag}: cannot write {path}: the directory {parent} does not exist "
                         f"(create it first: mkdir -p {parent})")
    if not parent.is_dir():
        raise UsageError(f"{flag}: cannot write {path}: {parent} is not a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag}: cannot write {path}: the file exists and is not writable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write {path}: no permission to create files in {parent}")


def write_output(flag: str, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``; a failure is CannotWrite naming the flag and the path."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise CannotWrite(f"{flag}: cannot write {path}: {exc.strerror or exc}") from exc


def _example(flag: str) -> str:
    name = flag.lstrip("-")
    if name.endswith("json"):
        return "report.json"
    if name.endswith("html"):
        return "report.html"
    return "telemetry.jsonl" if name.startswith("telemetry") else "snapshot.json"
