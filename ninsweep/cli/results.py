"""``ninsweep status``, ``export`` and ``report``, and the tables a sweep ends with.

Each reads the experiment directory alone (``analysis``): no Ray, no torch.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from ninsweep.analysis.export import (
    check_epoch_csv,
    refresh_csvs,
    status_json,
    write_csvs,
    write_epoch_csv,
)
from ninsweep.analysis.results import STATUS_COLUMNS, load_experiment
from ninsweep.analysis.text import format_status, summary_table
from ninsweep.console import Console
from ninsweep.errors import NinsweepError
from ninsweep.experiment_dir import ERROR_FILE, REPORT_DIR, REPORT_FILE, TRIAL_LOG


def command_status(args: argparse.Namespace) -> int:
    if getattr(args, "json", False):
        print(json.dumps(status_json(load_experiment(args.experiment)), indent=2))
        return 0
    print(format_status(load_experiment(args.experiment, columns=STATUS_COLUMNS)))
    return 0


def command_export(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment)
    epochs_path = None
    if getattr(args, "per_epoch", False):
        epochs_path = check_epoch_csv(experiment, args.output, force=args.force)
    written = list(write_csvs(experiment, args.output, baseline=args.baseline,
                              force=args.force))
    if epochs_path is not None:
        written.append(write_epoch_csv(experiment, epochs_path))
    for path in written:
        print(f"wrote {path}")
    return 0


def command_report(args: argparse.Namespace) -> int:
    # matplotlib (~1 s to import) only here: status and export never draw.
    from ninsweep.analysis.report import REPORT_HTML, write_report

    experiment = load_experiment(args.experiment)
    beside = {}
    if getattr(args, "html", False):
        # The dashboard's page in one file (plotly: the dashboard extra, checked before any file).
        from ninsweep.dashboard.assets import served_assets
        from ninsweep.dashboard.html import render_report

        served_assets()
        beside[REPORT_HTML] = lambda: render_report(experiment, baseline=args.baseline)
    path = write_report(experiment, args.output, baseline=args.baseline, force=args.force,
                        beside=beside)
    print(f"wrote {path}")
    for name in beside:
        print(f"wrote {path.with_name(name)}")
    return 0


def finish_sweep(outcome, console=None, driver_log=None, out=None) -> int:
    """The closing summary, tables and advice (on stdout: shown under --quiet too)."""
    console = console or Console(out or sys.stdout)
    experiment_dir = outcome.experiment_dir
    stopped = f"{outcome.stopped} stopped early, " if outcome.stopped else ""
    console.text(f"\n{outcome.finished}/{outcome.total} trials finished, {stopped}"
                 f"{outcome.errored} errored, wall time {outcome.wall_time_s:.0f} s")
    try:
        experiment = load_experiment(experiment_dir)
        console.text(format_status(experiment))
        console.text()
        console.text(summary_table(experiment))
        if not outcome.storage_full:
            # Where there is no room nothing more is written: the CSVs and report keep their
            # last whole versions, and the next resume or export refreshes them.
            written = refresh_csvs(experiment)
            if (experiment.path / REPORT_DIR / REPORT_FILE).exists():  # an earlier `report`'s
                from ninsweep.analysis.report import write_report  # matplotlib: only then

                written.append(write_report(experiment))
            console.text("wrote " + ", ".join(str(p) for p in written))
            # The next step: report.md with every table, the interactions and the figures.
            console.text(f"report: ninsweep report {shlex.quote(str(experiment_dir))}")
    except NinsweepError as err:
        console.error(f"no results table: {err}")
    if outcome.storage_full:
        console.error(f"ninsweep: error: {outcome.storage_full}")
        return outcome.exit_code
    if (outcome.interrupted or outcome.errored) and driver_log is not None:
        console.text(f"logs: Ray's driver output in {driver_log.path}; each trial's output in "
                     f"{experiment_dir}/<trial>/{TRIAL_LOG} (tracebacks in {ERROR_FILE})")
    if outcome.interrupted:
        how = "stopped by SIGTERM" if outcome.terminated else "interrupted"
        console.text(f"{how}: {outcome.total - outcome.finished - outcome.errored} trials "
                     f"unfinished; continue with: ninsweep resume {experiment_dir}")
    if outcome.config_errors:
        # Resuming reruns the same configuration: it cannot help.
        console.text(f"{outcome.config_errors} trials cannot run as configured (see their "
                     "error lines above); fix the space and run it under a new --name")
    retriable = outcome.errored - outcome.config_errors
    if retriable and not outcome.interrupted:
        console.text(f"{retriable} trials failed; retry them with: "
                     f"ninsweep resume {experiment_dir}")
    return outcome.exit_code
