"""An experiment that is followed as it grows: only what is new in each result file is read.

``LiveExperiment(location)`` reads an experiment directory once (as ``analysis.load_experiment``
does) and remembers, per trial directory, how far its ``result.json`` was read. ``refresh()``
then reads only the bytes appended since: the new complete lines are parsed by the analysis's
own parser and merged into the kept history by the analysis's own repeated-epoch rule (a
record replaces the kept records of its epoch and every later one: ``analysis.load_history``),
so a followed experiment holds exactly what a fresh ``load_experiment`` would read. A finished
trial is not looked at again (Tune never runs a finished trial again, so its file does not
grow); a new trial directory is found when the experiment folder changes. ``experiment()``
gives the ``analysis.Experiment`` of what has been read, for the analysis tables.

A remote experiment (s3://, gs://) is copied as ``export`` copies it
(``storage.fetch_experiment``), at most every ``remote_every_s`` seconds, and the local copy
is followed the same way.

A trial that is incomplete on disk and whose result file changed within the last
``live_window(trial)`` seconds reads as ``running`` (``analysis.RUNNING``, the console's word):
the files alone cannot tell a running trial from an interrupted one, its recent writes can.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ninsweep.analysis.results import (
    HISTORY_COLUMNS,
    Experiment,
    TrialDir,
    TrialRecord,
    empty_columns,
    experiment_from_dirs,
    experiment_path,
    history_columns,
    manifest_of,
    parse_lines,
    parse_results,
    trial_record,
)
from ninsweep.experiment_dir import ERROR_FILE, FINISHED, INCOMPLETE, PARAMS_FILE, RESULT_FILE, RUNNING
from ninsweep.locations import is_uri
from ninsweep.metrics import EPOCH, EPOCH_TIME_S
from ninsweep.space.schema import TRIAL_KEY, TrialSpec
from ninsweep.storage import fetch_experiment

# A trial counts as running when its results changed this recently: at least a minute, and
# three of its own epochs (a slow epoch on a CPU takes minutes).
LIVE_MIN_S = 60.0
LIVE_EPOCHS = 3.0
REMOTE_EVERY_S = 15.0
SMALL_CHUNK = 16 * 1024  # bytes: about 30 records


@dataclass
class _Followed:
    """One trial directory and how far its result.json has been read."""

    path: Path
    trial: dict[str, Any]  # params.json's "trial" entry
    metrics: dict[str, np.ndarray] = field(default_factory=empty_columns)
    offset: int = 0  # bytes of result.json consumed (complete lines)
    size: int = -1
    mtime_ns: int = 0
    changed_at: float = 0.0  # wall time of result.json's last change (its mtime)
    errored: bool = False  # error.txt seen

    @property
    def result(self) -> Path:
        return self.path / RESULT_FILE

    def as_trial_dir(self) -> TrialDir:
        return TrialDir(self.path, self.trial, self.metrics, self.changed_at or self.mtime_ns / 1e9)

    def update(self) -> int:
        """Read what was appended since the last call; return the number of new records."""
        try:
            st = os.stat(self.result)
        except (FileNotFoundError, NotADirectoryError):
            if self.changed_at == 0.0:
                self.changed_at = _mtime(self.path)
            return 0
        if st.st_size == self.size and st.st_mtime_ns == self.mtime_ns:
            return 0
        if st.st_size < self.offset:  # replaced by a shorter file: read it anew
            self.offset, self.metrics = 0, empty_columns()
        try:
            with open(self.result, "rb") as stream:
                stream.seek(self.offset)
                data = stream.read(max(0, st.st_size - self.offset))
        except OSError:
            return 0
        self.size, self.mtime_ns, self.changed_at = st.st_size, st.st_mtime_ns, st.st_mtime
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if tail.strip() and _is_json(tail):
            cut = len(data)  # a complete last record without its newline (load_history keeps it)
        chunk = data[:cut]
        self.offset += cut
        if not chunk.strip():
            return 0
        if not chunk.endswith(b"\n"):
            chunk += b"\n"
        # A few new lines: the analysis's line reader (pyarrow's setup costs more than they
        # do); a file read whole: its pyarrow reader. Both give the same columns.
        raw = (parse_lines(chunk, self.result, HISTORY_COLUMNS) if len(chunk) < SMALL_CHUNK
               else parse_results(chunk, self.result, HISTORY_COLUMNS))
        self.metrics = merge_history(self.metrics, history_columns(raw))
        return int(len(raw.get(EPOCH, ())))


def merge_history(kept: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The kept history followed by a new chunk's kept records (``analysis._history_columns``
    of the chunk alone), by the analysis's rule: each record replaces the kept records of its
    epoch and every later one. The chunk's first kept record has its smallest epoch, so the
    old rows below that epoch survive, and then the chunk's rows."""
    if not len(new[EPOCH]):
        return kept
    keep = kept[EPOCH] < new[EPOCH][0]
    n_old, n_new = int(keep.sum()), len(new[EPOCH])
    out = {}
    for key in dict.fromkeys([*kept, *new]):
        old = kept[key][keep] if key in kept else np.full(n_old, np.nan)
        add = new[key] if key in new else np.full(n_new, np.nan)
        out[key] = np.concatenate([old, add]) if n_old else add
    out[EPOCH] = out[EPOCH].astype(int)
    return out


