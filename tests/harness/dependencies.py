"""System tools a test needs (mosquitto, its CLI clients, openssl): when one is missing the test fails in
CI (``CI=true``) and is skipped elsewhere, with how to install it."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_dependency(message: str) -> NoReturn:
    """A test cannot run for lack of a system tool: fail in CI (CI=true), skip elsewhere (the reason is
    listed in the -ra summary)."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_executable(name: str, package: str) -> str:
    """The path of ``name``, or fail (CI) / skip with how to install ``package``."""
    path = shutil.which(name)
    if path is None:
        missing_dependency(f"{name} not found: `sudo apt-get install {package}` (or `make system-deps` as root)")
    return path
