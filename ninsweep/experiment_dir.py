"""What an experiment directory holds: the name of every file ninsweep or Ray writes there, and
the words for the state a trial is in.

The sweep writes these files, the trials write into their own directories, and status,
export, the report and the dashboard read them back: all of them import the names from here
(the contract is in DEVELOPERS.md, "Experiment directory"). Standard library only.
"""

from __future__ import annotations

import re
from typing import Optional

# -- <storage>/<experiment>/ ------------------------------------------------------------
MANIFEST_FILE = "ninsweep.json"  # the sweep as planned; written before Ray starts, never replaced
LOCK_FILE = ".ninsweep.lock"  # held by the run or resume writing the experiment
DRIVER_LOG = "driver.log"  # Ray's driver output of each run / resume, appended
MLFLOW_DIR = "mlruns"  # the default MLflow file store of the mlflow tracker
REPORT_DIR = "report"  # `ninsweep report`'s default folder
REPORT_FILE = "report.md"  # the report's page in it (its figures are named in analysis.report)
TUNER_FILE = "tuner.pkl"  # Tune's: the Tuner, pickled; resume restores the sweep from it
# Tune's snapshots of its trials, one per driver run (the newest name is the one Tune reads)
TUNE_SNAPSHOT_RE = re.compile(r"experiment_state-.+\.json")
UNREADABLE_SUFFIX = ".unreadable"  # what resume appends to a snapshot it sets aside
# `ninsweep extend`'s trials, one file per extension (never replaced), read with the manifest
EXTENSION_RE = re.compile(r"ninsweep-extend-(\d+)\.json")
REPLICATION_FILE = "replication.json"  # adaptive replication's waves, decisions, skipped trials
RESULTS_CSV = "results.csv"  # `export`'s per-trial table; its siblings are named after it

# -- <experiment>/<trial>/ (the directory is named after the trial) -----------------------
PARAMS_FILE = "params.json"  # Ray's: {"trial": {name, params, config}}
RESULT_FILE = "result.json"  # Ray's: one JSON object per reported epoch
PROGRESS_FILE = "progress.csv"  # Ray's: the same records as CSV rows
ERROR_FILE = "error.txt"  # why the trial failed (Ray's traceback, or our one line)
TRIAL_LOG = "trial.log"  # the trial's own output and Ray's worker logs, appended per attempt
CHECKPOINT_DIR_PREFIX = "checkpoint_"  # Tune's name for each checkpoint directory
STATE_FILE_RE = re.compile(r"state-epoch-(\d+)\.pt")  # a Trainer state, named by its epoch
# A whole run in one file: what `ninsweep train --checkpoint-dir` keeps, and what trials
# wrote before their states were named by epoch (still read on resume).
CHECKPOINT_FILE = "checkpoint.pt"


def extension_file(number: int) -> str:
    """``ninsweep-extend-1.json``: the trials the experiment's first extension added."""
    return f"ninsweep-extend-{number}.json"


def set_aside_tuner(number: int) -> str:
    """Where an extension keeps the Tune state of the run before it (Tune writes its own)."""
    return f"tuner-before-extend-{number}.pkl"


def state_file_name(epoch: int) -> str:
    """``state-epoch-00004.pt``: distinct per epoch, so nothing on storage is overwritten."""
    return f"state-epoch-{epoch:05d}.pt"


def state_file_epoch(name: str) -> Optional[int]:
    """The epoch a state file is named after, or None for any other name."""
    match = STATE_FILE_RE.fullmatch(name)
    return int(match.group(1)) if match else None


# -- a trial's state, as every view names it --------------------------------------------
FINISHED = "finished"  # its last epoch is the planned one
INCOMPLETE = "incomplete"  # started and not finished: interrupted (or running)
ERROR = "error"  # failed: error.txt, and not finished
PENDING = "pending"  # in the manifest, no directory yet
STOPPED = "stopped"  # ended early by the space's scheduler (ASHA...): not a finished trial
SKIPPED = "skipped"  # adaptive replication did not need it: its comparisons were decided
STATUSES = (FINISHED, STOPPED, INCOMPLETE, ERROR, PENDING, SKIPPED)  # what the files on disk can say
RUNNING = "running"  # only while a sweep runs (its progress line); on disk: incomplete
LIVE_STATUSES = (FINISHED, STOPPED, RUNNING, PENDING, INCOMPLETE, ERROR, SKIPPED)
