"""A machine changes only through its own methods: no module but ``simulator/model/machine.py`` assigns a
``Machine``'s fields.

The check reads every module of ``simulator/`` and ``machines/`` with ``ast`` and reports each place that
writes an attribute named like one of ``Machine.__slots__`` (an assignment, augmented or annotated
assignment, tuple unpacking, a ``for``/``with``/comprehension target, ``del``, or ``setattr``) on anything
but ``self``, unless that object is known not to be a machine: a name the function binds only as a
parameter or variable annotated with another type (``lot: Lot``, ``lot: Lot | None = machine.current_lot``)
or to a call of another class (``lot = Lot(...)``).  Names of
unknown type count as machines, so a write through a variable of any name (``up.state = ...``), an
attribute chain (``lot.machine.state = ...``) or an item (``machines[mid].load = ...``) is caught; the
exceptions are what keeps ``lot.state``/``lot.block_reason`` (fields a Lot shares with a Machine) apart.

A second test watches the writes themselves: runs with every disruption, utilities, commands and a snapshot
restored, with a ``Machine.__setattr__`` that notes the module of each writer.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from test_snapshot import HORIZONS, commands, config_of, drive, started

from simulator.model import snapshot
from simulator.model.machine import Machine
from simulator.model.records import ListSink

ROOT = Path(__file__).resolve().parents[1]
OWNER = Path("simulator/model/machine.py")  # the one module that changes a machine
FIELDS = frozenset(Machine.__slots__)
_MAYBE_MACHINE = frozenset({"Machine", "Any", "object"})  # annotations that may hold a machine


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)} | \
        {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _scopes(tree: ast.Module) -> list[ast.AST]:
    return [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))]


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of ``scope`` outside its nested functions (those are scopes of their own)."""
    nodes: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        nodes.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return nodes


def _not_machines(scope: ast.AST, nodes: list[ast.AST]) -> set[str]:
    """The names of ``scope`` that are known not to hold a Machine."""
    known: dict[str, bool] = {}  # name -> known not to be a machine (False: may be one)
    args = scope.args if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) else None
    if args is not None:
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                annotation = arg.annotation
                known[arg.arg] = annotation is not None and not (_names_in(annotation) & _MAYBE_MACHINE)
    for node in nodes:  # every other binding of a name: known only if it calls another class
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
            targets, value = [node.target], node.value
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            targets = [node.target]
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            targets = [node.optional_vars]
        for target in targets:
            for name in (n for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)):
                other_class = (isinstance(target, ast.Name) and isinstance(value, ast.Call)
                               and isinstance(value.func, ast.Name) and value.func.id[:1].isupper()
                               and value.func.id not in _MAYBE_MACHINE)
                annotated = isinstance(node, ast.AnnAssign) and not (_names_in(node.annotation) & _MAYBE_MACHINE)
                known[name.id] = known.get(name.id, True) and (other_class or annotated)
    return {name for name, not_machine in known.items() if not_machine}


def _may_be_machine(target: ast.expr, not_machines: set[str]) -> bool:
    if isinstance(target, ast.Name):
        return target.id != "self" and target.id not in not_machines
    return True  # an attribute chain, an item, a call: of unknown type


