"""Dependencies point one way: programs → runtime (the engine) and adapters; adapters → interfaces
← runtime; the model imports none of them.  Every import statement counts: at module level,
inside functions and classes, and under ``if TYPE_CHECKING:``; relative imports are resolved
against the importing module's package."""

from __future__ import annotations

import ast
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


def forbidden_imports(folder: str, forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """One line per import statement under ``<root>/simulator/<folder>`` that reaches a ``forbidden``
    package."""
    bad: dict[tuple[str, int], str] = {}
    for path in sorted((root / "simulator" / folder).rglob("*.py")):
        name = module_name(path, root)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for line, module in imported_modules(path.read_text(encoding="utf-8"), package):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                where = (str(path.relative_to(root)), line)
                bad[where] = min(bad.get(where, module), module, key=len)  # "from a import b": a
    return [f"{file}:{line} imports {module}" for (file, line), module in sorted(bad.items())]


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
        ("adapters", ("simulator.runtime", "simulator.programs")),
        ("runtime", ("simulator.adapters", "simulator.programs")),
        ("model", ("simulator.adapters", "simulator.runtime", "simulator.programs")),
    ],
)
def test_dependencies_point_one_way(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = forbidden_imports(folder, forbidden)
    assert not bad, "\n".join(bad)


def test_a_forbidden_import_is_reported(tmp_path: Path) -> None:
    engine = tmp_path / "simulator" / "runtime"
    engine.mkdir(parents=True)
    (engine / "clean.py").write_text("from simulator.interfaces import ModelInputs\n", encoding="utf-8")
    (engine / "example.py").write_text("import asyncio\n\nfrom ..adapters.http import HttpServer\n", encoding="utf-8")
    assert forbidden_imports("runtime", ("simulator.adapters",), root=tmp_path) == [
        "simulator/runtime/example.py:3 imports simulator.adapters.http"]
