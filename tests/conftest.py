"""Shared fixtures: the default config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.config import parse
from simulator.config_schema import Config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def default_yaml() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def default_config(default_yaml: dict[str, Any]) -> Config:
    return parse(copy.deepcopy(default_yaml), environ={})
