"""An experiment directory as data: its planned trials and what each trial's files hold.

Everything here works from the results directory alone -- finished, interrupted or still
running -- without a Ray cluster and without importing Ray or torch. The layout it reads is
the contract in DEVELOPERS.md (file names: ``ninsweep.experiment_dir``):

- ``<exp>/ninsweep.json``: the manifest (every planned trial, with its params and config);
- one directory per trial that started, found by its ``params.json``
  (``{"trial": {"name", "params", "config"}}``), not by its name (Ray may add a suffix);
- ``result.json`` in it: one JSON object per reported epoch (``ninsweep.metrics`` names);
- ``error.txt`` in it when the trial failed.

A trial's status is one of ``finished`` (its last epoch is the planned one), ``error``
(``error.txt`` and not finished), ``incomplete`` (started, not finished: running or
interrupted) and ``pending`` (in the manifest, no directory yet). Unfinished trials are
marked in every table, never dropped; only finished trials count toward the statistics
(``analysis.tabulate``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from ninsweep import fmt
from ninsweep.analysis.reference import is_reference_space
from ninsweep.config import TrialConfig
from ninsweep.errors import ConfigError, NinsweepError, NinsweepWarning
from ninsweep.experiment_dir import (
    ERROR,
    ERROR_FILE,
    EXTENSION_RE,
    FINISHED,
    INCOMPLETE,
    MANIFEST_FILE,
    PARAMS_FILE,
    PENDING,
    REPLICATION_FILE,
    RESULT_FILE,
    SKIPPED,
    STATUSES,
    STOPPED,
)
from ninsweep.locations import is_uri, local_path
from ninsweep.metrics import (
    DEFAULT_OBJECTIVE,
    EPOCH,
    EPOCH_METRICS,
    EPOCH_TIME_S,
    IMAGES_PER_S,
    PEAK_GPU_MEM_MB,
    STOPPED_EARLY,
    TEST_ACC,
    TEST_LOSS,
    TIME_TOTAL_S,
    TRAIN_LOSS,
    VAL_METRICS,
)
from ninsweep.space.schema import FINAL_STAGE, TRIAL_KEY, SweepSpec, TrialSpec
from ninsweep.storage import fetch_experiment


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
    stage: Optional[str] = None  # with ``tune:``: TUNE_STAGE or FINAL_STAGE
    tuned: dict[str, Any] = dataclasses.field(default_factory=dict)  # drawn, or chosen
    chosen_from: Optional[str] = None  # a final trial's tuning trial

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
        return dict(self.spec.objective) if self.spec else dict(DEFAULT_OBJECTIVE)

    @property
    def is_lab4(self) -> bool:
        return is_reference_space(self.space_name)

    def counts(self) -> dict[str, int]:
        """Trials per status, every status present (0 when none)."""
        out = {s: 0 for s in STATUSES}
        for t in self.trials:
            out[t.status] += 1
        return out



# --------------------------------------------------------------------------- reading

# The columns the tables, the status line and the report use; the experiment loader reads
# only these (``load_history(columns=None)`` keeps every flat key instead).
HISTORY_COLUMNS = (*EPOCH_METRICS, *VAL_METRICS, PEAK_GPU_MEM_MB, TIME_TOTAL_S, STOPPED_EARLY)
STATUS_COLUMNS = (EPOCH, TRAIN_LOSS, TEST_LOSS, TEST_ACC, EPOCH_TIME_S,
                  IMAGES_PER_S, PEAK_GPU_MEM_MB, TIME_TOTAL_S, STOPPED_EARLY)
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
    return _as_frame(history_columns(parse_results(data, path, columns)))


def parse_results(data: bytes, path: Path, columns: Optional[Sequence[str]]) -> dict[str, np.ndarray]:
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
    return parse_lines(data, path, columns)


def _parse_with_pyarrow(data: bytes, columns: Sequence[str]) -> Optional[dict[str, np.ndarray]]:
    schema = pa.schema([(c, pa.float64()) for c in columns])
    try:
        table = pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 16)),
            parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                               unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return {c: table.column(c).to_numpy(zero_copy_only=False).astype(float, copy=False)
            for c in columns}


def parse_lines(data: bytes, path: Path, columns: Optional[Sequence[str]]) -> dict[str, np.ndarray]:
    text = data.decode("utf-8", errors="replace")
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    records: list[dict[str, Any]] = []
    for pos, (lineno, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            if pos != len(lines) - 1:
                warnings.warn(f"{path}:{lineno}: not a JSON object, line skipped",
                              NinsweepWarning, stacklevel=4)
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
        if k in EPOCH_METRICS or columns is not None:
            out[k] = np.array([_as_float(v) for v in values], dtype=float)
        else:
            out[k] = np.array([None if isinstance(v, (dict, list)) else v for v in values], dtype=object)
    out[EPOCH] = np.array([_as_float(r.get(EPOCH)) for r in records], dtype=float)
    return out


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return np.nan
    return float(value)


def history_columns(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Apply the repeated-epoch rule to parsed columns: the kept rows, one per epoch, sorted.

    Every metric name is a key (NaN where the file lacks it); ``epoch`` is an int array.
    """
    epochs = raw.get(EPOCH)
    if epochs is None or not len(epochs):
        return empty_columns()
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
        return empty_columns()
    columns = {EPOCH: np.floor(epochs[keep]).astype(int)}
    for c in EPOCH_METRICS[1:]:
        columns[c] = raw[c][keep] if c in raw else np.full(len(keep), np.nan)
    for c, values in raw.items():
        if c not in columns:
            columns[c] = values[keep]
    return columns


