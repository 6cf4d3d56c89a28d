"""The purity fence of simulator/model/ and machines/ (README, "Layout"), checked against the project's own ruff config.

Each banned use is piped to ``ruff check --stdin-filename <repo>/<fenced dir>/_fence_probe.py -``: ruff discovers
the configuration for that path exactly as it does for a real module there (simulator/model/ruff.toml,
machines/ruff.toml, the root pyproject.toml), and nothing is written into the tree.  The expected codes and
messages are spelled out here, not read from the config, so dropping a ban fails this test.

What ruff cannot express (an unseeded ``random.Random()``, the builtins ``hash`` and ``input``) is checked on the
real modules by an AST scan at the end.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruff.__main__ import find_ruff_bin

RUFF = find_ruff_bin()  # the venv's ruff, the one `make lint` runs
REPO = Path(__file__).resolve().parent.parent
FENCED = ("simulator/model", "machines")
PURE = "is banned: the model is pure (simulator/model/, machines/): "
STREAM = "is banned: use the entity's injected random stream, never the global random state"

# (id, source, ruff code, fragment of the message)
CASES: list[tuple[str, str, str, str]] = [
    # the async shell, the network, the adapters
    ("asyncio", "import asyncio\n\nasyncio.get_event_loop()\n", "TID251", PURE + "no asyncio"),
    ("aiokafka", "from aiokafka import AIOKafkaProducer\n", "TID251", PURE + "no Kafka client"),
    ("aiohttp", "import aiohttp\n", "TID251", PURE + "no HTTP"),
    ("gmqtt", "import gmqtt\n", "TID251", PURE + "no MQTT client"),
    ("paho", "import paho.mqtt.client as mqtt\n", "TID251", PURE + "no MQTT client"),
    ("aiomqtt", "from aiomqtt import Client\n", "TID251", PURE + "no MQTT client"),
    ("prometheus_client", "from prometheus_client import Counter\n", "TID251", PURE + "no metrics"),
    ("socket", "import socket\n", "TID251", PURE + "no network I/O"),
    ("ssl", "import ssl\n", "TID251", PURE + "no network I/O"),
    ("urllib", "from urllib.request import urlopen\n", "TID251", PURE + "no network I/O"),
    ("http", "import http.client\n", "TID251", PURE + "no network I/O"),
    # processes, threads, signals, the interpreter
    ("subprocess", "import subprocess\n", "TID251", PURE + "no processes, threads or signals"),
    ("multiprocessing", "import multiprocessing\n", "TID251", PURE + "no processes, threads or signals"),
    ("threading", "import threading\n", "TID251", PURE + "no processes, threads or signals"),
    ("concurrent", "from concurrent.futures import ThreadPoolExecutor\n", "TID251",
     PURE + "no processes, threads or signals"),
    ("signal", "import signal\n", "TID251", PURE + "no processes, threads or signals"),
    ("sys", "import sys\n\nsys.stderr.write('x')\n", "TID251", PURE + "no stdout/stderr"),
    ("breakpoint", "breakpoint()\n", "T100", "`breakpoint` used"),
    ("pdb", "import pdb\n", "T100", "`pdb` found"),
    # output and files
    ("print", "print('x')\n", "T201", "`print` found"),
    ("pprint", "from pprint import pprint\n\npprint({})\n", "T203", "`pprint` found"),
    ("logging", "import logging\n\nlogging.getLogger(__name__).info('x')\n", "TID251", PURE + "no logging"),
    ("warnings", "import warnings\n\nwarnings.warn('x', stacklevel=1)\n", "TID251", PURE + "no warnings"),
    ("os", "import os\n\nos.environ.get('X')\n", "TID251", PURE + "no environment or files"),
    ("os.path", "from os import path\n", "TID251", PURE + "no environment or files"),
    ("open", "with open('x') as f:\n    f.read()\n", "PTH123", "`open()`"),
    ("io", "import io\n\nio.open('x')\n", "TID251", PURE + "no files or streams"),
    ("pathlib", "from pathlib import Path\n\nPath('x').read_text()\n", "TID251", PURE + "no files"),
    ("shutil", "import shutil\n", "TID251", PURE + "no files"),
    ("tempfile", "import tempfile\n", "TID251", PURE + "no files"),
    ("glob", "import glob\n", "TID251", PURE + "no files"),
    # clocks and time zones
    ("time", "import time\n\ntime.monotonic()\n", "TID251", PURE + "read no clock"),
    ("datetime.now", "import datetime as dt\n\ndt.datetime.now(dt.UTC)\n", "TID251", PURE + "read no clock"),
    ("datetime.utcnow", "from datetime import datetime\n\ndatetime.utcnow()\n", "TID251", PURE + "read no clock"),
    ("datetime.today", "import datetime\n\ndatetime.datetime.today()\n", "TID251", PURE + "read no clock"),
    ("date.today", "from datetime import date\n\ndate.today()\n", "TID251", PURE + "read no clock"),
    ("fromtimestamp", "import datetime as dt\n\ndt.datetime.fromtimestamp(0)\n", "DTZ006", "without a `tz`"),
    ("date.fromtimestamp", "import datetime as dt\n\ndt.date.fromtimestamp(0)\n", "DTZ012", "fromtimestamp()"),
    ("zoneinfo", "from zoneinfo import ZoneInfo\n", "TID251", PURE + "use pytz"),
    # entropy
    ("secrets", "import secrets\n", "TID251", PURE + "no OS entropy"),
    ("uuid1", "import uuid\n\nuuid.uuid1()\n", "TID251", PURE + "no clock- or entropy-based ids"),
    ("uuid4", "from uuid import uuid4\n", "TID251", PURE + "no clock- or entropy-based ids"),
    ("SystemRandom", "import random\n\nrandom.SystemRandom()\n", "TID251", PURE + "no OS entropy"),
    ("from random import", "from random import shuffle\n", "TID251", STREAM),
    *[(f"random.{name}", f"import random\n\nrandom.{name}()\n", "TID251", STREAM) for name in (
        "seed", "getstate", "setstate", "random", "uniform", "randint", "randrange", "getrandbits", "randbytes",
        "choice", "choices", "sample", "shuffle", "gauss", "normalvariate", "lognormvariate", "expovariate",
        "triangular", "betavariate", "gammavariate", "paretovariate", "weibullvariate", "vonmisesvariate",
        "binomialvariate")],
]

CLEAN = '''"""A fenced module using only what the fence allows."""

import datetime as dt
import hashlib
import random

import pytz


def draw(seed: int) -> tuple[int, float, str]:
    rng = random.Random(seed)
    local = pytz.timezone("Europe/Rome").localize(dt.datetime(2024, 3, 31, 3, 30))
    epoch = dt.datetime.fromtimestamp(0, tz=dt.UTC)
    digest = hashlib.blake2b(b"lot", digest_size=8).hexdigest()
    return rng.randint(1, 6), rng.gauss(0.0, 1.0), f"{local.isoformat()} {epoch.isoformat()} {digest}"
'''


def ruff(directory: str, source: str) -> tuple[int, list[dict[str, Any]]]:
    """Lint ``source`` as if it were a new module in ``directory`` of this checkout."""
    done = subprocess.run(
        [RUFF, "check", "--no-cache", "--output-format", "json",
         "--stdin-filename", str(REPO / directory / "_fence_probe.py"), "-"],
        input=source, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert done.returncode in (0, 1), done.stderr  # 2: ruff failed (a broken config, say)
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("directory", FENCED)
@pytest.mark.parametrize(("source", "code", "message"), [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_banned_use_is_rejected(directory: str, source: str, code: str, message: str) -> None:
    returncode, found = ruff(directory, source)
    assert returncode == 1
    hits = [d for d in found if d["code"] == code and message in d["message"]]
    assert hits, f"{code} {message!r} not reported in {directory}/; ruff said: " \
                 f"{[(d['code'], d['message']) for d in found]}"


@pytest.mark.parametrize("directory", FENCED)
def test_clean_module_passes(directory: str) -> None:
    assert ruff(directory, CLEAN) == (0, [])


def test_fence_is_only_around_the_pure_packages() -> None:
    # the same uses are fine in the shell: the rejections above come from the fenced directories' config
    returncode, found = ruff("simulator/runtime", "import logging\nimport os\n\nlogging.info(os.sep)\n")
    assert (returncode, found) == (0, [])


# -- what ruff cannot express, checked on the real modules -------------------------------------------------
def unfenced_calls(tree: ast.AST) -> list[str]:
    """Unseeded ``Random()``/``Random(None)`` and calls of the builtins ``hash`` (salted per process for str)
    and ``input``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        seed = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg in ("x", "a")), None)
        unseeded = seed is None or (isinstance(seed, ast.Constant) and seed.value is None)
        if (name == "Random" and unseeded) or (isinstance(func, ast.Name) and name in ("hash", "input")):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_scanner_finds_what_it_looks_for() -> None:
    source = "import random\nrandom.Random()\nrandom.Random(None)\nhash('a')\ninput()\nrandom.Random(7)\n"
    assert unfenced_calls(ast.parse(source)) == \
        ["2: random.Random()", "3: random.Random(None)", "4: hash('a')", "5: input()"]


@pytest.mark.parametrize("directory", FENCED)
def test_no_unseeded_random_or_salted_hash_in_the_tree(directory: str) -> None:
    modules = sorted((REPO / directory).glob("*.py"))
    assert modules
    found = {str(m.relative_to(REPO)): hits for m in modules if (hits := unfenced_calls(ast.parse(m.read_text())))}
    assert found == {}
