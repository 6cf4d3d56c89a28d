"""lot-sender from a checkout without installing the package: ``python tools/lot_sender.py --help``
(installed, the same command is ``lot-sender``; the code is ``simulator/lotsender/``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.lotsender.cli import main

if __name__ == "__main__":
    sys.exit(main())
