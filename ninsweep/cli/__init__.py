"""The ``ninsweep`` command.

Each subcommand parses its flags (``cli.parsers``), calls one module, and prints. A
``NinsweepError`` (bad input: a flag, a file, a checkpoint) becomes one line on stderr and
exit status 2; anything else is a bug and keeps its traceback. Exit statuses: ``cli.exits``.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from ninsweep.cli.diagnostics import route_diagnostics
from ninsweep.cli.exits import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE
from ninsweep.cli.parsers import build_parser
from ninsweep.errors import NinsweepError, Terminated
from ninsweep.registry import resolve

__all__ = ["build_parser", "main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    route_diagnostics(args)
    try:
        # A handler is named by import path: only its command's module is imported.
        handler = args.handler if callable(args.handler) else resolve(args.handler)
        return handler(args)
    except NinsweepError as err:
        message = " ".join(str(err).split("\n"))
        print(f"ninsweep: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as stop:
        if isinstance(stop, Terminated):
            print("\nstopped by SIGTERM", file=sys.stderr)
            return EXIT_TERMINATED
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