def machine_writes(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` assigns a Machine field on something other than ``self`` (``file:line: code``)."""
    tree = ast.parse(source, filename)
    lines = source.splitlines()
    found: list[tuple[int, str]] = []
    for scope in _scopes(tree):
        nodes = _own_nodes(scope)
        not_machines = _not_machines(scope, nodes)
        for node in nodes:
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
                obj, field = node.value, node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("setattr", "delattr") and len(node.args) >= 2):
                obj, name = node.args[0], node.args[1]
                field = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "<any>"
            else:
                continue
            if (field in FIELDS or field == "<any>") and _may_be_machine(obj, not_machines):
                found.append((node.lineno, f"{filename}:{node.lineno}: {lines[node.lineno - 1].strip()}"))
    return [text for _, text in sorted(found)]


def test_only_machine_py_changes_a_machine() -> None:
    offenders = []
    for path in sorted([*ROOT.joinpath("simulator").rglob("*.py"), *ROOT.joinpath("machines").rglob("*.py")]):
        relative = path.relative_to(ROOT)
        if relative != OWNER:
            offenders += machine_writes(path.read_text(encoding="utf-8"), str(relative))
    assert not offenders, "use (or add) a Machine method instead:\n" + "\n".join(offenders)


@pytest.mark.timeout(300)
def test_in_a_run_only_machine_py_changes_a_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    writers: dict[str, set[str]] = {}

    def noting_setattr(machine: Machine, name: str, value: Any) -> None:
        caller = sys._getframe(1).f_globals["__name__"]
        writers.setdefault(caller, set()).add(name)
        object.__setattr__(machine, name, value)

    monkeypatch.setattr(Machine, "__setattr__", noting_setattr)
    for name, hours in (("reference", 36), ("enms", 2)):  # every disruption and shifts; utilities
        config, horizon = config_of(name), min(HORIZONS[name], hours * 3600.0)
        sim, _ = started(config, 11)
        script = commands(sim, 12, horizon)
        drive(sim, script, -1.0, horizon / 2)
        document = json.loads(json.dumps(snapshot.take(sim)))
        restored = snapshot.restore(config, ListSink(), document, timeline=(0.0, horizon))
        drive(restored, script, horizon / 2, horizon)
        restored.flush_timeline()
    assert writers.keys() == {"simulator.model.machine"}, writers
    seen = writers["simulator.model.machine"]
    assert {"state", "stoppage", "anomaly", "utility_entry", "maintenance_started", "timeline"} <= seen


def test_the_checked_tree_is_there() -> None:
    assert (ROOT / OWNER).is_file()
    assert machine_writes((ROOT / OWNER).read_text(encoding="utf-8")) == []  # (it writes through self only)
    assert len(list(ROOT.joinpath("simulator", "model").glob("*.py"))) > 10


@pytest.mark.parametrize("snippet", [
    "def f(machine):\n    machine.state = 'idle'\n",
    "def f(m: Machine):\n    m.cycles += 1\n",
    "def f(up):\n    up.in_work = True\n",
    "def f(lot: Lot):\n    lot.machine.state = 'running'\n",
    "def f(machines):\n    machines['x'].load = 0.5\n",
    "def f(m, clock):\n    m.utility_factor, m.utility_change = clock()\n",
    "def f(m, x: Any):\n    x.stoppage = None\n",
    "def f(m):\n    m.anomaly_until: float = 1.0\n",
    "def f(m):\n    del m.stoppage\n",
    "def f(m, values):\n    for m.state in values:\n        pass\n",
    "def f(m):\n    setattr(m, 'state', 'idle')\n",
    "def f(m, key):\n    setattr(m, key, 1)\n",
    "def f(lot):\n    lot.state = 'QUEUED'\n",  # (type unknown: counted as a machine)
    "def f(lot: Lot):\n    lot = machine_of()\n    lot.state = 'idle'\n",
    "def f(m):\n    x: Machine = m\n    x.state = 'idle'\n",
    "machine = plant.machines['x']\nmachine.block_reason = 'jam'\n",
    "class Other:\n    def f(self, machine):\n        machine.since = 0.0\n",
    "def f(lot: Lot):\n    def g(lot):\n        lot.state = 'idle'\n",
])
def test_the_check_finds_a_write(snippet: str) -> None:
    assert machine_writes(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "class Machine:\n    def f(self):\n        self.state = 'idle'\n",
    "def f(lot: Lot):\n    lot.state = 'QUEUED'\n    lot.block_reason = None\n",
    "def f(d):\n    lot = Lot(d)\n    lot.state = 'QUEUED'\n",
    "def f(pool: MachinePool, m: Machine):\n    pool.location = 'x'\n",
    "def f(m):\n    x = m.state\n    m.assign(None, 0.0)\n",
    "def f(m):\n    m.not_a_machine_field = 1\n",
    "def f(lot):\n    setattr(lot, 'work', 1.0)\n",
    "def f(m):\n    lot: Lot | None = m.current_lot\n    lot.block_reason = None\n",
])
def test_the_check_lets_these_be(snippet: str) -> None:
    assert machine_writes(snippet) == [], snippet
