"""lot-sender from a checkout without installing the package: ``python3 tools/lot_sender.py --help``
(installed, the same command is ``lot-sender``; the code is ``simulator/lotsender/``).

Run with a Python that lacks the dependencies (e.g. the system's ``python3``), it runs itself again
with the checkout's virtualenv (``.venv``, made by ``make run`` or ``make test``) or says how to get one.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

try:
    from simulator.lotsender.cli import main
except ImportError as exc:
    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists() and not os.environ.get("FACTORYSIM_TOOLS_REEXEC"):  # once, not in a loop
        os.environ["FACTORYSIM_TOOLS_REEXEC"] = "1"
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])  # noqa: S606 - no shell wanted
    sys.stderr.write(f"lot-sender: this Python lacks factorysim's dependencies ({exc.name or exc}); run `make install` "
                     f"in {ROOT} once, then `.venv/bin/lot-sender` (or this script again)\n")
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
