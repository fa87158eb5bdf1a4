"""Machine-readable views of an experiment: ``status --json`` and ``export --per-epoch``.

Both read what ``ninsweep.analysis`` loads (no Ray), and use its tables and words, so a
script sees the same trials, statuses and numbers as the printed tables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from . import metrics as M
from .analysis import Experiment, csv_paths, trial_table
from .atomic import write_output

STATUS_FORMAT = 1  # bumped when a key of status_json changes meaning


def status_json(exp: Experiment) -> dict[str, Any]:
    """``{"format", "experiment", "space", "counts", "trials": [...]}``; each trial is a row
    of ``analysis.trial_table`` (accuracies in percent) with its ``params``. Missing numbers
    are ``null``."""
    table = trial_table(exp)
    rows = json.loads(table.to_json(orient="records", double_precision=10))
    params = {trial.name: trial.params for trial in exp.trials}
    for row in rows:
        row["params"] = params.get(row["trial"], {})
    return {"format": STATUS_FORMAT, "experiment": str(exp.path), "space": exp.space_name,
            "counts": exp.counts(), "trials": rows}


def epoch_table(exp: Experiment) -> pd.DataFrame:
    """The long table: one row per (trial, epoch), with the trial's params and the epoch's
    metrics (``ninsweep.metrics.EPOCH_METRICS``), in manifest order."""
    param_keys: list[str] = []
    for trial in exp.trials:
        param_keys.extend(key for key in trial.params if key not in param_keys)
    frames = []
    for trial in exp.trials:
        history = trial.history[list(M.EPOCH_METRICS)].copy()
        if history.empty:
            continue
        for position, key in enumerate(param_keys):
            history.insert(position, key, [trial.params.get(key)] * len(history))
        history.insert(0, "trial", trial.name)
        frames.append(history)
    columns = ["trial", *param_keys, *M.EPOCH_METRICS]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def epochs_csv_path(exp: Experiment, out: Optional[os.PathLike | str] = None) -> Path:
    """Beside the per-trial CSV: ``results.csv`` -> ``results-epochs.csv``."""
    trials_path = csv_paths(exp, out)[0]
    return trials_path.with_name(f"{trials_path.stem}-epochs{trials_path.suffix}")


def check_epoch_csv(exp: Experiment, out: Optional[os.PathLike | str] = None,
                    force: bool = False) -> Path:
    """Where ``export --per-epoch`` writes, checked by export's rule for files
    (``outputs.check_outputs``) before anything is written."""
    from .outputs import check_outputs

    path = epochs_csv_path(exp, out)
    check_outputs([path], exp.path, [epochs_csv_path(exp)], force=force, command="export")
    return path


def write_epoch_csv(exp: Experiment, path: Path) -> Path:
    text = epoch_table(exp).to_csv(index=False, float_format="%.6g")
    write_output(path, text)
    return path
