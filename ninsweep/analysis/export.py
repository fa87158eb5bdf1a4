"""What ``export`` and ``status --json`` write: the analysis tables as CSV and JSON.

Every file is written whole (``atomic.write_output``) after ``outputs.check_outputs`` allowed
every path: the per-trial, per-config and effects CSVs (``write_csvs``), the long per-epoch
table (``--per-epoch``), and the JSON state of ``status --json``. All of them are the tables
of ``analysis.tabulate`` and ``analysis.effects`` as they are, so a script sees the same trials,
statuses and numbers as the printed tables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from ninsweep.analysis.effects import INTERVAL_SEEDS, effects_table
from ninsweep.analysis.outputs import check_outputs
from ninsweep.analysis.results import Experiment
from ninsweep.analysis.stats import ALPHA
from ninsweep.analysis.tabulate import tables, trial_table
from ninsweep.atomic import write_output
from ninsweep.errors import NinsweepError
from ninsweep.experiment_dir import RESULTS_CSV
from ninsweep.metrics import EPOCH_METRICS

STATUS_FORMAT = 1  # bumped when a key of status_json changes meaning


def csv_paths(exp: Experiment, out: Optional[os.PathLike | str] = None) -> tuple[Path, Path, Path]:
    """Where ``write_csvs`` writes: (per-trial CSV, per-config CSV, effects CSV).

    No ``out``: ``<exp>/results.csv``, ``<exp>/results-configs.csv`` and
    ``<exp>/results-effects.csv``. An existing directory (or a path ending in "/"): the same
    names in it. Otherwise ``out`` is the per-trial file and the others sit beside it:
    ``x.csv`` -> ``x-configs.csv``, ``x-effects.csv``.
    """
    if out is None:
        base = exp.path / RESULTS_CSV
    else:
        raw = str(out)
        p = Path(raw).expanduser()
        if p.is_dir() or raw.endswith(("/", os.sep)):
            base = p / RESULTS_CSV
        else:
            base = p if p.suffix else p.with_name(p.name + ".csv")
    return (base, base.with_name(f"{base.stem}-configs{base.suffix}"),
            base.with_name(f"{base.stem}-effects{base.suffix}"))


def write_csvs(exp: Experiment, out: Optional[os.PathLike | str] = None,
               alpha: float = ALPHA, baseline: Optional[str] = None,
               force: bool = False) -> tuple[Path, Path, Path]:
    """Write the per-trial, per-config and effects CSVs (see ``csv_paths``); return their paths.

    The default files inside the experiment are derived and regenerated on every call; any
    other existing file is replaced only with ``force``, and nothing else inside the
    experiment is ever written (``outputs.check_outputs``). Each file is written to a
    temporary file and renamed over the old one, so a reader never sees half a file. The
    per-config CSV carries the significance columns too (p_value, p_holm, verdict); the
    effects CSV holds the factor effects (``ninsweep.effects``) and, with ``baseline`` (a
    config label), every config against that one.
    """
    trials_path, configs_path, effects_path = csv_paths(exp, out)
    check_outputs([trials_path, configs_path, effects_path], exp.path, csv_paths(exp),
                  force=force, command="export")
    if not trials_path.parent.is_dir():
        raise NinsweepError(f"{trials_path.parent}: no such directory")
    trials, configs, effects = export_tables(exp, alpha, baseline)  # an unknown baseline: before writing
    write_output(trials_path, trials.to_csv(index=False, float_format="%.6g"))
    write_output(configs_path, configs.to_csv(index=False, float_format="%.6g"))
    write_output(effects_path, effects.to_csv(index=False, float_format="%.6g"))
    return trials_path, configs_path, effects_path


def export_tables(exp: Experiment, alpha: float = ALPHA, baseline: Optional[str] = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables ``export`` writes: per trial, per config (with the significance
    columns), factor effects (with every config against ``baseline`` when given). Raises
    on an unknown baseline. The dashboard and the HTML report show these same tables."""
    trials, configs, sig = tables(exp, alpha)
    effects = effects_table(trials, baseline)
    if "interval_method" in effects and effects["interval_method"].isin(["", INTERVAL_SEEDS]).all():
        # Every interval is over seeds (or there is none): the CSV keeps the columns it always
        # had; the column appears when some interval rests on pooled interactions.
        effects = effects.drop(columns="interval_method")
    if not configs.empty:
        configs = configs.merge(sig[["config", "diff_vs_best_pct", "p_value", "p_holm", "verdict"]],
                                on="config", how="left")
    return trials, configs, effects


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
        history = trial.history[list(EPOCH_METRICS)].copy()
        if history.empty:
            continue
        for position, key in enumerate(param_keys):
            history.insert(position, key, [trial.params.get(key)] * len(history))
        history.insert(0, "trial", trial.name)
        frames.append(history)
    columns = ["trial", *param_keys, *EPOCH_METRICS]
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
    path = epochs_csv_path(exp, out)
    check_outputs([path], exp.path, [epochs_csv_path(exp)], force=force, command="export")
    return path


def write_epoch_csv(exp: Experiment, path: Path) -> Path:
    text = epoch_table(exp).to_csv(index=False, float_format="%.6g")
    write_output(path, text)
    return path


def refresh_csvs(exp: Experiment) -> list[Path]:
    """Every CSV that ``export`` keeps inside the experiment, written again from its files:
    the per-trial and per-config tables always, the per-epoch table when an earlier
    ``export --per-epoch`` left one there (else it would go stale as the sweep goes on)."""
    written = list(write_csvs(exp))
    epochs = epochs_csv_path(exp)
    if epochs.exists():
        written.append(write_epoch_csv(exp, epochs))
    return written
