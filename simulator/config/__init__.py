"""The configuration, by area: :mod:`~simulator.config.plant` (what the model reads),
:mod:`~simulator.config.kafka`, :mod:`~simulator.config.mqtt`, :mod:`~simulator.config.http`, the root
:mod:`~simulator.config.schema`, the :mod:`~simulator.config.loader` (file, environment, flags) and
:mod:`~simulator.config.origins` (where each value came from, for error messages).

``Config``, ``load``, ``parse`` and ``config_path`` are also importable from here.  They load on first
use: the model imports :mod:`simulator.config.plant`, which runs this file first, and must not pull
in the loader (YAML, the wire formats) or the connections' settings with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.config.loader import config_path, load, parse
    from simulator.config.schema import Config

__all__ = ["Config", "config_path", "load", "parse"]

_HOMES = {"Config": "simulator.config.schema", "config_path": "simulator.config.loader",
          "load": "simulator.config.loader", "parse": "simulator.config.loader"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
