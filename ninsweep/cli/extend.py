"""``ninsweep extend``: more seeds, or more cells, for a finished experiment."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ninsweep.cli.run import sweep_console
from ninsweep.errors import NinsweepError
from ninsweep.experiment_dir import ERROR, FINISHED, SKIPPED, STOPPED
from ninsweep.locations import is_uri
from ninsweep.space.dry_run import format_dry_run
from ninsweep.space.extend import from_space, more_seeds
from ninsweep.space.loader import load_space, resolve_space_path


def command_extend(args: argparse.Namespace) -> int:
    # The analysis (pandas) reads what ran; Ray starts only past the checks and --dry-run.
    from ninsweep.analysis.results import load_experiment

    experiment = args.experiment if is_uri(args.experiment) else str(
        Path(args.experiment).expanduser().resolve())
    if (args.seeds is None) == (args.space is None):
        raise NinsweepError("extend: give --seeds N or --space FILE (one of them)")
    exp = load_experiment(experiment)
    if exp.spec is None:
        raise NinsweepError(f"{experiment}: has no ninsweep.json; only a ninsweep experiment "
                            "can be extended")
    open_trials = [t.name for t in exp.trials if t.status not in (FINISHED, STOPPED, ERROR, SKIPPED)]
    if open_trials:
        raise NinsweepError(f"{experiment}: {len(open_trials)} trial(s) not finished (e.g. "
                            f"{open_trials[0]}); finish them with `ninsweep resume "
                            f"{args.experiment}` first")
    if args.seeds is not None:
        added = more_seeds(exp.spec, args.seeds, experiment)
    else:
        added = from_space(exp.spec, load_space(resolve_space_path(args.space)), experiment)
    if args.dry_run:
        print(format_dry_run(exp.spec.model_copy(update={"trials": tuple(added)})))
        return 0

    from ninsweep.cli.results import finish_sweep
    from ninsweep.storage import experiment_lock
    from ninsweep.sweep.logs import DriverLog
    from ninsweep.sweep.runner import extend_sweep

    console = sweep_console(args)
    command = shlex.join(["ninsweep", *sys.argv[1:]]) if sys.argv[1:] else "ninsweep extend"
    with experiment_lock(experiment, create=False):
        with DriverLog(f"ninsweep extend {args.experiment}") as driver_log:
            outcome = extend_sweep(experiment, added, command=command, address=args.address,
                                   autoscaling=args.autoscaling, console=console,
                                   driver_log=driver_log)
    return finish_sweep(outcome, console, driver_log)
