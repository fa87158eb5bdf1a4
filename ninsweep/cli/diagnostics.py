"""Where ninsweep's ``logging`` diagnostics go on the command line."""

from __future__ import annotations

import argparse
import logging
import sys

from ninsweep.console import route_logging


def route_diagnostics(args: argparse.Namespace, console=None) -> None:
    """ninsweep's `logging` diagnostics to stderr: warnings, and INFO with --verbose."""
    route_logging(console.err if console is not None else sys.stderr,
                  logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