def empty_columns() -> dict[str, np.ndarray]:
    return {c: np.zeros(0, dtype=int if c == EPOCH else float) for c in EPOCH_METRICS}


def _as_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    df = pd.DataFrame(columns)
    return df.infer_objects() if any(v.dtype == object for v in columns.values()) else df


def _empty_history() -> pd.DataFrame:
    return _as_frame(empty_columns())


def _epochs_done(metrics: dict[str, np.ndarray]) -> int:
    epochs = metrics[EPOCH]
    return int(epochs[-1]) if len(epochs) else 0  # kept epochs are increasing


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise NinsweepError(f"{path}: cannot read {what}: {err}") from None
    except ValueError as err:
        raise NinsweepError(f"{path}: {what} is not valid JSON ({err})") from None


class TrialDir(NamedTuple):
    path: Path
    trial: dict[str, Any]  # params.json's "trial" entry
    metrics: dict[str, np.ndarray]  # _history_columns
    mtime: float


def _read_trial_dir(child: Path, columns: Optional[Sequence[str]]) -> Optional[TrialDir]:
    """A child directory's params.json and history in one visit; None if no trial of ours."""
    params_path = child / PARAMS_FILE
    try:
        raw = params_path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError:
        warnings.warn(f"{params_path}: unreadable, directory skipped", NinsweepWarning,
                      stacklevel=4)
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        warnings.warn(f"{params_path}: unreadable, directory skipped", NinsweepWarning,
                      stacklevel=4)
        return None
    trial = data.get(TRIAL_KEY) if isinstance(data, dict) else None
    if not isinstance(trial, dict) or not isinstance(trial.get("name"), str):
        return None  # a Ray trial of something else
    result = child / RESULT_FILE
    try:
        blob = result.read_bytes()
        mtime = result.stat().st_mtime
        metrics = history_columns(parse_results(blob, result, columns))
    except (FileNotFoundError, IsADirectoryError):
        metrics, mtime = empty_columns(), child.stat().st_mtime
    return TrialDir(child, trial, metrics, mtime)


def _scan_trial_dirs(exp_dir: Path, columns: Optional[Sequence[str]] = HISTORY_COLUMNS
                     ) -> dict[str, list[TrialDir]]:
    """Trial name -> its directories among the direct children, each read once.

    The directories are read by a thread pool: the JSON parsing runs in pyarrow's C++ code
    without the GIL, and the file reads overlap.
    """
    children = sorted(c for c in exp_dir.iterdir() if c.is_dir())
    if len(children) >= 4 * READ_THREADS > 4:
        with ThreadPoolExecutor(READ_THREADS) as pool:
            read = list(pool.map(lambda c: _read_trial_dir(c, columns), children, chunksize=16))
    else:
        read = [_read_trial_dir(c, columns) for c in children]
    found: dict[str, list[TrialDir]] = {}
    for entry in read:
        if entry is not None:
            found.setdefault(entry.trial["name"], []).append(entry)
    return found


def _pick_dir(name: str, candidates: list[TrialDir]) -> TrialDir:
    """One directory per trial name: the one with most epochs, then the newest."""
    if len(candidates) == 1:
        return candidates[0]
    ordered = sorted(candidates, key=lambda d: (_epochs_done(d.metrics), d.mtime))
    warnings.warn(f"trial {name} has {len(ordered)} directories; using {ordered[-1].path.name}",
                  NinsweepWarning, stacklevel=3)
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
    stopped = history.get(STOPPED_EARLY)
    if stopped is not None and len(stopped) and stopped[-1] == 1:
        return STOPPED  # its last record is the one the scheduler stopped it after
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
    manifest, spec = manifest_of(path)
    return experiment_from_dirs(path, manifest, spec, _scan_trial_dirs(path, columns))


