"""The command line's grammar: every subcommand, its flags and its help, and nothing else.

Each subcommand names its handler by import path (``"ninsweep.cli.run:command_run"``);
``cli.main`` imports only the handler's module, so ``ninsweep status`` never loads torch and
``ninsweep run --dry-run`` never loads Ray.
"""

from __future__ import annotations

import argparse

from ninsweep import __version__
from ninsweep.cluster.jobs import ADDRESS_ENV, DEFAULT_ADDRESS
from ninsweep.registry import ACTIVATIONS, INITS, SOURCES

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
PLAN_EXAMPLES = """examples:
  ninsweep plan ~/ninsweep-results/lab4-3seeds --effect 0.3             # power 0.8
  ninsweep plan ~/ninsweep-results/lab4-3seeds --effect 0.5 --power 0.9"""
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


def _add_train_parser(commands) -> None:
    parser = commands.add_parser(
        "train", help="train one model of the study, without Ray",
        description="Train one NIN with the reference recipe. Flags override the recipe; "
                    "--set SECTION.KEY=VALUE reaches every setting (see ninsweep/config.py).",
        epilog=TRAIN_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
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
    parser.set_defaults(handler="ninsweep.cli.train:command_train")


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
    run.set_defaults(handler="ninsweep.cli.run:command_run")

    resume = commands.add_parser("resume", help="continue an interrupted sweep",
                                 description="Finished trials stay; unfinished and failed ones "
                                             "continue from their latest checkpoint.",
                                 epilog=RESUME_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    resume.add_argument("experiment", help=EXPERIMENT_HELP)
    resume.add_argument("--address", help="an existing Ray cluster (default: local)")
    resume.add_argument("--autoscaling", action="store_true", help=AUTOSCALING_HELP)
    resume.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    resume.add_argument("--tracker", action="append", metavar="NAME", help=TRACKER_HELP)
    resume.set_defaults(handler="ninsweep.cli.resume:command_resume")

    extend = commands.add_parser(
        "extend", help="more seeds or cells for a finished experiment",
        description="New trials join the experiment; its finished trials are not touched. "
                    "--seeds N brings every configuration to seeds 0..N-1 (paired with the "
                    "old ones by seed); --space FILE adds the trials of a space that contains "
                    "every trial the experiment ran, with the same recipe.")
    extend.add_argument("experiment", help=EXPERIMENT_HELP)
    extend.add_argument("--seeds", type=int, help="bring every configuration to N seeds")
    extend.add_argument("--space", help="a space (file or name) whose trials include the experiment's")
    extend.add_argument("--dry-run", action="store_true", help="list the new trials; start nothing")
    extend.add_argument("--address", help="an existing Ray cluster (default: local)")
    extend.add_argument("--autoscaling", action="store_true", help=AUTOSCALING_HELP)
    extend.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    extend.set_defaults(handler="ninsweep.cli.extend:command_extend")

    status = commands.add_parser("status", help="each trial's state, read from disk",
                                 epilog=STATUS_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    status.add_argument("experiment", help=EXPERIMENT_HELP)
    status.add_argument("--json", action="store_true",
                        help="print the experiment's state as JSON (counts, and per trial its "
                             "status, epochs, params and latest metrics)")
    status.set_defaults(handler="ninsweep.cli.results:command_status")

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
    export.set_defaults(handler="ninsweep.cli.results:command_export")

    report = commands.add_parser("report", help="Markdown report with figures")
    report.add_argument("experiment", help=EXPERIMENT_HELP)
    report.add_argument("-o", "--output", help="output folder (default EXPERIMENT/report)")
    report.add_argument("--baseline", metavar="LABEL", help=BASELINE_HELP)
    report.add_argument("--force", action="store_true", help=FORCE_HELP)
    report.add_argument("--html", action="store_true",
                        help="also report.html beside report.md: the dashboard's views in one "
                             "self-contained file (no network needed to open it)")
    report.set_defaults(handler="ninsweep.cli.results:command_report")

    plan = commands.add_parser(
        "plan", help="seeds per configuration needed to resolve an effect of a given size",
        description="Measure an experiment's seed-to-seed SD and say how many seeds per "
                    "configuration a two-sided t-test needs to detect a difference of --effect "
                    "(in the objective's difference unit: points for an accuracy) with --power.",
        epilog=PLAN_EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    plan.add_argument("experiment", help=EXPERIMENT_HELP)
    plan.add_argument("--effect", type=float, required=True,
                      help="the difference to detect, e.g. 0.3 (accuracy points)")
    plan.add_argument("--power", type=float, default=None, help="default 0.8")
    plan.add_argument("--alpha", type=float, default=None, help="two-sided level, default 0.05")
    plan.set_defaults(handler="ninsweep.cli.plan:command_plan")

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
    dashboard.set_defaults(handler="ninsweep.cli.dashboard:command_dashboard")


def _add_address(parser: argparse.ArgumentParser) -> None:
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


def _add_cluster_parsers(commands) -> None:
    submit = commands.add_parser(
        "submit", help="run a sweep on a Ray cluster as a Ray job",
        description="Ship this project and a search space to a Ray cluster and run "
                    "`ninsweep run SPACE --address auto` there as a Ray job (or, with "
                    "--resume, `ninsweep resume EXPERIMENT`). Reach the dashboard first: "
                    "`ray dashboard cluster/aws-gpu.yaml` or `kubectl port-forward "
                    "svc/ninsweep-head-svc 8265:8265` (cluster/README.md).")
    add_submit_arguments(submit)
    submit.set_defaults(handler="ninsweep.cli.cluster:command_submit")
    jobs = commands.add_parser("jobs", help="list, follow and stop ninsweep's Ray jobs",
                               description="ninsweep's jobs on a Ray cluster (Ray Jobs API).")
    add_jobs_arguments(jobs)
    jobs.set_defaults(handler="ninsweep.cli.cluster:command_jobs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ninsweep",
        description="Architecture ablation studies of a Network-in-Network CNN on CIFAR-10, "
                    "run as Ray Tune sweeps.")
    parser.add_argument("--version", action="version", version=f"ninsweep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print ninsweep's diagnostics at INFO level (the logging "
                             "module's 'ninsweep' logger; warnings are always shown)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(commands)
    _add_sweep_parsers(commands)
    _add_cluster_parsers(commands)
    return parser
