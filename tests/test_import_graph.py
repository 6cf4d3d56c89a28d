"""Dependencies point one way: programs → runtime (the engine) and adapters; adapters → interfaces
← runtime; the model imports none of them, and of the configuration it reads only the plant's
settings (``simulator.config.plant``).  Every import statement counts: at module level, inside
functions and classes, and under ``if TYPE_CHECKING:``; relative imports are resolved against the
importing module's package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "simulator"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import in ``source``, a module of ``package``.  ``from a import b``
    counts as ``a`` and as ``a.b``, so ``from simulator import runtime`` is caught too."""
    here = package.split(".")
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - (node.level - 1)] if node.level else []
            origin = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.append((node.lineno, origin))
            found.extend((node.lineno, f"{origin}.{alias.name}") for alias in node.names)
    return found


def reaches(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def forbidden_in(source: str, package: str, forbidden: tuple[str, ...],
                 allowed: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    """(line, module) per import statement in ``source`` (a module of ``package``) that reaches a
    ``forbidden`` package other than through an ``allowed`` one."""
    bad: dict[int, str] = {}
    for line, module in imported_modules(source, package):
        if reaches(module, forbidden) and not reaches(module, allowed):
            bad[line] = min(bad.get(line, module), module, key=len)  # "from a import b": a
    return sorted(bad.items())


def forbidden_imports(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    """One line per import statement under ``folder`` (from the repository root) that reaches a
    ``forbidden`` package other than through an ``allowed`` one."""
    bad: list[str] = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for line, module in forbidden_in(path.read_text(encoding="utf-8"), package, forbidden, allowed):
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_every_kind_of_import_is_seen() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from simulator.programs.service import Service\n"
        "def f():\n    import simulator.asyncio_waits\n"
        "class C:\n    def g(self):\n        from ..runtime import outbox\n"
        "from simulator import runtime\n"
    )
    found = {module for _, module in imported_modules(source, "simulator.adapters")}
    assert {"simulator.programs.service", "simulator.asyncio_waits", "simulator.runtime.outbox",
            "simulator.runtime"} <= found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("simulator/adapters", ("simulator.runtime", "simulator.programs")),
        ("simulator/runtime", ("simulator.adapters", "simulator.programs")),
        ("simulator/model", ("simulator.adapters", "simulator.runtime", "simulator.programs")),
    ],
)
def test_dependencies_point_one_way(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = forbidden_imports(folder, forbidden)
    assert not bad, "\n".join(bad)


def test_an_engine_import_of_an_adapter_is_caught() -> None:
    source = "import asyncio\n\nfrom ..adapters.http import HttpServer\nfrom simulator.interfaces import ModelInputs\n"
    assert forbidden_in(source, "simulator.runtime", ("simulator.adapters",)) == [(3, "simulator.adapters.http")]


@pytest.mark.parametrize("folder", ["simulator/model", "machines"])
def test_the_model_reads_only_the_plant_settings(folder: str) -> None:
    bad = forbidden_imports(folder, ("simulator.config",), allowed=("simulator.config.plant",))
    assert not bad, "\n".join(bad)


def test_an_import_of_other_config_modules_is_caught() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from simulator.config.plant import PlantSettings\n"
        "import simulator.config.plant\n"
        "if TYPE_CHECKING:\n    from simulator.config.schema import Config\n"
        "def f():\n    from simulator.config import loader\n"
        "from ..config.kafka import Kafka\n"
        "from simulator.config import Config\n"
        "import simulator.config.mqtt\n"
    )
    assert forbidden_in(source, "simulator.model", ("simulator.config",), allowed=("simulator.config.plant",)) == [
        (5, "simulator.config.schema"), (7, "simulator.config"), (8, "simulator.config.kafka"),
        (9, "simulator.config"), (10, "simulator.config.mqtt"),
    ]


def test_the_model_loads_no_other_config_module() -> None:
    """Importing ``simulator.config.plant`` runs the package's ``__init__``, whose re-exports load on
    first use: the model's modules bring in neither the loader nor the connections' settings (only
    what the plant's settings are made of: common types and the machine names)."""
    program = (
        "import sys\n"
        "import simulator.model.simulation, simulator.model.snapshot\n"
        "print(sorted(m for m in sys.modules if m.startswith('simulator.config')))\n"
        "from simulator.config import Config, config_path, load, parse\n"
        "print(Config.__module__, load.__module__, parse.__module__, config_path.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, check=True, cwd=ROOT, text=True).stdout
    assert out.splitlines() == [
        "['simulator.config', 'simulator.config.common', 'simulator.config.machine_ids', 'simulator.config.plant']",
        "simulator.config.schema simulator.config.loader simulator.config.loader simulator.config.loader",
    ]