def _spec_of(trial: TrialRecord):
    """The planned trial (name, params, config) a record was made from."""

    return TrialSpec.model_construct(name=trial.name, params=dict(trial.params), config=trial.config)


def _is_json(text: bytes) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _read_params(child: Path) -> Optional[dict[str, Any]]:
    """params.json's trial entry; None when the directory is no trial of ours (yet)."""
    try:
        data = json.loads((child / PARAMS_FILE).read_bytes())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    trial = data.get(TRIAL_KEY) if isinstance(data, dict) else None
    if not isinstance(trial, dict) or not isinstance(trial.get("name"), str):
        return None
    return trial


class LiveExperiment:
    """An experiment directory followed as a sweep writes it (see the module's docstring)."""

    def __init__(self, location: os.PathLike | str, *, remote_every_s: float = REMOTE_EVERY_S,
                 clock=time.time):
        self.location = str(location)
        self.remote = is_uri(self.location)
        self.remote_every_s = remote_every_s
        self._clock = clock
        self._fetched_at = clock() if self.remote else 0.0
        self.path = experiment_path(self.location)  # fetches a remote one
        self.manifest, self.spec = manifest_of(self.path)
        self._followed: dict[Path, _Followed] = {}
        self._unclaimed: set[Path] = set()  # child folders without a params.json of ours yet
        self._dir_mtime_ns = -1
        self._lock = threading.Lock()
        self.version = 0  # grows by one whenever something new was read
        self.records_read = 0
        self._experiment: Optional[Experiment] = None
        self._finished: set[Path] = set()
        self._index: dict[str, int] = {}
        self.refresh(force=True)

    @property
    def name(self) -> str:
        return self.path.name

    def refresh(self, force: bool = False) -> bool:
        """Read what is new; True when anything was. Costs what is new (plus a stat per
        unfinished trial): only the trials that changed are rebuilt."""
        with self._lock:
            if self.remote and (force or self._clock() - self._fetched_at >= self.remote_every_s):
                if not force:
                    fetch_experiment(self.location, self.path)
                self._fetched_at = self._clock()
            changed = set(self._scan_children())
            if self.manifest is None:
                self.manifest, self.spec = manifest_of(self.path)
                self._experiment = None
            records = 0
            for path, followed in self._followed.items():
                if path in self._finished:
                    continue
                new = followed.update()
                errored = (path / ERROR_FILE).exists()
                if new or errored != followed.errored:
                    followed.errored = errored
                    changed.add(followed.trial["name"])
                records += new
            self.records_read += records
            if self._experiment is None or any(name not in self._index for name in changed):
                self._experiment = experiment_from_dirs(self.path, self.manifest, self.spec,
                                                          self._dirs())
                self._index = {t.name: i for i, t in enumerate(self._experiment.trials)}
            elif changed:
                trials = list(self._experiment.trials)
                dirs = self._dirs(changed)
                for name in changed:
                    i = self._index[name]
                    entry = _spec_of(trials[i])
                    trials[i] = trial_record(entry, dirs.get(name, ()))
                old = self._experiment
                self._experiment = Experiment(path=old.path, space_name=old.space_name,
                                                manifest=old.manifest, trials=trials, spec=old.spec)
            else:
                return False
            self._finished = {t.trial_dir for t in self._experiment.trials
                              if t.status == FINISHED and t.trial_dir is not None}
            self.version += 1
            return True

    def _scan_children(self) -> list[str]:
        """Follow new trial directories (their trial names); the folder's listing only when
        it changed."""
        found = []
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return found
        if mtime != self._dir_mtime_ns:
            self._dir_mtime_ns = mtime
            for child in sorted(self.path.iterdir()):
                if child not in self._followed and child.is_dir():
                    self._unclaimed.add(child)
        for child in sorted(self._unclaimed):
            trial = _read_params(child)
            if trial is not None:
                self._unclaimed.discard(child)
                self._followed[child] = _Followed(child, trial)
                found.append(trial["name"])
        return found

    def _dirs(self, names=None) -> dict[str, list[TrialDir]]:
        out: dict[str, list[TrialDir]] = {}
        for followed in self._followed.values():
            name = followed.trial["name"]
            if names is None or name in names:
                out.setdefault(name, []).append(followed.as_trial_dir())
        return out

    def experiment(self) -> Experiment:
        """What has been read so far, as the analysis's Experiment."""
        with self._lock:
            assert self._experiment is not None
            return self._experiment

    def live_statuses(self, now: Optional[float] = None) -> dict[str, str]:
        """Trial name -> status word: the analysis's, or ``running`` for an incomplete trial
        whose results changed within its live window."""
        now = self._clock() if now is None else now
        exp = self.experiment()
        changed = {f.path: f.changed_at for f in self._followed.values()}
        out = {}
        for t in exp.trials:
            status = t.status
            if status == INCOMPLETE and t.trial_dir is not None:
                if now - changed.get(t.trial_dir, 0.0) <= live_window(t):
                    status = RUNNING
            out[t.name] = status
        return out


def live_window(trial: TrialRecord) -> float:
    """Seconds since its last write within which an incomplete trial counts as running."""
    times = trial.metrics.get(EPOCH_TIME_S)
    epoch = float(np.nanmean(times)) if times is not None and np.isfinite(times).any() else 0.0
    return max(LIVE_MIN_S, LIVE_EPOCHS * epoch)

