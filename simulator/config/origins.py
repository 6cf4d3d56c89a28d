"""Where each config value came from, so that a config error names what the user typed.

A value comes from a line of the config file, an environment variable or a command-line flag
(in that order of precedence, the last one wins).  :class:`Origins` records, per key path, the
origin of the value there; an error found at a key path is reported with the origin of the
longest recorded prefix of that path:

    config.yaml line 12: simulation.speed: must be …
    FACTORYSIM_SPEED=abc (simulation.speed): must be …
    --locations Germany=1 (arrivals.location_mix.Germany): unknown location; allowed: …
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]

_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
_PATH_NAME = re.compile(r"_(PATH|FILE|DIR)$", re.IGNORECASE)  # names where a secret is, not what it is
_SHOWN_CHARS = 60
_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
# a problem found after loading: "kafka.security: cannot load TLS files (…)"
_PROBLEM = re.compile(r"^(?P<key>[a-z_][a-z0-9_]*(?:(?:\.[A-Za-z0-9_\-]+)|\[\d+\])*): (?P<message>.*)\Z", re.S)


@dataclass(frozen=True)
class Origin:
    """``where`` in the user's words.  A flag or a variable puts the key in brackets after what was
    typed; a file puts its line first and the key after it."""

    where: str
    in_file: bool = False

    def describe(self, key: str, message: str) -> str:
        if self.in_file:
            return f"{self.where}: {key}: {message}"
        return f"{self.where} ({key}): {message}"


def flag(name: str, text: object = None) -> Origin:
    """A command-line flag as typed, e.g. ``--speed abc`` (``--demo`` for a flag without value)."""
    if isinstance(text, float) and text.is_integer() and abs(text) < 1e15:
        text = int(text)  # argparse made a float of "--rate 5"; show 5
    return Origin(name if text is None else f"{name} {_shown(str(text))}")


def env(var: str, raw: str) -> Origin:
    """An environment variable as set, e.g. ``FACTORYSIM_SPEED=abc`` (a secret's value hidden; the
    path of one, ``SAT_TOKEN_PATH``, shown)."""
    secret = _SECRET_NAME.search(var) and not _PATH_NAME.search(var)
    return Origin(f"{var}={'…' if secret else _shown(raw)}")


def file_line(path: str | Path, line: int | None = None) -> Origin:
    return Origin(f"{path} line {line}" if line else str(path), in_file=True)


def _shown(text: str) -> str:
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "…"
    return shlex.quote(text)


@dataclass(frozen=True)
class Override:
    """Set ``key_path`` (dotted, see :func:`simulator.config.loader.parse`) to ``value``, from ``origin``
    (None: set by the program itself, reported without an origin)."""

    key_path: str
    value: Any
    origin: Origin | None = None


class Origins:
    """Origin per key path; the origin of anything else is the nearest recorded ancestor's, or
    ``root`` (the file as a whole, or None for a mapping given by the program)."""

    def __init__(self, root: Origin | None = None) -> None:
        self.root = root
        self._by_path: dict[KeyPath, Origin | None] = {}

    def copy(self) -> Origins:
        other = Origins(self.root)
        other._by_path = dict(self._by_path)
        return other

    def set(self, path: KeyPath, origin: Origin | None) -> None:
        """``path`` now holds a value from ``origin``: what was recorded inside it is gone."""
        folded = _fold(path)
        for old in [p for p in self._by_path if p[:len(folded)] == folded]:
            del self._by_path[old]
        self._by_path[folded] = origin

    def of(self, key: str) -> Origin | None:
        path = _fold(key_parts(key))
        for n in range(len(path), 0, -1):
            if path[:n] in self._by_path:
                return self._by_path[path[:n]]
        return self.root

    def recorded(self, key: str) -> Origin | None:
        """The origin recorded for ``key`` or its nearest ancestor, None when only the root (a
        default value, not typed anywhere) or nothing is known."""
        path = _fold(key_parts(key))
        for n in range(len(path), 0, -1):
            if path[:n] in self._by_path:
                return self._by_path[path[:n]]
        return None

    def locate(self, problem: str, located: Mapping[str, str] | None = None) -> str:
        """``problem`` ("key: what is wrong", found after loading) with where the value at ``key``
        came from, when it was typed somewhere; else as it is.  ``located`` maps a key naming a list
        element by its name to its position ("mqtt.targets.edge" → "mqtt.targets[0]")."""
        match = _PROBLEM.match(problem)
        if match is None:
            return problem
        key, message = match["key"], match["message"]
        position = key
        for named, index in (located or {}).items():
            if key == named or key.startswith(named + "."):
                position = index + key[len(named):]
                break
        origin = self.recorded(position)
        return origin.describe(key, message) if origin is not None else problem

    def describe(self, key: str, message: str, located: str | None = None) -> str:
        """One problem line: the origin of ``key``'s value (of the value at ``located`` when the
        key names a list element by its name), the key, what is wrong."""
        origin = self.of(key if located is None else located)
        key = key or "(top level)"
        return origin.describe(key, message) if origin is not None else f"{key}: {message}"


def key_parts(key: str) -> KeyPath:
    """``route[3].quality`` → ``("route", 3, "quality")``."""
    return tuple(int(index) if index else name for index, name in _KEY_PART.findall(key))


def _fold(path: KeyPath) -> KeyPath:
    return tuple(p.casefold() if isinstance(p, str) else p for p in path)


def load_yaml(text: str, path: str | Path) -> tuple[Any, Origins]:
    """Parse a YAML document (as ``yaml.safe_load``) and the line of every key and list element."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    origins = Origins(file_line(path))
    if node is not None:
        _record(loader, node, (), path, origins)
    return data, origins


def _record(loader: yaml.SafeLoader, node: yaml.Node, at: KeyPath, path: str | Path, origins: Origins) -> None:
    # construct_document has flattened merge keys (<<: *anchor) into each mapping node already.
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node)
            if isinstance(key, str | int) and not isinstance(key, bool):
                here = (*at, key if isinstance(key, str) else str(key))
                origins.set(here, file_line(path, key_node.start_mark.line + 1))
                _record(loader, value_node, here, path, origins)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            here = (*at, index)
            origins.set(here, file_line(path, item.start_mark.line + 1))
            _record(loader, item, here, path, origins)
