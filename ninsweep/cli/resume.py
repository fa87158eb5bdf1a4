"""``ninsweep resume``: an interrupted sweep continued on Ray Tune, from its manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from ninsweep.cli.results import finish_sweep
from ninsweep.cli.run import sweep_console
from ninsweep.locations import is_uri
from ninsweep.storage import experiment_lock
from ninsweep.sweep.logs import DriverLog
from ninsweep.sweep.runner import resume_sweep


def command_resume(args: argparse.Namespace) -> int:
    experiment = args.experiment if is_uri(args.experiment) else str(
        Path(args.experiment).expanduser().resolve())
    console = sweep_console(args)
    with experiment_lock(experiment, create=False):
        with DriverLog(f"ninsweep resume {args.experiment}") as driver_log:
            outcome = resume_sweep(args.experiment, address=args.address,
                                   autoscaling=args.autoscaling, console=console,
                                   driver_log=driver_log, trackers=args.tracker or ())
    return finish_sweep(outcome, console, driver_log)
