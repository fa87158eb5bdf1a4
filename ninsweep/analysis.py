"""From an experiment directory to tables: per trial, per config (over seeds), significance.

Everything here works from the results directory alone -- finished, interrupted or still
running -- without a Ray cluster and without importing Ray. The layout it reads is the
contract in DEVELOPERS.md:

- ``<exp>/ninsweep.json``: the manifest (every planned trial, with its params and config);
- one directory per trial that started, found by its ``params.json``
  (``{"trial": {"name", "params", "config"}}``), not by its name (Ray may add a suffix);
- ``result.json`` in it: one JSON object per reported epoch (``ninsweep.metrics`` names);
- ``error.txt`` in it when Ray recorded a failure.

A trial's status is one of ``finished`` (its last epoch is the planned one), ``error``
(``error.txt`` and not finished), ``incomplete`` (started, not finished: running or
interrupted) and ``pending`` (in the manifest, no directory yet). Unfinished trials are
marked in every table, never dropped; only finished trials count toward the statistics.

Statistics (per config = the trial params without ``seed``): mean, sample std (ddof=1) and
a 95% confidence interval of the mean from Student's t distribution, of the final test
accuracy. :func:`significance` compares every config with the best one (highest mean) by
Welch's two-sided t-test (what ``scipy.stats.ttest_ind(equal_var=False)`` computes: no
equal-variance assumption; Student's t from ``scipy.special``, because importing scipy.stats
alone costs more than reading a 1,600-trial experiment -- the tests check both agree) and corrects the p-values for the number of comparisons with Holm's step-down
method, which controls the family-wise error rate at ``alpha`` without assuming
independence. A config is "significantly lower" when its Holm-adjusted p-value is below
``alpha``; otherwise its difference from the best is inside seed-to-seed noise.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import special

from . import fmt
from . import metrics as M
from .config import TrialConfig
from .errors import ConfigError, NinsweepError
from .space import MODEL_AXES, SEED, TRIAL_KEY, SweepSpec, TrialSpec
from .storage import MANIFEST_FILE as MANIFEST
from .storage import fetch_experiment, is_uri, local_path

PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"

FINISHED = "finished"
INCOMPLETE = "incomplete"
ERROR = "error"
PENDING = "pending"
STATUSES = (FINISHED, INCOMPLETE, ERROR, PENDING)
# Only while a sweep runs (its console, a live dashboard): on disk such a trial reads as
# incomplete.
RUNNING = "running"

ALPHA = 0.05
CI_LEVEL = 0.95

# The lab report's final test accuracy (%) after 164 epochs, one run each
# (docs/lab4-reference.md). None: the report has no number (its Maxout never worked).
REFERENCE_SPACE = "lab4"
REFERENCE_EPOCHS = 164
REFERENCE_ACC_PCT: dict[str, Optional[float]] = {
    "ELU+BN+WI": 91.67,
    "ELU+BN": 91.34,
    "ReLU+BN": 91.13,  # the report's "BN (ReLU)"
    "ReLU+BN+WI": 90.98,  # "BN+WI (ReLU)"
    "ELU+WI": 90.94,
    "ELU": 90.76,
    "ReLU": 90.50,  # "None (ReLU)"
    "ReLU+WI": 90.49,  # "WI (ReLU)"
    "LeakyReLU+BN+WI": 90.91,
    "Maxout+BN+WI": None,
}

# The trial-table column holding each objective metric's final value (accuracies in %).
OBJECTIVE_COLUMNS = {M.TEST_ACC: "final_test_acc_pct", M.TEST_LOSS: "final_test_loss",
                     M.VAL_ACC: "final_val_acc_pct", M.VAL_LOSS: "final_val_loss",
                     M.TRAIN_ACC: "final_train_acc_pct", M.TRAIN_LOSS: "final_train_loss"}
NORM_KEY = "model.norm"  # a grid key whose levels label as "+GN", "+LN" (NORMS' labels)

# The params of every NIN trial (MODEL_AXES, SEED: ninsweep.space) are the first columns;
# any other grid key (dotted, "train.lr") is an extra column.

VERDICT_BEST = "best"
VERDICT_LOWER = "significantly lower"
VERDICT_SAME = "not significantly different"
VERDICT_FEW = "needs >= 2 seeds"
VERDICT_NONE = "no finished trials"
VERDICT_FLAT = "untestable: zero variance"


@dataclass
class TrialRecord:
    """One planned trial and what its directory holds so far."""

    name: str
    params: dict[str, Any]
    config: TrialConfig
    status: str
    # The kept epochs (see load_history) as one array per metric: a DataFrame per trial
    # costs more than reading its file, so ``history`` builds one only when asked.
    metrics: dict[str, np.ndarray]
    trial_dir: Optional[Path] = None
    error: Optional[str] = None  # the last line of error.txt

    @functools.cached_property
    def history(self) -> pd.DataFrame:
        """One row per epoch, sorted (see load_history)."""
        return _as_frame(self.metrics)

    @property
    def epochs_done(self) -> int:
        return _epochs_done(self.metrics)

    @property
    def epochs_planned(self) -> int:
        return self.config.train.epochs


@dataclass
class Experiment:
    path: Path
    space_name: Optional[str]
    manifest: Optional[dict[str, Any]]  # ninsweep.json as read (None: there is none)
    trials: list[TrialRecord] = field(default_factory=list)
    spec: Optional[SweepSpec] = None  # the manifest, typed

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def objective(self) -> dict[str, str]:
        """The space's ``objective`` ({metric, mode}); test_acc, max without a manifest (and
        for older manifests, whose schema default it is)."""
        return dict(self.spec.objective) if self.spec else dict(M.DEFAULT_OBJECTIVE)

    @property
    def is_lab4(self) -> bool:
        return is_reference_space(self.space_name)

    def counts(self) -> dict[str, int]:
        """Trials per status, every status present (0 when none)."""
        out = {s: 0 for s in STATUSES}
        for t in self.trials:
            out[t.status] += 1
        return out


def is_reference_space(space_name: Optional[str]) -> bool:
    """Whether a space reproduces the lab report's grid ("lab4", "lab4-seeds", ...)."""
    if not space_name:
        return False
    name = str(space_name).lower()
    return name == REFERENCE_SPACE or name.startswith((REFERENCE_SPACE + "-", REFERENCE_SPACE + "_"))