def experiment_path(exp_dir: os.PathLike | str) -> Path:
    """The local directory of an experiment: a remote one (s3://, gs://) is fetched first
    (its results, not its checkpoints); ``ninsweep.json`` names its folder."""
    if is_uri(str(exp_dir)):
        exp_dir = fetch_experiment(str(exp_dir))
    path = Path(local_path(str(exp_dir))).expanduser()
    if path.is_file() and path.name == MANIFEST_FILE:
        path = path.parent
    if not path.exists():
        raise NinsweepError(f"{path}: no such experiment directory")
    if not path.is_dir():
        raise NinsweepError(f"{path}: not a directory (expected an experiment directory)")
    return path.resolve()


def manifest_of(path: Path) -> tuple[Optional[dict[str, Any]], Optional[SweepSpec]]:
    """``ninsweep.json`` as read and typed; (None, None) when the experiment has none."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        return None, None
    manifest = _read_json(manifest_path, "the experiment manifest")
    spec = SweepSpec.from_manifest(manifest, where=str(manifest_path))
    return manifest, spec.with_extensions(_extensions(path), where=str(path))


def _extensions(path: Path) -> list[dict[str, Any]]:
    """``ninsweep extend``'s files in a local experiment directory, oldest first."""
    found = sorted((int(m.group(1)), p) for p in path.iterdir()
                   if (m := EXTENSION_RE.fullmatch(p.name)))
    records = [_read_json(p, "an extension's trial list") for _, p in found]
    for (_, p), record in zip(found, records):
        if not isinstance(record, dict) or not isinstance(record.get("trials"), list):
            raise NinsweepError(f"{p}: expected an object with a trials list")
    return records


def experiment_from_dirs(path: Path, manifest: Optional[dict[str, Any]], spec: Optional[SweepSpec],
                         dirs: dict[str, list[TrialDir]]) -> Experiment:
    """The Experiment of a manifest and the trial directories read so far (trial name ->
    its directories): what ``load_experiment`` returns, and what a reader that follows a
    running sweep (``ninsweep.dashboard``) rebuilds after each new record."""
    if manifest is None and not dirs:
        hint = ""
        inner = sorted(p.name for p in path.iterdir() if (p / MANIFEST_FILE).is_file())
        if inner:
            hint = f"; it holds experiments: {', '.join(inner[:5])}"
        raise NinsweepError(
            f"{path}: not a ninsweep experiment (no {MANIFEST_FILE} and no trial directories with "
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
                warnings.warn(f"{err}; directory skipped", NinsweepWarning, stacklevel=2)
    trials = [trial_record(entry, dirs.get(entry.name, ())) for entry in planned]
    skipped = set(replication_record(path).get("skipped", []))
    for t in trials:
        if t.name in skipped and t.status == PENDING:
            t.status = SKIPPED  # adaptive replication decided without it
    if not trials:
        raise NinsweepError(f"{path}: the experiment has no trials")
    return Experiment(path=path, space_name=spec.name if spec else None, manifest=manifest,
                      trials=trials, spec=spec)


def replication_record(path: Path) -> dict[str, Any]:
    """``replication.json`` (adaptive replication's waves and decisions), {} when none."""
    target = path / REPLICATION_FILE
    if not target.is_file():
        return {}
    record = _read_json(target, "the adaptive replication record")
    return record if isinstance(record, dict) else {}


def trial_record(entry: TrialSpec, candidates: Sequence[TrialDir]) -> TrialRecord:
    """One planned trial and what its directories (none: not started) hold."""
    trial_dir, history, error = None, empty_columns(), None
    if candidates:
        picked = _pick_dir(entry.name, list(candidates))
        trial_dir, history = picked.path, picked.metrics
    config, tuned, chosen_from = entry.config, dict(entry.tuned), None
    if candidates and entry.stage is not None:
        # A final trial's chosen values (and an optuna tuning trial's asked ones) are in its
        # params.json, not the manifest.
        ran = picked.trial
        tuned, chosen_from = dict(ran.get("tuned") or {}), ran.get("chosen_from")
        try:
            config = TrialConfig.from_dict(ran.get("config"), where=str(trial_dir / PARAMS_FILE))
        except ConfigError as err:
            warnings.warn(f"{err}; the manifest's config is used", NinsweepWarning, stacklevel=2)
    status = _status(trial_dir, history, config.train.epochs)
    if status == ERROR:
        error = _last_error_line(trial_dir / ERROR_FILE)
    return TrialRecord(entry.name, dict(entry.params), config, status, history, trial_dir, error,
                       entry.stage, tuned, chosen_from)


def compared(trials: pd.DataFrame) -> pd.Series:
    """The rows of a trial table that the final table and the effects compare: finished, and
    in a tuned experiment a final trial (tuning trials ran a short recipe to choose values on
    the validation split; default trials are the untuned comparison, tabled apart)."""
    mask = trials["status"] == FINISHED
    if "stage" in trials:  # a tuned experiment: its final trials (the default ones apart)
        mask &= trials["stage"] == FINAL_STAGE
    return mask
