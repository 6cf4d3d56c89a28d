"""factorysim: a Kafka-native discrete-event production simulator."""

from __future__ import annotations

import importlib.metadata


def package_version() -> str:
    """The installed factorysim's version ("0+unknown" when run from a checkout that is not installed)."""
    try:
        return importlib.metadata.version("factorysim")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