# --------------------------------------------------------------------------- reading

# The columns the tables, the status line and the report use; the experiment loader reads
# only these (``load_history(columns=None)`` keeps every flat key instead).
TIME_TOTAL_S = "time_total_s"  # Ray's own key: wall time since the trial started
HISTORY_COLUMNS = (*M.EPOCH_METRICS, *M.VAL_METRICS, M.PEAK_GPU_MEM_MB, TIME_TOTAL_S)
STATUS_COLUMNS = (M.EPOCH, M.TRAIN_LOSS, M.TEST_LOSS, M.TEST_ACC, M.EPOCH_TIME_S,
                  M.IMAGES_PER_S, M.PEAK_GPU_MEM_MB, TIME_TOTAL_S)
# Threads that read trial directories: pyarrow parses with the GIL released.
READ_THREADS = min(8, os.cpu_count() or 1)


def load_history(trial_dir: os.PathLike | str, columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """A trial's metrics, one row per epoch, sorted by epoch.

    Reads ``result.json`` (JSON lines). A last line that does not parse (the trial is
    still writing it, or was killed mid-write) is ignored; a bad line elsewhere is skipped
    with a warning. Records without an ``epoch`` are skipped; nested values (Ray's
    ``config``) are dropped. ``columns``: keep only these keys (the metric names are always
    there, NaN where missing); None keeps every flat key.

    An epoch can appear twice when a trial was restored from a checkpoint older than its
    last report. Each record *replaces* the record of its epoch and every later epoch held
    so far: the run goes back to that point, so what came after it belongs to an abandoned
    run. For a trial that went on past its old last epoch this is exactly "keep the last
    record of each epoch".
    """
    path = Path(trial_dir) / RESULT_FILE
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return _empty_history()
    return _as_frame(_history_columns(_parse_results(data, path, columns)))


def _parse_results(data: bytes, path: Path, columns: Optional[Sequence[str]]) -> dict[str, np.ndarray]:
    """result.json bytes -> column arrays in file order (before the repeated-epoch rule).

    With a column list, pyarrow's JSON reader parses the file in C++ (GIL released) with an
    explicit schema, skipping the keys nobody reads (Ray's nested config among them). Any
    file it cannot take as it is -- a truncated or bad line, a value of another type --
    goes through the line-by-line reader, which knows what to skip and warns.
    """
    if columns is not None and data.endswith(b"\n"):
        fast = _parse_with_pyarrow(data, columns)
        if fast is not None:
            return fast
    return _parse_lines(data, path, columns)


def _parse_with_pyarrow(data: bytes, columns: Sequence[str]) -> Optional[dict[str, np.ndarray]]:
    try:
        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:  # pragma: no cover - pyarrow ships with Ray
        return None
    schema = pa.schema([(c, pa.float64()) for c in columns])
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 16)),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    out = {c: table.column(c).to_numpy(zero_copy_only=False).astype(float, copy=False) for c in columns}
    return out


