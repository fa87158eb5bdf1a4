"""``ninsweep run``: a space checked, listed (``--dry-run``) or run on Ray Tune.

Everything up to the dry run needs neither Ray nor torch (a lab4 dry run takes a quarter of
a second); the sweep's machinery is imported past it.
"""

from __future__ import annotations

import argparse
import time

from ninsweep.cli.diagnostics import route_diagnostics
from ninsweep.console import Console
from ninsweep.locations import join, resolve_storage
from ninsweep.space.dry_run import format_dry_run
from ninsweep.space.loader import (
    load_space,
    override_space,
    parse_assignment,
    resolve_space_path,
)
from ninsweep.space.schema import check_experiment_name, tracker_names
from ninsweep.sweep.preflight import check_trials


def load_spec(args: argparse.Namespace):
    spec = load_space(resolve_space_path(args.space))
    settings = dict(parse_assignment(text) for text in getattr(args, "set", None) or ())
    spec = override_space(spec, settings, max_epochs=args.max_epochs, data_dir=args.data_dir,
                          gpus_per_trial=args.gpus_per_trial,
                          cpus_per_trial=args.cpus_per_trial)
    if getattr(args, "tracker", None):
        # Recorded in the manifest with the space's own: a resume logs to them too.
        spec = spec.model_copy(update={"trackers": tuple(tracker_names(spec.trackers,
                                                                       args.tracker))})
    return spec


def sweep_console(args: argparse.Namespace):
    """The console of run/resume (its streams outlive the driver log's redirection)."""
    console = Console(quiet=getattr(args, "quiet", False))
    route_diagnostics(args, console)
    return console


def command_run(args: argparse.Namespace) -> int:
    started_at = time.time()
    if args.name is not None:
        check_experiment_name(args.name)
    spec = load_spec(args)
    check_trials(spec)  # before the lock below touches the storage, as before Ray starts
    if args.dry_run:
        print(format_dry_run(spec))
        return 0
    # Ray Tune, pyarrow and pandas (~3 s of imports) only past --dry-run.
    from ninsweep.cli.results import finish_sweep
    from ninsweep.storage import experiment_lock
    from ninsweep.sweep.logs import DriverLog
    from ninsweep.sweep.runner import run_sweep

    console = sweep_console(args)
    # Taken before Ray starts: a second run of this name at the same moment, or a storage
    # that is a file, read-only or full, is refused here in one line.
    with experiment_lock(join(resolve_storage(args.storage), args.name or spec.name)):
        with DriverLog(f"ninsweep run {args.space}") as driver_log:
            outcome = run_sweep(spec, storage=args.storage, name=args.name,
                                address=args.address, autoscaling=args.autoscaling,
                                started_at=started_at, console=console, driver_log=driver_log)
    return finish_sweep(outcome, console, driver_log)
