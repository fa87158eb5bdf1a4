"""The ``ninsweep`` command.

Each subcommand parses its flags, calls one module, and prints. A ``NinsweepError`` (bad input:
a flag, a file, a checkpoint) becomes one line on stderr and exit status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence


from .errors import CheckpointError, ConfigError, NinsweepError, Terminated
from .fmt import reason

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


# -- train: one model, no Ray --------------------------------------------------------------

def _parse_assignment(text: str) -> tuple[str, Any]:
    from .space import parse_assignment  # the space file's YAML rules: 1e-4 is a float

    return parse_assignment(text)


def trial_config_from_args(args: argparse.Namespace):
    from .config import TrialConfig

    sections: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    flags = {
        "model": {"activation": args.activation, "batchnorm": args.batchnorm, "init": args.init,
                  "pool2": args.pool2},
        "data": {"source": args.data, "root": args.data_dir, "train_subset": args.train_subset,
                 "test_subset": args.test_subset},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                  "seed": args.seed, "device": args.device, "threads": args.threads,
                  "amp": args.amp, "compile": args.compile},
    }
    for section, values in flags.items():
        sections[section].update({k: v for k, v in values.items() if v is not None})
    for assignment in args.set or ():
        key, value = _parse_assignment(assignment)
        section, _, field = key.partition(".")
        if section not in sections:
            raise ConfigError(f"--set {key}: unknown section {section!r} (model, data, train)")
        sections[section][field] = value
    return TrialConfig.from_dict(sections)


def _checkpoint_dir(text: str) -> Path:
    """The --checkpoint-dir, made and proven writable before any training time is spent."""
    directory = Path(text).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--checkpoint-dir {text}: is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe, probe_path = tempfile.mkstemp(dir=directory, prefix=".ninsweep-probe-")
        os.close(probe)
        os.unlink(probe_path)
    except OSError as err:
        raise ConfigError(f"--checkpoint-dir {text}: cannot write there "
                          f"({reason(err)})") from None
    return directory


def _format_epoch(result: dict[str, float], epochs: int) -> str:
    from . import metrics as M

    return (f"epoch {result[M.EPOCH]:>3}/{epochs}  "
            f"train loss {result[M.TRAIN_LOSS]:.4f} acc {100 * result[M.TRAIN_ACC]:6.2f}%  "
            f"test loss {result[M.TEST_LOSS]:.4f} acc {100 * result[M.TEST_ACC]:6.2f}%  "
            f"lr {result[M.LR]:.4g}  {result[M.EPOCH_TIME_S]:6.1f} s  "
            f"{result[M.IMAGES_PER_S]:6.0f} img/s")


def command_train(args: argparse.Namespace) -> int:
    from . import metrics as M
    from .train import (CHECKPOINT_FILE, Trainer, check_architecture, check_recipe,
                        load_checkpoint, save_checkpoint)

    cfg = trial_config_from_args(args)
    checkpoint_path = (_checkpoint_dir(args.checkpoint_dir) / CHECKPOINT_FILE
                       if args.checkpoint_dir else None)
    state = None
    if checkpoint_path is not None and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        # Refuse before spending time on data and model.
        check_architecture(state, cfg.model)
        check_recipe(state, cfg, where=f"checkpoint {checkpoint_path}")
        done = int(state.get("epoch", 0))
        if done > cfg.train.epochs:
            raise CheckpointError(
                f"checkpoint {checkpoint_path} is at epoch {done}, past --epochs "
                f"{cfg.train.epochs}: that run already trained further; give --epochs {done} "
                "or more to continue it, or another --checkpoint-dir")
        if done == cfg.train.epochs:
            print(f"already finished: checkpoint {checkpoint_path} is at epoch {done} of "
                  f"{cfg.train.epochs}; nothing to train")
            return 0

    trainer = Trainer(cfg, log=lambda message: print(message, flush=True))
    model = (f"{cfg.model.factory}({', '.join(f'{k}={v!r}' for k, v in cfg.model.factory_kwargs.items())})"
             if cfg.model.factory else
             f"NIN {cfg.model.activation}, batchnorm {'on' if cfg.model.batchnorm else 'off'}, "
             f"init {cfg.model.init}")
    print(f"{model}: {trainer.num_parameters:,} parameters on {trainer.device}; "
          f"data {cfg.data.source}: {trainer.train_loader.num_images} train / "
          f"{trainer.test_loader.num_images} test images", flush=True)
    if state is not None:
        trainer.load_state_dict(state)
        print(f"resumed from {checkpoint_path} after epoch {trainer.epoch}", flush=True)
        for result in trainer.history:
            print(_format_epoch(result, cfg.train.epochs) + "  (from checkpoint)")

    def on_epoch_end(result: dict[str, float], trainer: Trainer) -> None:
        print(_format_epoch(result, cfg.train.epochs), flush=True)
        if checkpoint_path is not None:
            save_checkpoint(trainer.state_dict(), checkpoint_path)

    from .console import Console, StepProgress

    steps = StepProgress(Console(), epoch_of=lambda: trainer.epoch + 1)
    try:
        history = trainer.fit(on_epoch_end, on_step=steps)
    except KeyboardInterrupt:
        steps.close()
        where = f"; run the same command to resume from {checkpoint_path}" if checkpoint_path else ""
        print(f"\ninterrupted after epoch {trainer.epoch}{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not history:
        print("nothing to train: the checkpoint has already reached --epochs")
        return 0
    best = max(history, key=lambda r: r[M.TEST_ACC])
    print(f"final test accuracy {100 * history[-1][M.TEST_ACC]:.2f}% "
          f"(best {100 * best[M.TEST_ACC]:.2f}% at epoch {best[M.EPOCH]})")
    return 0


def _add_train_parser(commands) -> None:
    parser = commands.add_parser(
        "train", help="train one model of the study, without Ray",
        description="Train one NIN with the reference recipe. Flags override the recipe; "
                    "--set SECTION.KEY=VALUE reaches every setting (see ninsweep/config.py).",
        epilog=TRAIN_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    from .registry import ACTIVATIONS, INITS, SOURCES  # the names, without torch

    parser.add_argument("--activation", help=f"{', '.join(ACTIVATIONS)} (default relu)")
    parser.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                        help="BatchNorm after every conv (default off)")
    parser.add_argument("--init", help=f"{', '.join(INITS)} (default keras)")
    parser.add_argument("--pool2", help="max (default, the report's table) or avg (its code)")
    parser.add_argument("--data", help=f"{', '.join(SOURCES)} (default cifar10)")
    parser.add_argument("--data-dir", help="cifar10 download root, or the image folder root")
    parser.add_argument("--train-subset", type=int, help="train on the first N images")
    parser.add_argument("--test-subset", type=int, help="test on the first N images")
    parser.add_argument("--epochs", type=int, help="default 164")
    parser.add_argument("--batch-size", type=int, help="default 128")
    parser.add_argument("--lr", type=float, help="initial learning rate (default 0.1)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast on CUDA (default on)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default off)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="any other setting, e.g. --set train.weight_decay=0")
    parser.add_argument("--checkpoint-dir",
                        help="save a checkpoint here after every epoch; resume from it if present")
    parser.set_defaults(handler=command_train)


# -- sweeps ---------------------------------------------------------------------------------

def _load_spec(args: argparse.Namespace):
    from .space import load_space, resolve_space_path

    spec = load_space(resolve_space_path(args.space))
    settings = dict(_parse_assignment(text) for text in getattr(args, "set", None) or ())
    spec = spec.with_overrides(max_epochs=args.max_epochs, data_dir=args.data_dir,
                               gpus_per_trial=args.gpus_per_trial,
                               cpus_per_trial=args.cpus_per_trial, settings=settings)
    if getattr(args, "tracker", None):
        from .tracking import tracker_names

        # Recorded in the manifest with the space's own: a resume logs to them too.
        spec = spec.model_copy(update={"trackers": tuple(tracker_names(spec.trackers,
                                                                       args.tracker))})
    return spec


def _finish_sweep(outcome, console=None, driver_log=None, out=None) -> int:
    """The closing summary, tables and advice (on stdout: shown under --quiet too)."""
    from .analysis import format_status, load_experiment, summary_table, write_csvs
    from .console import TRIAL_LOG, Console

    console = console or Console(out or sys.stdout)
    experiment_dir = outcome.experiment_dir
    console.text(f"\n{outcome.finished}/{outcome.total} trials finished, {outcome.errored} "
                 f"errored, wall time {outcome.wall_time_s:.0f} s")
    try:
        experiment = load_experiment(experiment_dir)
        console.text(format_status(experiment))
        console.text()
        console.text(summary_table(experiment))
        written = write_csvs(experiment)
        console.text("wrote " + ", ".join(str(p) for p in written))
    except NinsweepError as err:
        console.error(f"no results table: {err}")
    if (outcome.interrupted or outcome.errored) and driver_log is not None:
        console.text(f"logs: Ray's driver output in {driver_log.path}; each trial's output in "
                     f"{experiment_dir}/<trial>/{TRIAL_LOG} (tracebacks in error.txt)")
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


def _sweep_console(args: argparse.Namespace):
    """The console of run/resume (its streams outlive the driver log's redirection)."""
    from .console import Console

    console = Console(quiet=getattr(args, "quiet", False))
    _route_diagnostics(args, console)
    return console


def _route_diagnostics(args: argparse.Namespace, console=None) -> None:
    """ninsweep's `logging` diagnostics to stderr: warnings, and INFO with --verbose."""
    import logging

    from .console import route_logging

    route_logging(console.err if console is not None else sys.stderr,
                  logging.INFO if getattr(args, "verbose", False) else logging.WARNING)


def command_run(args: argparse.Namespace) -> int:
    from .preflight import check_trials
    from .space import check_experiment_name, format_dry_run

    started_at = time.time()
    if args.name is not None:
        check_experiment_name(args.name)
    spec = _load_spec(args)
    check_trials(spec)  # before the lock below touches the storage, as before Ray starts
    if args.dry_run:
        print(format_dry_run(spec))
        return 0
    # Ray Tune (~2 s of imports) only past --dry-run, which needs neither Ray nor torch.
    from .console import DriverLog
    from .storage import experiment_lock, join, resolve_storage
    from .sweep import run_sweep

    console = _sweep_console(args)
    # Taken before Ray starts: a second run of this name at the same moment, or a storage
    # that is a file, read-only or full, is refused here in one line.
    with experiment_lock(join(resolve_storage(args.storage), args.name or spec.name)):
        with DriverLog(f"ninsweep run {args.space}") as driver_log:
            outcome = run_sweep(spec, storage=args.storage, name=args.name,
                                address=args.address, autoscaling=args.autoscaling,
                                started_at=started_at, console=console, driver_log=driver_log)
    return _finish_sweep(outcome, console, driver_log)


def command_resume(args: argparse.Namespace) -> int:
    from .console import DriverLog
    from .storage import experiment_lock, is_uri
    from .sweep import resume_sweep

    experiment = args.experiment if is_uri(args.experiment) else str(
        Path(args.experiment).expanduser().resolve())
    console = _sweep_console(args)
    with experiment_lock(experiment, create=False):
        with DriverLog(f"ninsweep resume {args.experiment}") as driver_log:
            outcome = resume_sweep(args.experiment, address=args.address,
                                   autoscaling=args.autoscaling, console=console,
                                   driver_log=driver_log, trackers=args.tracker or ())
    return _finish_sweep(outcome, console, driver_log)


def command_status(args: argparse.Namespace) -> int:
    from .analysis import STATUS_COLUMNS, format_status, load_experiment

    if getattr(args, "json", False):
        import json

        from .records import status_json

        print(json.dumps(status_json(load_experiment(args.experiment)), indent=2))
        return 0
    print(format_status(load_experiment(args.experiment, columns=STATUS_COLUMNS)))
    return 0


def command_export(args: argparse.Namespace) -> int:
    from .analysis import load_experiment, write_csvs

    experiment = load_experiment(args.experiment)
    epochs_path = None
    if getattr(args, "per_epoch", False):
        from .records import check_epoch_csv

        epochs_path = check_epoch_csv(experiment, args.output, force=args.force)
    written = list(write_csvs(experiment, args.output, baseline=args.baseline,
                              force=args.force))
    if epochs_path is not None:
        from .records import write_epoch_csv

        written.append(write_epoch_csv(experiment, epochs_path))
    for path in written:
        print(f"wrote {path}")
    return 0


def command_report(args: argparse.Namespace) -> int:
    from .analysis import load_experiment
    from .report import write_report

    html = getattr(args, "html", False)
    path = write_report(load_experiment(args.experiment), args.output, baseline=args.baseline,
                        force=args.force, html=html)
    print(f"wrote {path}")
    if html:
        print(f"wrote {path.with_name('report.html')}")
    return 0


def command_dashboard(args: argparse.Namespace) -> int:
    from .dashboard.server import DashboardServer, open_experiments

    served = open_experiments(args.experiment)
    server = DashboardServer(served, host=args.host, port=args.port)
    names = ", ".join(s.live.name for s in served.values())
    print(f"ninsweep dashboard of {names} at {server.url}", flush=True)
    if server.token:
        print(f"not a loopback address: every request needs the token {server.token} "
              "(the address above carries it); Ctrl-C stops", flush=True)
    else:
        print("read-only; Ctrl-C stops", flush=True)
    server.run()
    return 0


BASELINE_HELP = ("compare every config with this one (a config label such as ReLU), "
                 "besides the best; rows 'config' in the effects table")
FORCE_HELP = ("replace existing files at --output (the experiment's own files are always "
              "refreshed; nothing else inside the experiment is ever written)")
AUTOSCALING_HELP = ("the cluster adds nodes on demand: warn, instead of refusing, when no "
                    "node can run a trial yet")
EXPERIMENT_HELP = ("an experiment directory (STORAGE/NAME, e.g. ~/ninsweep-results/smoke) or "
                   "an s3:// or gs:// URI")
EXAMPLES_FORMAT = argparse.RawDescriptionHelpFormatter
RUN_EXAMPLES = """examples:
  ninsweep run smoke                         # the 1-minute check, results in ~/ninsweep-results/smoke
  ninsweep run lab4 --gpus-per-trial 0 --cpus-per-trial 2   # the study on CPUs only
  ninsweep run lab4 --max-epochs 20 --set train.lr=0.05 --name lab4-lr005
  ninsweep run lab4 --tracker mlflow --quiet # also log to MLflow; only errors and the tables
  ninsweep run lab4 --dry-run                # list the trials, start nothing"""
RESUME_EXAMPLES = """examples:
  ninsweep resume ~/ninsweep-results/lab4
  ninsweep resume s3://bucket/experiments/lab4 --address auto"""
STATUS_EXAMPLES = """examples:
  ninsweep status ~/ninsweep-results/lab4
  ninsweep status ~/ninsweep-results/lab4 --json | jq '.counts'"""
EXPORT_EXAMPLES = """examples:
  ninsweep export ~/ninsweep-results/lab4                   # results.csv, results-configs.csv
  ninsweep export ~/ninsweep-results/lab4 --per-epoch -o out/lab4.csv   # + out/lab4-epochs.csv"""
DASHBOARD_EXAMPLES = """examples:
  ninsweep dashboard ~/ninsweep-results/lab4      # then open http://127.0.0.1:8750/
  ninsweep dashboard ~/ninsweep-results           # every experiment in the storage folder
  ninsweep dashboard s3://bucket/experiments/lab4 --port 8800"""
TRAIN_EXAMPLES = """examples:
  ninsweep train --activation elu --batchnorm --init he --epochs 164
  ninsweep train --data synthetic --epochs 2 --set train.weight_decay=1e-4
  ninsweep train --checkpoint-dir runs/elu   # run again to resume after Ctrl-C"""
TRACKER_HELP = ("also log to this experiment tracker (mlflow, wandb; repeatable), besides "
                "the space's `trackers:`; needs its extra, e.g. pip install 'ninsweep[mlflow]'")
QUIET_HELP = ("print only errors and the final tables (no per-epoch lines, no progress bar); "
              "Ray's output is always in the experiment's driver.log and trial.log files")


def _add_sweep_parsers(commands) -> None:
    run = commands.add_parser(
        "run", help="run a sweep on Ray Tune",
        description="Run every trial of a search space (a YAML file, or the name of one in "
                    "search_spaces/) on Ray Tune, then print and save the results table.",
        epilog=RUN_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    run.add_argument("space", help="a YAML file, or a name such as smoke, lab4, lab4-3seeds")
    run.add_argument("--storage", help="where experiments live: a path (shared on a cluster) or "
                                        "s3://, gs:// URI (default $NINSWEEP_STORAGE or "
                                        "~/ninsweep-results)")
    run.add_argument("--name", help="experiment name (default: the space's name)")
    run.add_argument("--address", help="an existing Ray cluster (e.g. auto, HEAD:6379); "
                                        "default: a local instance on loopback")
    run.add_argument("--max-epochs", type=int, help="cap every trial's epochs")
    run.add_argument("--data-dir", help="data root for every trial")
    run.add_argument("--gpus-per-trial", type=float,
                     help="GPU fraction per trial; 0 runs a GPU space on CPUs")
    run.add_argument("--cpus-per-trial", type=float, help="CPUs per trial")
    run.add_argument("--autoscaling", action="store_true", help=AUTOSCALING_HELP)
    run.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                     help="change a setting of every trial (repeatable; values read as in the "
                          "space's YAML), e.g. --set train.lr=0.05 --set train.weight_decay=1e-4")
    run.add_argument("--dry-run", action="store_true",
                     help="list the trials and their resources; start nothing")
    run.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    run.add_argument("--tracker", action="append", metavar="NAME", help=TRACKER_HELP)
    run.set_defaults(handler=command_run)

    resume = commands.add_parser("resume", help="continue an interrupted sweep",
                                 description="Finished trials stay; unfinished and failed ones "
                                             "continue from their latest checkpoint.",
                                 epilog=RESUME_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    resume.add_argument("experiment", help=EXPERIMENT_HELP)
    resume.add_argument("--address", help="an existing Ray cluster (default: local)")
    resume.add_argument("--autoscaling", action="store_true", help=AUTOSCALING_HELP)
    resume.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    resume.add_argument("--tracker", action="append", metavar="NAME", help=TRACKER_HELP)
    resume.set_defaults(handler=command_resume)

    status = commands.add_parser("status", help="each trial's state, read from disk",
                                 epilog=STATUS_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    status.add_argument("experiment", help=EXPERIMENT_HELP)
    status.add_argument("--json", action="store_true",
                        help="print the experiment's state as JSON (counts, and per trial its "
                             "status, epochs, params and latest metrics)")
    status.set_defaults(handler=command_status)

    export = commands.add_parser("export", help="write the per-trial, per-config and effects CSVs",
                                 epilog=EXPORT_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    export.add_argument("experiment", help=EXPERIMENT_HELP)
    export.add_argument("-o", "--output", help="CSV file for the per-trial table; the "
                                               "per-config and effects tables go beside it")
    export.add_argument("--baseline", metavar="LABEL", help=BASELINE_HELP)
    export.add_argument("--force", action="store_true", help=FORCE_HELP)
    export.add_argument("--per-epoch", action="store_true",
                        help="also write the long table, one row per trial and epoch (trial, "
                             "params, epoch, metrics), beside the others as *-epochs.csv")
    export.set_defaults(handler=command_export)

    report = commands.add_parser("report", help="Markdown report with figures")
    report.add_argument("experiment", help=EXPERIMENT_HELP)
    report.add_argument("-o", "--output", help="output folder (default EXPERIMENT/report)")
    report.add_argument("--baseline", metavar="LABEL", help=BASELINE_HELP)
    report.add_argument("--force", action="store_true", help=FORCE_HELP)
    report.add_argument("--html", action="store_true",
                        help="also report.html beside report.md: the dashboard's views in one "
                             "self-contained file (no network needed to open it)")
    report.set_defaults(handler=command_report)

    dashboard = commands.add_parser(
        "dashboard", help="a live, read-only web page of experiments",
        description="Serve a page per experiment (trials, curves, factor effects, the config "
                    "table, parallel coordinates) that follows a running sweep; several "
                    "experiments or a storage folder give a list. No Ray needed.",
        epilog=DASHBOARD_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    dashboard.add_argument("experiment", nargs="+",
                           help=EXPERIMENT_HELP + "; several, or a storage folder, give a list")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on (default 127.0.0.1; any non-loopback "
                                "address requires the token printed at start)")
    dashboard.add_argument("--port", type=int, default=8750, help="port (default 8750; 0: any free one)")
    dashboard.set_defaults(handler=command_dashboard)


# -- submit, jobs: a Ray cluster through the Ray Jobs API (ninsweep/jobs.py) -----------------

def _add_address(parser: argparse.ArgumentParser) -> None:
    from .jobs import ADDRESS_ENV, DEFAULT_ADDRESS

    parser.add_argument(
        "--address", default=None, metavar="URL",
        help=f"the Ray dashboard, http://HOST:8265 (default: ${ADDRESS_ENV} or "
             f"{DEFAULT_ADDRESS}, where `ray dashboard` / `kubectl port-forward` put it)")


# `ninsweep run` options that `submit` passes through: (flag, type, metavar, help).
RUN_OPTIONS = (
    ("--max-epochs", int, "N", "cap every trial's epochs"),
    ("--data-dir", str, "DIR", "dataset directory on the cluster nodes"),
    ("--gpus-per-trial", float, "F", "override the space's GPUs per trial"),
    ("--cpus-per-trial", float, "N", "override the space's CPUs per trial"),
)
# Repeatable ones: (flag, metavar, help). --tracker also goes to `resume`.
REPEATED_RUN_OPTIONS = (
    ("--set", "SECTION.KEY=VALUE", "change a setting of every trial"),
    ("--tracker", "NAME", "also log to this tracker (mlflow, wandb); its package must be "
                          "installed on the cluster"),
)


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    """``submit (SPACE --storage URI [--name NAME] | --resume EXPERIMENT) [--address URL]
    [--wait]`` plus the ``run`` options in ``RUN_OPTIONS``."""
    parser.add_argument("space", nargs="?", help="a search space file or name (lab4)")
    parser.add_argument("--resume", metavar="EXPERIMENT", default=None,
                        help="instead of a space: resume this experiment on the cluster "
                             "(its path there, e.g. /mnt/ninsweep/experiments/lab4, or URI)")
    _add_address(parser)
    parser.add_argument("--storage", default=None, metavar="PATH_OR_URI",
                        help="where the cluster writes results: a path every node mounts "
                             "(/mnt/ninsweep/experiments) or s3://BUCKET/PREFIX")
    parser.add_argument("--name", default=None, help="experiment name (default: the space's)")
    parser.add_argument("--wait", action="store_true",
                        help="stream the job's logs until it ends; exit 0 only if it succeeded")
    for flag, kind, metavar, text in RUN_OPTIONS:
        parser.add_argument(flag, type=kind, default=None, metavar=metavar,
                            help=f"passed to `ninsweep run` on the cluster: {text}")
    for flag, metavar, text in REPEATED_RUN_OPTIONS:
        parser.add_argument(flag, action="append", default=None, metavar=metavar,
                            help=f"passed to `ninsweep run` on the cluster: {text}")
    parser.add_argument("--autoscaling", action="store_true",
                        help="passed to `ninsweep run`/`resume` on the cluster: wait for the "
                             "autoscaler to add GPU nodes instead of refusing a space that no "
                             "node running now can take")


def add_jobs_arguments(parser: argparse.ArgumentParser) -> None:
    """``jobs list | status ID | logs ID [--follow] | stop ID``, each with ``--address``."""
    sub = parser.add_subparsers(dest="jobs_command", metavar="{list,status,logs,stop}")
    sub.required = True
    _add_address(sub.add_parser("list", help="ninsweep's jobs on the cluster"))
    for command, text in (("status", "one job's status"), ("logs", "a job's log"),
                          ("stop", "stop a job")):
        p = sub.add_parser(command, help=text)
        p.add_argument("job_id", metavar="ID")
        _add_address(p)
        if command == "logs":
            p.add_argument("--follow", "-f", action="store_true",
                           help="keep streaming until the job ends")


def _run_args(args: argparse.Namespace) -> list[str]:
    extra = []
    for flag, _, _, _ in RUN_OPTIONS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            extra += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for flag, _, _ in REPEATED_RUN_OPTIONS:
        for value in getattr(args, flag.lstrip("-"), None) or ():
            extra += [flag, value]
    return extra


def _tracker_args(args: argparse.Namespace) -> list[str]:
    return [part for name in getattr(args, "tracker", None) or () for part in ("--tracker", name)]


def command_submit(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    from . import jobs

    resume = getattr(args, "resume", None)
    if resume:
        extra = [flag for flag in ("space", "storage", "name")
                 if getattr(args, flag, None) is not None] + [
            f for f in _run_args(args) if f.startswith("--") and f != "--tracker"]
        if extra:
            raise NinsweepError("submit --resume takes the experiment alone (its space, "
                                f"storage and settings are in its manifest); drop: "
                                f"{', '.join(extra)}")
        job_id = jobs.submit_resume(args.address, resume, out=out,
                                    extra_args=(["--autoscaling"] if args.autoscaling else [])
                                    + _tracker_args(args))
    elif not args.space:
        raise NinsweepError("submit needs a SPACE (a file or a name such as lab4), or "
                            "--resume EXPERIMENT")
    else:
        autoscaling = ["--autoscaling"] if args.autoscaling else []
        job_id = jobs.submit_sweep(args.address, args.space, storage=args.storage,
                                   name=args.name, extra_args=_run_args(args) + autoscaling,
                                   out=out)
    if not getattr(args, "wait", False):
        return 0
    return _follow_job(args.address, job_id, out)


def _follow_job(address: Optional[str], job_id: str, out: Callable[[str], None]) -> int:
    """Stream a job's log until it ends: 0 if it succeeded, 1 if not, 130 on Ctrl-C (the
    job goes on)."""
    from . import jobs

    try:
        status = jobs.follow_job(address, job_id)
    except KeyboardInterrupt:
        out(f"\nstopped following; {job_id} keeps running on the cluster "
            f"(ninsweep jobs stop {job_id} ends it)")
        return EXIT_INTERRUPTED
    out(f"{job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def command_jobs(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    from . import jobs

    command = args.jobs_command
    if command == "list":
        out(jobs.format_jobs_table(jobs.list_jobs(args.address)))
        return 0
    if command == "status":
        out(jobs.format_job_status(jobs.job_status(args.address, args.job_id)))
        return 0
    if command == "logs":
        if getattr(args, "follow", False):
            return _follow_job(args.address, args.job_id, out)
        out(jobs.job_logs(args.address, args.job_id).rstrip("\n"))
        return 0
    if command == "stop":
        stopped = jobs.stop_job(args.address, args.job_id)
        out(f"{args.job_id}: stop requested" if stopped
            else f"{args.job_id}: already finished")
        return 0
    raise NinsweepError(f"unknown jobs command {command!r}")


def _add_cluster_parsers(commands) -> None:
    submit = commands.add_parser(
        "submit", help="run a sweep on a Ray cluster as a Ray job",
        description="Ship this project and a search space to a Ray cluster and run "
                    "`ninsweep run SPACE --address auto` there as a Ray job (or, with "
                    "--resume, `ninsweep resume EXPERIMENT`). Reach the dashboard first: "
                    "`ray dashboard cluster/aws-gpu.yaml` or `kubectl port-forward "
                    "svc/ninsweep-head-svc 8265:8265` (cluster/README.md).")
    add_submit_arguments(submit)
    submit.set_defaults(handler=command_submit)
    jobs = commands.add_parser("jobs", help="list, follow and stop ninsweep's Ray jobs",
                               description="ninsweep's jobs on a Ray cluster (Ray Jobs API).")
    add_jobs_arguments(jobs)
    jobs.set_defaults(handler=command_jobs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ninsweep",
        description="Architecture ablation studies of a Network-in-Network CNN on CIFAR-10, "
                    "run as Ray Tune sweeps.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"ninsweep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print ninsweep's diagnostics at INFO level (the logging "
                             "module's 'ninsweep' logger; warnings are always shown)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(commands)
    _add_sweep_parsers(commands)
    _add_cluster_parsers(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _route_diagnostics(args)
    try:
        return args.handler(args)
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


if __name__ == "__main__":
    sys.exit(main())