def _parse_lines(data: bytes, path: Path, columns: Optional[Sequence[str]]) -> dict[str, np.ndarray]:
    text = data.decode("utf-8", errors="replace")
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    records: list[dict[str, Any]] = []
    for pos, (lineno, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            if pos != len(lines) - 1:
                warnings.warn(f"{path}:{lineno}: not a JSON object, line skipped", stacklevel=4)
            continue
        if isinstance(record, dict):
            records.append(record)
    keys: list[str] = list(columns) if columns is not None else []
    if columns is None:
        for record in records:
            for k, v in record.items():
                if k not in keys and not isinstance(v, (dict, list)):
                    keys.append(k)
    out: dict[str, np.ndarray] = {}
    for k in keys:
        values = [r.get(k) for r in records]
        if k in M.EPOCH_METRICS or columns is not None:
            out[k] = np.array([_as_float(v) for v in values], dtype=float)
        else:
            out[k] = np.array([None if isinstance(v, (dict, list)) else v for v in values], dtype=object)
    out[M.EPOCH] = np.array([_as_float(r.get(M.EPOCH)) for r in records], dtype=float)
    return out


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return np.nan
    return float(value)


def _history_columns(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Apply the repeated-epoch rule to parsed columns: the kept rows, one per epoch, sorted.

    Every metric name is a key (NaN where the file lacks it); ``epoch`` is an int array.
    """
    epochs = raw.get(M.EPOCH)
    if epochs is None or not len(epochs):
        return _empty_columns()
    idx = np.flatnonzero(np.isfinite(epochs))
    ep = np.floor(epochs[idx]).astype(np.int64)
    # A record survives when no later record goes back to its epoch or before it: its epoch
    # is below the minimum of every later epoch (a suffix minimum). The survivors' epochs
    # are therefore strictly increasing.
    later_min = np.empty_like(ep)
    if len(ep):
        later_min[-1] = np.iinfo(np.int64).max
        later_min[:-1] = np.minimum.accumulate(ep[::-1])[::-1][1:]
    keep = idx[ep < later_min]
    if not len(keep):
        return _empty_columns()
    columns = {M.EPOCH: np.floor(epochs[keep]).astype(int)}
    for c in M.EPOCH_METRICS[1:]:
        columns[c] = raw[c][keep] if c in raw else np.full(len(keep), np.nan)
    for c, values in raw.items():
        if c not in columns:
            columns[c] = values[keep]
    return columns


def _empty_columns() -> dict[str, np.ndarray]:
    return {c: np.zeros(0, dtype=int if c == M.EPOCH else float) for c in M.EPOCH_METRICS}


def _as_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    df = pd.DataFrame(columns)
    return df.infer_objects() if any(v.dtype == object for v in columns.values()) else df


def _empty_history() -> pd.DataFrame:
    return _as_frame(_empty_columns())


def _epochs_done(metrics: dict[str, np.ndarray]) -> int:
    epochs = metrics[M.EPOCH]
    return int(epochs[-1]) if len(epochs) else 0  # kept epochs are increasing


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise NinsweepError(f"{path}: cannot read {what}: {err}") from None
    except ValueError as err:
        raise NinsweepError(f"{path}: {what} is not valid JSON ({err})") from None


class _TrialDir(NamedTuple):
    path: Path
    trial: dict[str, Any]  # params.json's "trial" entry
    metrics: dict[str, np.ndarray]  # _history_columns
    mtime: float


def _read_trial_dir(child: Path, columns: Optional[Sequence[str]]) -> Optional[_TrialDir]:
    """A child directory's params.json and history in one visit; None if no trial of ours."""
    params_path = child / PARAMS_FILE
    try:
        raw = params_path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError:
        warnings.warn(f"{params_path}: unreadable, directory skipped", stacklevel=4)
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        warnings.warn(f"{params_path}: unreadable, directory skipped", stacklevel=4)
        return None
    trial = data.get(TRIAL_KEY) if isinstance(data, dict) else None
    if not isinstance(trial, dict) or not isinstance(trial.get("name"), str):
        return None  # a Ray trial of something else
    result = child / RESULT_FILE
    try:
        blob = result.read_bytes()
        mtime = result.stat().st_mtime
        metrics = _history_columns(_parse_results(blob, result, columns))
    except (FileNotFoundError, IsADirectoryError):
        metrics, mtime = _empty_columns(), child.stat().st_mtime
    return _TrialDir(child, trial, metrics, mtime)


def _scan_trial_dirs(exp_dir: Path, columns: Optional[Sequence[str]] = HISTORY_COLUMNS
                     ) -> dict[str, list[_TrialDir]]:
    """Trial name -> its directories among the direct children, each read once.

    The directories are read by a thread pool: the JSON parsing runs in pyarrow's C++ code
    without the GIL, and the file reads overlap.
    """
    children = sorted(c for c in exp_dir.iterdir() if c.is_dir())
    if len(children) >= 4 * READ_THREADS > 4:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(READ_THREADS) as pool:
            read = list(pool.map(lambda c: _read_trial_dir(c, columns), children, chunksize=16))
    else:
        read = [_read_trial_dir(c, columns) for c in children]
    found: dict[str, list[_TrialDir]] = {}
    for entry in read:
        if entry is not None:
            found.setdefault(entry.trial["name"], []).append(entry)
    return found


def _pick_dir(name: str, candidates: list[_TrialDir]) -> _TrialDir:
    """One directory per trial name: the one with most epochs, then the newest."""
    if len(candidates) == 1:
        return candidates[0]
    ordered = sorted(candidates, key=lambda d: (_epochs_done(d.metrics), d.mtime))
    warnings.warn(f"trial {name} has {len(ordered)} directories; using {ordered[-1].path.name}",
                  stacklevel=3)
    return ordered[-1]


def _last_error_line(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "error.txt unreadable"
    return fmt.last_line(text, 200) or "failed (empty error.txt)"


def _status(trial_dir: Optional[Path], history: dict[str, np.ndarray], planned: int) -> str:
    if trial_dir is None:
        return PENDING
    if _epochs_done(history) >= planned:
        return FINISHED
    if (trial_dir / ERROR_FILE).exists():
        return ERROR
    return INCOMPLETE


def load_experiment(exp_dir: os.PathLike | str,
                    columns: Optional[Sequence[str]] = HISTORY_COLUMNS) -> Experiment:
    """Read an experiment directory (with or without its ``ninsweep.json``).

    ``columns``: the history columns to read (default: every metric the tables and the
    report use; ``STATUS_COLUMNS`` for the status table; None: every flat key).

    Raises NinsweepError (one line) for a missing path, a directory that is no
    experiment, a malformed manifest and an experiment with no trials.
    """
    path = experiment_path(exp_dir)
    manifest, spec = read_manifest(path)
    return experiment_from_dirs(path, manifest, spec, _scan_trial_dirs(path, columns))


def experiment_path(exp_dir: os.PathLike | str) -> Path:
    """The local directory of an experiment: a remote one (s3://, gs://) is fetched first
    (its results, not its checkpoints); ``ninsweep.json`` names its folder."""
    if is_uri(str(exp_dir)):
        exp_dir = fetch_experiment(str(exp_dir))
    path = Path(local_path(str(exp_dir))).expanduser()
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    if not path.exists():
        raise NinsweepError(f"{path}: no such experiment directory")
    if not path.is_dir():
        raise NinsweepError(f"{path}: not a directory (expected an experiment directory)")
    return path.resolve()


def read_manifest(path: Path) -> tuple[Optional[dict[str, Any]], Optional[SweepSpec]]:
    """``ninsweep.json`` as read and typed; (None, None) when the experiment has none."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return None, None
    manifest = _read_json(manifest_path, "the experiment manifest")
    return manifest, SweepSpec.from_manifest(manifest, where=str(manifest_path))


def experiment_from_dirs(path: Path, manifest: Optional[dict[str, Any]], spec: Optional[SweepSpec],
                         dirs: dict[str, list[_TrialDir]]) -> Experiment:
    """The Experiment of a manifest and the trial directories read so far (trial name ->
    its directories): what ``load_experiment`` returns, and what a reader that follows a
    running sweep (``ninsweep.dashboard``) rebuilds after each new record."""
    if manifest is None and not dirs:
        hint = ""
        inner = sorted(p.name for p in path.iterdir() if (p / MANIFEST).is_file())
        if inner:
            hint = f"; it holds experiments: {', '.join(inner[:5])}"
        raise NinsweepError(
            f"{path}: not a ninsweep experiment (no {MANIFEST} and no trial directories with "
            f"{PARAMS_FILE}){hint}")

    # The planned trials, then any trial directory the manifest does not list (a manifest-less
    # experiment's, or one left by an earlier sweep of the same name), typed by its params.json.
    planned = list(spec.trials) if spec else []
    known = {t.name for t in planned}
    for name, candidates in dirs.items():
        if name not in known:
            try:
                planned.append(TrialSpec.from_dict(candidates[0].trial,
                                                    where=str(candidates[0].path / PARAMS_FILE)))
            except ConfigError as err:
                warnings.warn(f"{err}; directory skipped", stacklevel=2)
    trials = [trial_record(entry, dirs.get(entry.name, ())) for entry in planned]
    if not trials:
        raise NinsweepError(f"{path}: the experiment has no trials")
    return Experiment(path=path, space_name=spec.name if spec else None, manifest=manifest,
                      trials=trials, spec=spec)


def trial_record(entry: TrialSpec, candidates: Sequence[_TrialDir]) -> TrialRecord:
    """One planned trial and what its directories (none: not started) hold."""
    trial_dir, history, error = None, _empty_columns(), None
    if candidates:
        picked = _pick_dir(entry.name, list(candidates))
        trial_dir, history = picked.path, picked.metrics
    status = _status(trial_dir, history, entry.config.train.epochs)
    if status == ERROR:
        error = _last_error_line(trial_dir / ERROR_FILE)
    return TrialRecord(entry.name, dict(entry.params), entry.config, status, history, trial_dir, error)


# --------------------------------------------------------------------------- labels


def _base_params(trial: TrialRecord) -> dict[str, Any]:
    """activation, batchnorm, init: the params' (a factory's trial has none: its config's)."""
    return {key: trial.params.get(key, getattr(trial.config.model, key)) for key in MODEL_AXES}


def _extra_params(trial: TrialRecord) -> dict[str, Any]:
    return {k: v for k, v in trial.params.items() if k not in MODEL_AXES and k != SEED}


def _seed(trial: TrialRecord) -> Any:
    return trial.config.train.seed


@functools.lru_cache(maxsize=1)
def _registry_labels() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(activation, norm, init) -> report label, from ``ninsweep/registry.py`` (no torch)."""
    from .registry import ACTIVATIONS, INITS, NORMS

    return ({name: entry.label for name, entry in ACTIVATIONS.items()},
            {name: entry.label for name, entry in NORMS.items()},
            {name: entry.label for name, entry in INITS.items()})


def config_label(activation: str, batchnorm: bool, init: str, extra: Optional[dict[str, Any]] = None) -> str:
    """The report's naming: "ELU+BN+WI", "ReLU", "LeakyReLU+BN+WI"; other params appended.

    A ``model.norm`` grid key labels as its norm ("ReLU+GN", "ReLU+BN"), not as a key=value.
    """
    activations, norms, inits = _registry_labels()
    extra = dict(extra or {})
    label = activations.get(str(activation), str(activation))
    if NORM_KEY in extra:
        norm = str(extra.pop(NORM_KEY))
        label += norms.get(norm, f"+{norm}")
    elif batchnorm:
        label += norms["batch"]
    label += inits.get(str(init), f"+{init}")
    for key, value in sorted(extra.items()):
        label += f" {key}={_fmt_value(value)}"
    return label


def factor_label(extra: dict[str, Any], model: str = "") -> str:
    """A label from the factors alone: "width=16 depth=20 norm=batch" (model keys bare,
    other sections dotted: "train.lr=0.01"); ``model`` (a factory's name) when none vary."""
    parts = [f"{key.removeprefix('model.')}={_fmt_value(value)}" for key, value in extra.items()]
    return " ".join(parts) or model or "default"


def _trial_label(trial: TrialRecord, base: dict[str, Any], extra: dict[str, Any]) -> str:
    """The NIN's trials: the report's naming (ELU+BN+WI); a model factory's: its factors."""
    factory = trial.config.model.factory
    if factory:
        return factor_label(extra, str(factory).rpartition(":")[2])
    return config_label(base["activation"], base["batchnorm"], base["init"], extra)


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# --------------------------------------------------------------------------- tables

TRIAL_COLUMNS = [
    "trial", "config", "activation", "batchnorm", "init", "seed", "status",
    "epochs_done", "epochs_planned", "final_test_acc_pct", "best_test_acc_pct", "best_epoch",
    "best_by", "final_val_acc_pct", "final_train_acc_pct", "final_train_loss", "final_test_loss", "final_val_loss", "wall_time_s",
    "images_per_s", "error", "trial_dir",
]


def trial_table(exp: Experiment) -> pd.DataFrame:
    """One row per planned trial (pending ones too), in manifest order.

    "final" is the last recorded epoch (for an unfinished trial: the latest so far).
    Accuracies are percentages. ``wall_time_s`` is the sum of ``epoch_time_s`` (training
    plus evaluation) over the kept epochs, or Ray's ``time_total_s`` of the last record
    when epoch times are missing; ``images_per_s`` is the mean over epochs.
    """
    rows = []
    extras_order: list[str] = []
    for t in exp.trials:
        base, extra = _base_params(t), _extra_params(t)
        for k in extra:
            if k not in extras_order:
                extras_order.append(k)
        row: dict[str, Any] = {
            "trial": t.name,
            "config": _trial_label(t, base, extra),
            **base, "seed": _seed(t), **extra,
            "status": t.status, "epochs_done": t.epochs_done, "epochs_planned": t.epochs_planned,
            **_history_summary(t.metrics),
            "error": t.error or "",
            "trial_dir": t.trial_dir.name if t.trial_dir else "",
        }
        rows.append(row)
    columns = TRIAL_COLUMNS[:6] + extras_order + TRIAL_COLUMNS[6:]
    df = pd.DataFrame(rows, columns=columns)
    df["epochs_done"] = df["epochs_done"].astype(int)
    df["epochs_planned"] = df["epochs_planned"].astype(int)
    df["best_epoch"] = df["best_epoch"].astype("Int64")
    df.attrs["objective"] = exp.objective  # what _config_table and the effects rank by
    return df


def objective_of(trials: pd.DataFrame) -> tuple[str, str, str]:
    """(metric, mode, trial-table column) of the objective a trial table was made for."""
    objective = trials.attrs.get("objective") or M.DEFAULT_OBJECTIVE
    return objective["metric"], objective["mode"], OBJECTIVE_COLUMNS[objective["metric"]]


def _history_summary(h: dict[str, np.ndarray]) -> dict[str, Any]:
    """A trial's final and best numbers from its history (numpy: this runs per trial).

    The best epoch is chosen on the validation split (``val_acc``) when the trial has one,
    else on the test set (then "best" is optimistic: the test set chose it); ``best_by``
    says which. ``best_test_acc_pct`` is the test accuracy *at* that epoch.
    """
    row: dict[str, Any] = {
        "final_test_acc_pct": np.nan, "best_test_acc_pct": np.nan, "best_epoch": np.nan,
        "best_by": "", "final_val_acc_pct": np.nan,
        "final_train_acc_pct": np.nan, "final_train_loss": np.nan, "final_test_loss": np.nan,
        "final_val_loss": np.nan,
        "wall_time_s": np.nan, "images_per_s": np.nan}
    epochs = h[M.EPOCH]
    if not len(epochs):
        return row

    def col(name: str) -> np.ndarray:
        values = h.get(name)
        if values is None:
            return np.full(len(epochs), np.nan)
        return values if values.dtype.kind == "f" else pd.to_numeric(values, errors="coerce").astype(float)

    test_acc = col(M.TEST_ACC)
    val_acc = col(M.VAL_ACC)
    row["final_test_acc_pct"] = 100.0 * test_acc[-1]
    row["final_val_acc_pct"] = 100.0 * val_acc[-1]
    chooser, by = (val_acc, M.VAL_ACC) if np.isfinite(val_acc).any() else (test_acc, M.TEST_ACC)
    if np.isfinite(chooser).any():
        best = int(np.nanargmax(chooser))
        row.update(best_test_acc_pct=100.0 * test_acc[best], best_epoch=int(epochs[best]), best_by=by)
    row["final_train_acc_pct"] = 100.0 * col(M.TRAIN_ACC)[-1]
    row["final_train_loss"] = float(col(M.TRAIN_LOSS)[-1])
    row["final_test_loss"] = float(col(M.TEST_LOSS)[-1])
    row["final_val_loss"] = float(col(M.VAL_LOSS)[-1])
    epoch_times = col(M.EPOCH_TIME_S)
    if np.isfinite(epoch_times).any():
        row["wall_time_s"] = float(np.nansum(epoch_times))
    elif TIME_TOTAL_S in h:
        row["wall_time_s"] = float(col(TIME_TOTAL_S)[-1])
    speeds = col(M.IMAGES_PER_S)
    if np.isfinite(speeds).any():
        row["images_per_s"] = float(np.nanmean(speeds))
    return row


def format_status(exp: Experiment) -> str:
    """Each trial's state, epochs and latest metrics: what ``ninsweep status`` prints.

    On CUDA runs a ``peak GPU MiB`` column tells how much memory a trial needs, the figure to
    choose the fractional GPU per trial from.
    """
    counts = exp.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    peak_of = {t.name: pd.to_numeric(t.metrics.get(M.PEAK_GPU_MEM_MB, np.zeros(0)), errors="coerce")
               for t in exp.trials}
    peaks = {name: float(np.nanmax(v)) for name, v in peak_of.items() if np.isfinite(v).any()}
    header = ["trial", "status", "epoch", "test acc", "best", "train loss", "test loss",
              "img/s", "wall time"] + (["peak GPU MiB"] if peaks else [])
    trials = trial_table(exp)
    cells = [[row.trial, row.status, f"{row.epochs_done}/{row.epochs_planned}",
              fmt_pct(row.final_test_acc_pct), fmt_pct(row.best_test_acc_pct),
              fmt_num(row.final_train_loss, digits=4), fmt_num(row.final_test_loss, digits=4),
              fmt_num(row.images_per_s, digits=0), fmt.duration(row.wall_time_s)]
             + ([fmt_num(peaks.get(row.trial), digits=0)] if peaks else [])
             for row in trials.itertuples(index=False)]
    head, *rows = fmt.table(header, cells, align="<<>>>>>>>>")
    lines = [f"experiment {exp.path}: {len(exp.trials)} trials: {summary}", head]
    for row, line in zip(trials.itertuples(index=False), rows):
        lines.append(line)
        if row.error:
            lines.append(f"    error: {row.error}")
        checkpointed = _checkpointed_beyond(exp, row.trial, row.epochs_done)
        if checkpointed:
            lines.append(f"    checkpointed through epoch {checkpointed}/{row.epochs_planned} "
                         "(result.json is behind; resume continues from the checkpoint)")
    return "\n".join(lines)


def _checkpointed_beyond(exp: Experiment, name: str, epochs_done: int) -> Optional[int]:
    """The newest checkpointed epoch of a trial when its results stop earlier (a driver
    killed between a checkpoint's upload and logging that epoch), else None."""
    from .checkpoints import newest_checkpointed_epoch

    trial = next((t for t in exp.trials if t.name == name), None)
    if trial is None or trial.trial_dir is None:
        return None
    newest = newest_checkpointed_epoch(trial.trial_dir)
    return newest if newest is not None and newest > epochs_done else None


def config_table(exp: Experiment) -> pd.DataFrame:
    """Per config (the params without the seed), over seeds, sorted by mean accuracy.

    Only finished trials count toward the statistics (``n``); ``n_incomplete``,
    ``n_error`` and ``n_pending`` count the others. Accuracies are percentages. For a lab4
    space, ``report_acc_pct`` is the lab report's number and ``diff_vs_report_pct`` ours
    minus it.
    """
    return _config_table(trial_table(exp), exp.is_lab4)


def _config_table(trials: pd.DataFrame, lab4: bool) -> pd.DataFrame:
    """Grouped aggregations, one pass per column (a loop over configs cost 10 ms each)."""
    fixed = set(TRIAL_COLUMNS)
    extra_cols = [c for c in trials.columns if c not in fixed]
    if trials.empty:
        return pd.DataFrame()
    first = trials.groupby("config", sort=False).head(1).set_index("config")
    labels = first.index
    status = trials["status"]

    def count(mask: pd.Series) -> pd.Series:
        return mask.groupby(trials["config"], sort=False).sum().reindex(labels, fill_value=0).astype(int)

    done = trials[status == FINISHED]
    _, mode, objective_column = objective_of(trials)
    acc = pd.to_numeric(done["final_test_acc_pct"], errors="coerce")
    acc = acc[np.isfinite(acc.to_numpy(float))]
    by = acc.groupby(done.loc[acc.index, "config"], sort=False)
    n = by.count().reindex(labels, fill_value=0).astype(int)
    mean, std = by.mean().reindex(labels), by.std(ddof=1).reindex(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = t_quantile(0.5 + CI_LEVEL / 2, (n - 1).clip(lower=1).to_numpy())
        half = pd.Series(np.where(n >= 2, t * std.to_numpy(float) / np.sqrt(n.clip(lower=1)), np.nan), index=labels)
    std = std.where(n >= 2)

    def done_mean(col: str) -> pd.Series:
        values = pd.to_numeric(done[col], errors="coerce")
        return values.groupby(done["config"], sort=False).mean().reindex(labels)

    df = pd.DataFrame({
        "config": labels,
        "activation": first["activation"], "batchnorm": first["batchnorm"], "init": first["init"],
        **{c: first[c] for c in extra_cols},
        "n_trials": trials.groupby("config", sort=False).size().reindex(labels),
        "n": n,
        "n_incomplete": count(status == INCOMPLETE),
        "n_error": count(status == ERROR),
        "n_pending": count(status == PENDING),
        "epochs_planned": trials.groupby("config", sort=False)["epochs_planned"].max().reindex(labels).astype(int),
        "mean_test_acc_pct": mean, "std_test_acc_pct": std,
        # An accuracy is in [0, 100]: so is every interval drawn for it.
        "ci95_low_pct": (mean - half).clip(lower=0.0, upper=100.0),
        "ci95_high_pct": (mean + half).clip(lower=0.0, upper=100.0),
        "min_test_acc_pct": by.min().reindex(labels), "max_test_acc_pct": by.max().reindex(labels),
        "mean_best_test_acc_pct": done_mean("best_test_acc_pct"),
        "mean_final_train_loss": done_mean("final_train_loss"),
        "mean_final_test_loss": done_mean("final_test_loss"),
        "mean_wall_time_s": done_mean("wall_time_s"),
        "mean_images_per_s": done_mean("images_per_s"),
        # The space's objective (test_acc by default: then the same as mean_test_acc_pct):
        # what the table is ranked by and the best config chosen on.
        "mean_objective": done_mean(objective_column), "std_objective":
            pd.to_numeric(done[objective_column], errors="coerce").groupby(
                done["config"], sort=False).std(ddof=1).reindex(labels),
    }).reset_index(drop=True)
    if lab4:
        refs = [REFERENCE_ACC_PCT.get(label) if not extra_cols else None for label in labels]
        df["report_acc_pct"] = [np.nan if r is None else r for r in refs]
        df["diff_vs_report_pct"] = df["mean_test_acc_pct"] - df["report_acc_pct"]
    df.attrs["objective"] = trials.attrs.get("objective") or dict(M.DEFAULT_OBJECTIVE)
    df = df.sort_values(["mean_objective", "config"], ascending=[mode == "min", True], na_position="last",
                        kind="stable").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def significance(exp: Experiment, alpha: float = ALPHA) -> pd.DataFrame:
    """Each config against the best (highest mean) by Welch's t-test, Holm-corrected.

    Columns: config, n, mean_test_acc_pct, best_config, diff_vs_best_pct, t_stat, df
    (Welch-Satterthwaite), p_value (two-sided, uncorrected), p_holm (adjusted over the
    configs tested against the best), significant (p_holm < alpha) and verdict. Needs >= 2
    finished seeds in both configs; otherwise the verdict says so.
    """
    trials = trial_table(exp)
    return _significance(trials, _config_table(trials, False), alpha)


def _significance(trials: pd.DataFrame, configs: pd.DataFrame, alpha: float) -> pd.DataFrame:
    cols = ["config", "n", "mean_test_acc_pct", "best_config", "diff_vs_best_pct", "t_stat", "df",
            "p_value", "p_holm", "significant", "verdict"]
    if configs.empty:
        return pd.DataFrame(columns=cols)
    finished = trials[trials["status"] == FINISHED]
    objective_column = objective_of(trials)[2]
    # Tested on the objective (final test accuracy unless the space names another); the
    # best is the first of the config table, which is ranked by it.
    samples = {label: pd.to_numeric(g[objective_column], errors="coerce").dropna().to_numpy(float)
               for label, g in finished.groupby("config", sort=False)}
    ranked = configs.dropna(subset=["mean_objective"])
    best = ranked.iloc[0]["config"] if len(ranked) else None
    best_x = samples.get(best, np.array([]))
    rows = []
    for _, c in configs.iterrows():
        label = c["config"]
        x = samples.get(label, np.array([]))
        row = {"config": label, "n": len(x), "mean_test_acc_pct": c["mean_test_acc_pct"],
               "best_config": best, "diff_vs_best_pct": np.nan, "t_stat": np.nan, "df": np.nan,
               "p_value": np.nan, "p_holm": np.nan, "significant": False, "verdict": ""}
        if len(x) == 0:
            row["verdict"] = VERDICT_NONE
        elif label == best:
            row["diff_vs_best_pct"] = 0.0
            row["verdict"] = VERDICT_BEST
        else:
            row["diff_vs_best_pct"] = float(x.mean() - best_x.mean())
            if len(x) < 2 or len(best_x) < 2:
                row["verdict"] = VERDICT_FEW
            elif np.ptp(x) == 0 and np.ptp(best_x) == 0:
                row["verdict"] = VERDICT_FLAT
            else:
                row["t_stat"], row["df"], row["p_value"] = welch(x, best_x)
        rows.append(row)
    df = pd.DataFrame(rows, columns=cols)
    df["p_holm"] = holm(df["p_value"].to_numpy(float))
    tested = df["p_holm"].notna()
    df.loc[tested, "significant"] = df.loc[tested, "p_holm"] < alpha
    df.loc[tested, "verdict"] = np.where(df.loc[tested, "significant"], VERDICT_LOWER, VERDICT_SAME)
    df["significant"] = df["significant"].astype(bool)
    return df


def t_quantile(q: float, df: Any) -> Any:
    """Student's t quantile (``scipy.stats.t.ppf``) without importing scipy.stats."""
    return special.stdtrit(df, q)


def t_two_sided_p(t: Any, df: Any) -> Any:
    """2 P(T > |t|) for Student's t with ``df`` degrees of freedom (``scipy.special.stdtr``)."""
    return 2.0 * special.stdtr(df, -np.abs(t))


def welch(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Welch's t, its Welch-Satterthwaite df and two-sided p: ``ttest_ind(x, y, equal_var=False)``."""
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    with np.errstate(all="ignore"):
        t = (x.mean() - y.mean()) / np.sqrt(vx + vy)
        df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    return float(t), float(df), float(t_two_sided_p(t, df))


class Tables(NamedTuple):
    trials: pd.DataFrame  # trial_table
    configs: pd.DataFrame  # config_table
    significance: pd.DataFrame  # significance


def tables(exp: Experiment, alpha: float = ALPHA) -> Tables:
    """The three tables at once (each computed once)."""
    trials = trial_table(exp)
    configs = _config_table(trials, exp.is_lab4)
    return Tables(trials, configs, _significance(trials, configs, alpha))


# --------------------------------------------------------------------------- output


def summary_table(exp: Experiment, alpha: float = ALPHA) -> str:
    """The terminal table (what ``ninsweep run`` prints at its end), with a status line."""
    _, configs, sig = tables(exp, alpha)
    counts = exp.counts()
    status = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    head = f"experiment {exp.name}" + (f" (space {exp.space_name})" if exp.space_name else "")
    return f"{head}: {len(exp.trials)} trials: {status}\n" + format_table(configs, sig, alpha)


def format_table(config_df: pd.DataFrame, significance_df: Optional[pd.DataFrame] = None,
                 alpha: float = ALPHA) -> str:
    """A fixed-width text table of ``config_table`` (plus ``significance`` when given)."""
    if config_df.empty:
        return "(no configs)\n"
    sig = {}
    if significance_df is not None and not significance_df.empty:
        sig = significance_df.set_index("config").to_dict("index")
    lab4 = "report_acc_pct" in config_df.columns
    unfinished = (config_df[["n_incomplete", "n_error", "n_pending"]].sum(axis=1) > 0).any()
    headers = ["#", "config", "n", "test acc % (mean ± std)", "95% CI", "min", "max"]
    if lab4:
        headers += ["report", "diff"]
    if sig:
        headers += ["p (Holm)", "vs best"]
    if unfinished:
        headers += ["not finished"]
    rows = []
    for _, c in config_df.iterrows():
        row = [str(c["rank"]), str(c["config"]), str(c["n"]),
               fmt_pm(c["mean_test_acc_pct"], c["std_test_acc_pct"]),
               fmt_ci(c["ci95_low_pct"], c["ci95_high_pct"]),
               fmt_num(c["min_test_acc_pct"]), fmt_num(c["max_test_acc_pct"])]
        if lab4:
            row += [fmt_num(c["report_acc_pct"], none="none"), fmt_num(c["diff_vs_report_pct"], signed=True)]
        if sig:
            s = sig.get(c["config"], {})
            row += [fmt_p(s.get("p_holm", np.nan)), str(s.get("verdict", ""))]
        if unfinished:
            row += [fmt_unfinished(c)]
        rows.append(row)
    right = {"#", "n", "min", "max", "report", "diff", "p (Holm)"}
    out = fmt.table(headers, rows, align="".join(">" if h in right else "<" for h in headers),
                    rule=True)
    notes = ["n: finished seeds; statistics over finished trials only."]
    if sig:
        notes.append(f"vs best: Welch's t-test against the best config, Holm-corrected, alpha {alpha:g}.")
    if lab4:
        notes.append(f"report: the lab report's single run after {REFERENCE_EPOCHS} epochs; diff = ours - report.")
    return "\n".join(out + [""] + notes) + "\n"


def fmt_num(v: Any, signed: bool = False, none: str = "-", digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)) or pd.isna(v):
        return none
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_pct(v: Any) -> str:
    text = fmt_num(v)
    return text if text == "-" else text + "%"


def fmt_pm(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if not pd.isna(std) else f"{mean:.2f}"


def fmt_ci(lo: float, hi: float) -> str:
    return "-" if pd.isna(lo) else f"[{lo:.2f}, {hi:.2f}]"


def fmt_p(p: float) -> str:
    if pd.isna(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_unfinished(c: pd.Series) -> str:
    parts = [f"{int(c[k])} {name}" for k, name in
             (("n_incomplete", INCOMPLETE), ("n_error", ERROR), ("n_pending", PENDING)) if c[k]]
    return ", ".join(parts)


def csv_paths(exp: Experiment, out: Optional[os.PathLike | str] = None) -> tuple[Path, Path, Path]:
    """Where ``write_csvs`` writes: (per-trial CSV, per-config CSV, effects CSV).

    No ``out``: ``<exp>/results.csv``, ``<exp>/results-configs.csv`` and
    ``<exp>/results-effects.csv``. An existing directory (or a path ending in "/"): the same
    names in it. Otherwise ``out`` is the per-trial file and the others sit beside it:
    ``x.csv`` -> ``x-configs.csv``, ``x-effects.csv``.
    """
    if out is None:
        base = exp.path / "results.csv"
    else:
        raw = str(out)
        p = Path(raw).expanduser()
        if p.is_dir() or raw.endswith(("/", os.sep)):
            base = p / "results.csv"
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
    from .atomic import write_output
    from .outputs import check_outputs

    trials_path, configs_path, effects_path = csv_paths(exp, out)
    check_outputs([trials_path, configs_path, effects_path], exp.path, csv_paths(exp),
                  force=force, command="export")
    if not trials_path.parent.is_dir():
        raise NinsweepError(f"{trials_path.parent}: no such directory")
    trials, configs, effects = export_tables(exp, alpha, baseline)
    write_output(trials_path, trials.to_csv(index=False, float_format="%.6g"))
    write_output(configs_path, configs.to_csv(index=False, float_format="%.6g"))
    write_output(effects_path, effects.to_csv(index=False, float_format="%.6g"))
    return trials_path, configs_path, effects_path


def export_tables(exp: Experiment, alpha: float = ALPHA, baseline: Optional[str] = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables ``export`` writes: per trial, per config (with the significance
    columns), factor effects (with every config against ``baseline`` when given). Raises
    on an unknown baseline. The dashboard and the HTML report show these same tables."""
    from .effects import effects_table

    trials, configs, sig = tables(exp, alpha)
    effects = effects_table(trials, baseline)
    if not configs.empty:
        configs = configs.merge(sig[["config", "diff_vs_best_pct", "p_value", "p_holm", "verdict"]],
                                on="config", how="left")
    return trials, configs, effects
