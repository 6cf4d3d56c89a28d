"""Builders for small plant configs used across the tests."""

from __future__ import annotations

from typing import Any

from simulator.config.loader import parse
from simulator.config.schema import Config


def plant(
    *,
    stages: list[dict[str, Any]] | None = None,
    locations: dict[str, dict[str, Any]] | None = None,
    **sections: Any,
) -> Config:
    """A small plant: one location 'A' (Europe/Rome) with one stage on 2 milling machines unless
    told otherwise.  Extra keyword arguments become top-level config sections."""
    stages = stages or [{"name": "mill", "machine_type": "milling",
                         "processing_time": {"distribution": "constant", "value": 100}}]
    if locations is None:
        counts: dict[str, int] = {}
        for s in stages:
            counts[s["machine_type"]] = 2
        locations = {"A": {"timezone": "Europe/Rome", "machines": counts}}
    data: dict[str, Any] = {"locations": locations, "route": stages, **sections}
    data.setdefault("disruptions", {"block_probability": 0.0})
    return parse(data, environ={})
