"""Exit codes of the command-line tools (``factorysim``, ``lot-sender``) and the one place that maps
errors to them."""

from __future__ import annotations

import sys
from collections.abc import Callable

from simulator.errors import ConfigError, FactorySimError, UsageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run_command(prog: str, command: Callable[[], int]) -> int:
    """``command()``'s exit code; a bad config or flag → 2, any other factorysim error → 1, Ctrl-C →
    130, each with one line on stderr."""
    try:
        return command()
    except (ConfigError, UsageError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FactorySimError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
