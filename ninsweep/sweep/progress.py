"""The sweep's progress on the console: one line per epoch, a live bar on a terminal, an ETA.

``SweepProgress`` is a Tune callback. It speaks ninsweep's status words
(``experiment_dir.LIVE_STATUSES``), never Tune's (TERMINATED), and counts a trial done
as soon as its last epoch is reported or it fails. On a terminal a ``rich`` bar (trial-epochs
done / planned, trials running, ETA) stays below the epoch lines; elsewhere plain lines and
the status table of ``ninsweep status`` every ``table_every_s``. ``--quiet`` drops both;
errors still show.

Tune pickles the run's callbacks into the experiment (``tuner.pkl``). A ``SweepProgress``
pickles as "the progress callback of whoever restores the experiment": the one
``trackers.activate`` installed when ninsweep resumes, a plain ``ray.tune.Callback`` for a
colleague with Ray but without ninsweep (see ``sweep.tune_state``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from operator import countOf
from pathlib import Path
from typing import Any, Optional

from ray.tune import Callback
from ray.tune.callback import CallbackList

from ninsweep.analysis.text import StatusRow, status_table
from ninsweep.console import Console, epoch_line
from ninsweep.experiment_dir import (
    ERROR,
    ERROR_FILE,
    FINISHED,
    INCOMPLETE,
    LIVE_STATUSES,
    PENDING,
    RUNNING,
    STOPPED,
    TRIAL_LOG,
)
from ninsweep.fmt import clock, last_line
from ninsweep.metrics import (
    CONFIG_ERROR,
    EPOCH,
    EPOCH_TIME_S,
    IMAGES_PER_S,
    RESTORED,
    STOPPED_EARLY,
    TEST_ACC,
    TEST_LOSS,
    TIME_TOTAL_S,
    TRAIN_LOSS,
)
from ninsweep.sweep.out_of_space import WATCH
from ninsweep.sweep.trackers import active, portable_reduce
from ninsweep.sweep.tune_state import trial_dirname


@dataclass
class EtaEstimator:
    """Time left for the sweep, from what the trials have shown so far.

    Two costs, measured separately because they scale differently: an epoch (the trainer's
    own ``epoch_time_s``) and the start of a trial (the wall time from its start to its first
    report, less that first epoch: building the model and data, and the worker process for the
    first trials). Both are shared by ``capacity`` trials at once (the most seen running).
    """

    epoch_times: list[float] = field(default_factory=list)
    start_costs: list[float] = field(default_factory=list)
    starts: dict[str, float] = field(default_factory=dict)
    capacity: int = 1

    def trial_started(self, name: str, now: float) -> None:
        self.starts.setdefault(name, now)

    def trial_reported(self, name: str, epoch_time_s: Optional[float], now: float) -> None:
        if epoch_time_s is None:
            return
        self.epoch_times.append(float(epoch_time_s))
        started = self.starts.pop(name, None)  # the first report since the trial (re)started
        if started is not None:
            self.start_costs.append(max(0.0, now - started - float(epoch_time_s)))

    def running(self, count: int) -> None:
        self.capacity = max(self.capacity, count)

    def seconds_left(self, remaining_epochs: int, unstarted_trials: int) -> Optional[float]:
        if not self.epoch_times:
            return None
        epoch = sum(self.epoch_times) / len(self.epoch_times)
        start = sum(self.start_costs) / len(self.start_costs) if self.start_costs else 0.0
        return (remaining_epochs * epoch + unstarted_trials * start) / self.capacity


class SweepProgress(Callback):
    """One line per epoch, a bar or a periodic status table, and an ETA for the sweep."""

    def __init__(self, console: Console, planned: dict[str, int],
                 started_at: Optional[float] = None, table_every_s: float = 60.0,
                 scheduler: Optional[str] = None):
        self.console = console
        self.scheduler = scheduler  # the label of the space's scheduler (ASHA), if any
        self.planned = dict(planned)  # trial name -> epochs, every trial of the sweep
        self.started_at = started_at or time.time()
        self.table_every_s = table_every_s
        self._last_table = time.time()
        self._first_start: Optional[float] = None
        self._latest: dict[str, dict[str, Any]] = {}
        self._epochs: dict[str, int] = {}
        self._errored: set[str] = set()
        self._stopped: set[str] = set()  # stopped early by the scheduler
        self._statuses: dict[str, str] = {}
        self._finished: set = set()  # Tune's Trial objects already FINISHED (by identity)
        self.eta = EtaEstimator()
        self._bar = None
        self._task = None
        self._stopping = False  # a full storage is stopping the sweep

    def __reduce__(self):
        return portable_reduce("progress", "ray.tune", "Callback")

    # -- the state of the sweep -------------------------------------------------------------

    def _update(self, trials) -> None:
        # Tune calls this with every trial at every step: a finished trial stays finished
        # (its epochs only grow), so it is skipped, or a 1,000-trial search spends O(trials^2).
        for trial in trials:
            if trial in self._finished:
                continue
            name = trial_dirname(trial)
            last = getattr(trial, "last_result", None) or {}
            self._epochs[name] = max(self._epochs.get(name, 0), int(last.get(EPOCH, 0) or 0))
            self._statuses[name] = status = self._status(name, trial.status)
            if status == FINISHED:
                self._finished.add(trial)
        self.eta.running(countOf(self._statuses.values(), RUNNING))

    def _status(self, name: str, tune_status: str) -> str:
        if self._epochs.get(name, 0) >= self.planned.get(name, 1):
            return FINISHED
        if name in self._stopped:
            return STOPPED
        if name in self._errored or tune_status == "ERROR":
            return ERROR
        if tune_status == "RUNNING":
            return RUNNING
        if tune_status == "TERMINATED":
            return INCOMPLETE  # stopped before its last epoch (Ctrl-C)
        return PENDING

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in LIVE_STATUSES}
        for name in self.planned:
            counts[self._statuses.get(name, PENDING)] += 1
        return counts

    def epochs_done(self) -> int:
        return sum(min(self._epochs.get(name, 0), epochs) for name, epochs in self.planned.items())

    def seconds_left(self) -> Optional[float]:
        remaining = 0
        unstarted = 0
        for name, epochs in self.planned.items():
            status = self._statuses.get(name, PENDING)
            if status in (FINISHED, STOPPED, ERROR):
                continue
            remaining += epochs - min(self._epochs.get(name, 0), epochs)
            unstarted += status == PENDING
        return self.eta.seconds_left(remaining, unstarted)

    def summary(self) -> str:
        counts = self.counts()
        done = counts[FINISHED] + counts[STOPPED] + counts[ERROR]
        text = f"{done}/{len(self.planned)} done, {counts[RUNNING]} running"
        if counts[STOPPED]:
            text += f", {counts[STOPPED]} stopped early"
        left = self.seconds_left()
        if left is not None and done < len(self.planned):
            text += f", ETA {clock(left)}"
        return text

    # -- Tune's hooks -----------------------------------------------------------------------

    def setup(self, **info):
        if self.console.rich is not None and not self.console.quiet:
            # rich only on a terminal (console.Console says why).
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            # redirect_stdout/stderr off: fd 1/2 belong to the driver log during the sweep.
            self._bar = Progress(TextColumn("trial-epochs"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), console=self.console.rich,
                                 transient=True, redirect_stdout=False, redirect_stderr=False)
            self._task = self._bar.add_task("sweep", total=sum(self.planned.values()),
                                            completed=self.epochs_done(), detail="starting")
            self._bar.start()

    def _refresh_bar(self) -> None:
        if self._bar is not None:
            counts = self.counts()
            left = self.seconds_left()
            detail = f"{counts[RUNNING]} running"
            if left is not None:
                detail += f" · ETA {clock(left)}"
            self._bar.update(self._task, completed=self.epochs_done(), detail=detail)

    def on_trial_start(self, iteration, trials, trial, **info):
        now = time.time()
        name = trial_dirname(trial)
        self.eta.trial_started(name, now)
        self._update(trials)
        self._statuses[name] = RUNNING
        if self._first_start is None:
            self._first_start = now
            self.console.line(f"first trial running {now - self.started_at:.1f} s after start")
        self.console.line(f"{name}: started")
        self._refresh_bar()

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.eta.trial_started(trial_dirname(trial), time.time())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = trial_dirname(trial)
        self._latest[name] = result
        if result.get(CONFIG_ERROR):
            # A configuration that cannot run: the trial ends on purpose, without retries.
            self._errored.add(name)
            self._update(trials)
            self.console.error(f"[{time.strftime('%H:%M:%S')}] {name}: {ERROR}, not retried: "
                               f"{result[CONFIG_ERROR]}")
            self._refresh_bar()
            return
        if result.get(RESTORED):  # fell back past damaged checkpoints: say so here too
            self.console.line(str(result[RESTORED]))
        self._epochs[name] = max(self._epochs.get(name, 0), int(result.get(EPOCH, 0)))
        if (self.scheduler and result.get("done")
                and int(result.get(EPOCH, 0)) < self.planned.get(name, 0)):
            # Tune marks the result done before the callbacks see it when the scheduler stops
            # the trial; its JSON logger comes after this callback, so result.json records it.
            result[STOPPED_EARLY] = 1
            self._stopped.add(name)
        self.eta.trial_reported(name, result.get(EPOCH_TIME_S), time.time())
        self._update(trials)
        self.console.line(f"{name}: {epoch_line(result, self.planned.get(name, '?'))} | "
                          f"{self.summary()}")
        self._refresh_bar()

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = trial_dirname(trial)
        if (trial.last_result or {}).get(CONFIG_ERROR):
            return  # said once, in on_trial_result
        self._update(trials)
        self._statuses[name] = self._status(name, "TERMINATED")
        status = self._statuses[name]
        if status == STOPPED:
            status = f"stopped at epoch {self._epochs.get(name, 0)} by {self.scheduler}"
        self.console.line(f"{name}: {status} | {self.summary()}")
        self._refresh_bar()

    def _out_of_space(self, trial) -> bool:
        """A trial that failed because its storage is full: not an attempt of its own (the
        retry it took is given back), and the sweep stops (``sweep.out_of_space``)."""
        if not WATCH.report_text(trial.path, _error_line(trial)):
            return False
        metadata = getattr(trial, "run_metadata", None)
        if metadata is not None and metadata.num_failures > 0:
            metadata.num_failures -= 1
        self._stop_for_space(f"{trial_dirname(trial)}: its storage is full")
        return True

    def _stop_for_space(self, why: str) -> None:
        """Say once why the sweep stops, and stop it (Tune's Ctrl-C handler, once)."""
        if not self._stopping:
            self._stopping = True
            self.console.line(f"{why}; stopping the sweep")
        WATCH.stop_sweep()

    def on_trial_recover(self, iteration, trials, trial, **info):
        # A failed attempt Tune will retry (FailureConfig): a crash, or a lost node.
        name = trial_dirname(trial)
        self.eta.trial_started(name, time.time())
        if self._out_of_space(trial):
            return
        self.console.line(f"{name}: failed (attempt {trial.num_failures}: "
                          f"{_error_line(trial)}); retrying from its latest checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        name = trial_dirname(trial)
        if self._out_of_space(trial):
            return
        self._errored.add(name)
        self._update(trials)
        self._statuses[name] = self._status(name, "ERROR")
        log = Path(trial.path) / TRIAL_LOG
        self.console.error(f"[{time.strftime('%H:%M:%S')}] {name}: {ERROR}: {_error_line(trial)} "
                           f"(traceback: {Path(trial.path) / ERROR_FILE}; log: {log})")
        self.console.line(self.summary())
        self._refresh_bar()

    def on_step_end(self, iteration, trials, **info):
        if WATCH.shortage is not None:  # the driver's log found the disk full
            self._stop_for_space(f"{WATCH.shortage.where}: no space left")
        self._update(trials)
        self._refresh_bar()
        if self._bar is None and time.time() - self._last_table >= self.table_every_s:
            self._last_table = time.time()
            self.console.line("status\n" + self.table())

    def on_experiment_end(self, trials, **info):
        self._update(trials)
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def table(self) -> str:
        """The status table of ``ninsweep status``, from the latest results Tune reported."""
        rows = []
        for name, epochs in self.planned.items():
            result = self._latest.get(name, {})
            accuracy = result.get(TEST_ACC)
            rows.append(StatusRow(
                name, self._statuses.get(name, PENDING), self._epochs.get(name, 0), epochs,
                None if accuracy is None else 100 * accuracy, None, result.get(TRAIN_LOSS),
                result.get(TEST_LOSS), result.get(IMAGES_PER_S), result.get(TIME_TOTAL_S)))
        return "\n".join(status_table(rows))


def _error_line(trial) -> str:
    """The exception line of the trial's latest error.txt (its last line), or Tune's note."""
    # Tune writes the error into the trial's local staging directory (error_file) first and
    # copies it into the experiment later.
    text = ""
    for path in (getattr(trial, "error_file", None), Path(trial.path) / ERROR_FILE):
        try:
            text = Path(path).read_text(errors="replace") if path else ""
        except OSError:
            continue
        if text.strip():
            break
    return last_line(text, 200) or f"see its {ERROR_FILE}"


class LegacySweepProgress(CallbackList):
    """What the progress callback pickled by earlier versions (``ninsweep.sweep.SweepProgress``)
    loads as: a stand-in for this run's progress and trackers. (Tune adds its own TensorBoard
    logger to such an experiment, so ours is left out.)"""

    def __init__(self):
        pass

    def __setstate__(self, state):
        pass

    @property
    def _callbacks(self):
        return [active("progress"), active("trackers")]
