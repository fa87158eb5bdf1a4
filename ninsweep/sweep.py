"""Run and resume a sweep on Ray Tune: the Tuner, its configs, progress, and the manifest.

``run_sweep`` writes the experiment's manifest (``ninsweep.json``) before Ray starts, checks
that the cluster can ever schedule a trial (a GPU space on a GPU-less machine would otherwise
wait forever), and runs the Tuner. ``resume_sweep`` restores it with ``Tuner.restore``:
finished trials stay, unfinished and errored trials continue from their latest checkpoint,
pending ones start.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO

from .errors import NinsweepError, Terminated
from .space import SweepSpec
from .preflight import check_trials
from .storage import (experiment_exists, is_uri, join, make_dirs, path_exists, read_manifest,
                      resolve_storage, write_manifest)


@dataclass(frozen=True)
class SweepOutcome:
    experiment_dir: str
    total: int
    finished: int
    errored: int
    wall_time_s: float
    config_errors: int = 0  # of the errored: a configuration that cannot run (not retried)
    terminated: bool = False  # stopped by SIGTERM rather than Ctrl-C

    @property
    def interrupted(self) -> bool:
        return self.finished + self.errored < self.total

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + signal.SIGTERM if self.terminated else 130
        return 1 if self.errored else 0


class _SigtermAsCtrlC:
    """While active, SIGTERM (what Kubernetes, Slurm and systemd send) does what Ctrl-C does.

    Ray's driver installs a SIGTERM handler that kills everything and exits 1; this one,
    installed after ``ray.init``, calls the SIGINT handler of the moment instead: Tune's
    (which ends ``fit`` gracefully, saving its state) while a sweep runs, else raises
    ``Terminated``.
    """

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self) -> "_SigtermAsCtrlC":
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:
        self.received = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)
        else:
            raise Terminated()


# -- Ray ------------------------------------------------------------------------------------

def start_ray(address: Optional[str], log: Callable[[str], None],
              code: Sequence[str] = ()) -> None:
    """Connect to ``address``, or start an embedded instance that listens on loopback only.

    ``code``: user modules (files or package directories, ``SweepSpec.code``) the trials
    import, e.g. a model factory's: shipped as ``py_modules`` to a cluster; for the embedded
    instance, whose workers inherit this process's environment, put on PYTHONPATH.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Checkpointing every epoch of short trials is intended; the warning would only alarm.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address:
        options: dict[str, Any] = {}
        if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:
            # Not a Ray job (whose runtime_env already ships the project, and which refuses
            # to merge another): ship this package so workers without ninsweep can run it.
            package = str(Path(__file__).resolve().parent)
            options["runtime_env"] = {"py_modules": [package, *code], "excludes": ["__pycache__"]}
        from .reach import check_ray_address

        check_ray_address(address)  # Ray itself would retry a dead address for minutes
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True, **options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise NinsweepError(f"cannot connect to Ray at {address}: {str(err).splitlines()[0]}") from None
        log(f"connected to Ray at {address}")
    else:
        _put_on_pythonpath(code)
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 logging_level="WARNING", log_to_driver=True)
        log("started a local Ray instance on 127.0.0.1")


def _put_on_pythonpath(code: Sequence[str]) -> None:
    """Workers of an embedded Ray inherit PYTHONPATH: add the import roots of ``code``."""
    roots = [str(Path(path).parent) for path in code]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    added = [root for root in dict.fromkeys(roots) if root not in current]
    if added:
        os.environ["PYTHONPATH"] = os.pathsep.join(current + added)


def check_schedulable(spec: SweepSpec, autoscaling: bool = False,
                      log: Callable[[str], None] = print) -> None:
    """Refuse a space no node of the cluster can ever run: Tune would leave it pending forever.

    On an autoscaling cluster the missing nodes may still come: warn instead.
    """
    import ray

    wanted_gpu, wanted_cpu = spec.resources.gpus, spec.resources.cpus
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    problem = None
    if wanted_gpu > 0 and sum(node.get("GPU", 0) for node in nodes) == 0:
        problem = (f"{spec.name}: each trial asks for {wanted_gpu:g} GPU but this Ray cluster "
                   "has no GPUs; run it on CPUs with --gpus-per-trial 0 (and --cpus-per-trial N)")
    elif not any(node.get("GPU", 0) >= wanted_gpu and node.get("CPU", 0) >= wanted_cpu
                 for node in nodes):
        best_cpu = max((node.get("CPU", 0) for node in nodes), default=0)
        problem = (f"{spec.name}: no node has {wanted_cpu:g} CPU and {wanted_gpu:g} GPU for one "
                   f"trial (largest node: {best_cpu:g} CPU); lower --cpus-per-trial / "
                   "--gpus-per-trial")
    if problem and autoscaling:
        log(f"warning: {problem} -- waiting for the autoscaler to add such nodes")
    elif problem:
        raise NinsweepError(problem)


def count_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def tune_trainable(spec: SweepSpec, experiment: Optional[str] = None):
    """The trainable with the per-trial resources of ``spec`` attached; its trials look for
    their checkpoints under ``experiment`` (a path or URI)."""
    from ray import tune

    from .trainable import make_trainable

    return tune.with_resources(make_trainable(spec.checkpoint_every, experiment),
                               spec.resources.to_ray())


def _trial_dirname(trial) -> str:
    return trial.config["trial"]["name"]


def run_sweep(spec: SweepSpec, *, storage: Optional[str] = None, name: Optional[str] = None,
              address: Optional[str] = None, autoscaling: bool = False,
              out: TextIO = sys.stdout, started_at: Optional[float] = None) -> SweepOutcome:
    started_at = started_at or time.time()
    log = _logger(out)
    from .space import check_experiment_name

    name = check_experiment_name(name) if name is not None else spec.name
    storage = resolve_storage(storage)
    experiment = join(storage, name)
    if experiment_exists(experiment):
        raise NinsweepError(f"{experiment} already exists; resume it with `ninsweep resume "
                            f"{experiment}` or choose another --name")
    check_trials(spec)
    start_ray(address, log, code=spec.code)
    import ray

    try:
        with _SigtermAsCtrlC() as sigterm:
            _check_cluster(spec, storage, autoscaling, log)
            manifest = spec.to_manifest()
            manifest.update(created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), experiment_name=name)
            write_manifest(experiment, manifest)
            return _fit_new(spec, storage, name, out, started_at, sigterm)
    finally:
        ray.shutdown()


def _check_cluster(spec: SweepSpec, storage: str, autoscaling: bool, log) -> None:
    check_schedulable(spec, autoscaling, log)
    if count_nodes() > 1:
        from .jobs import check_storage_for_cluster

        check_storage_for_cluster(storage, multi_node=True)


def _fit_new(spec: SweepSpec, storage: str, name: str, out: TextIO,
             started_at: float, sigterm: _SigtermAsCtrlC) -> SweepOutcome:
    from ray import tune

    experiment = join(storage, name)
    _logger(out)(f"experiment {experiment}: {len(spec.trials)} trials, "
                 f"{spec.resources.cpus:g} CPU + {spec.resources.gpus:g} GPU each")
    tuner = tune.Tuner(
        tune_trainable(spec, experiment),
        param_space=spec.to_param_space(),
        # Every trial asks for the same resources, so a finished trial's worker process (torch
        # imported, data cache mapped) can take the next one: the smoke sweep went from 55 s
        # to 27 s on 2 cores.
        tune_config=tune.TuneConfig(trial_name_creator=_trial_dirname,
                                    trial_dirname_creator=_trial_dirname, reuse_actors=True),
        run_config=_run_config(spec, name, storage, SweepProgress(out=out, started_at=started_at)),
    )
    return _outcome(experiment, spec, tuner.fit(), started_at, sigterm.received)


def _run_config(spec: SweepSpec, name: str, storage: str, progress: "SweepProgress"):
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint_keep),
        failure_config=tune.FailureConfig(max_failures=spec.max_retries),
        callbacks=[progress],
        verbose=0,  # our own progress lines replace Tune's large tables
    )


def resume_sweep(experiment: str, *, address: Optional[str] = None, autoscaling: bool = False,
                 out: TextIO = sys.stdout) -> SweepOutcome:
    from ray import tune

    started_at = time.time()
    log = _logger(out)
    experiment = experiment if is_uri(experiment) else str(Path(experiment).expanduser().resolve())
    spec = SweepSpec.from_manifest(read_manifest(experiment))
    check_trials(spec, where=experiment)
    start_ray(address, log, code=spec.code)
    import ray

    try:
        with _SigtermAsCtrlC() as sigterm:
            storage, _, name = experiment.rstrip("/").rpartition("/")
            _check_cluster(spec, storage, autoscaling, log)
            if not tune.Tuner.can_restore(experiment):
                # The driver died between writing the manifest and Tune's first snapshot:
                # nothing ran yet, so start the sweep the manifest describes.
                log(f"{experiment}: no Tune state yet; starting the sweep from its manifest")
                return _fit_new(spec, storage, name, out, started_at, sigterm)
            tuner = tune.Tuner.restore(experiment, trainable=tune_trainable(spec, experiment),
                                       resume_unfinished=True, resume_errored=True)
            _prepare_restore(experiment, spec, tuner.get_results(), log)
            log(f"resuming {experiment}")
            return _outcome(experiment, spec, tuner.fit(), started_at, sigterm.received)
    finally:
        ray.shutdown()


def _prepare_restore(experiment: str, spec: SweepSpec, results, log) -> None:
    """Make Tune's snapshot and storage agree before ``fit``, or refuse.

    - A finished trial whose directory is gone would be reported finished from Tune's
      snapshot alone, and Tune never reruns a finished trial: refuse, naming it.
    - A trial Tune restores from a registered checkpoint that is gone (deleted, or with its
      whole trial directory) would fail every retry with "Could not recover from checkpoint
      as it does not exist on storage anymore". An empty directory in its place satisfies
      that check; the trial then continues from the newest checkpoint that loads, or
      starts again, and Tune removes the empty one with its other old checkpoints.
    """
    from . import metrics as M

    planned = {trial.name: trial.config.train.epochs for trial in spec.trials}
    lost = []
    for result in results:
        try:
            name = _basename(result.path)  # the trial directory is named after the trial
        except RuntimeError:  # Ray: a trial that never started has no directory name yet
            continue
        trial_dir = join(experiment, name)
        metrics = result.metrics or {}
        if metrics.get(M.CONFIG_ERROR):
            continue  # ended on purpose; Tune leaves it alone
        if metrics.get(M.EPOCH, 0) >= planned.get(name, 0):
            if not path_exists(trial_dir):
                lost.append(name)
            continue
        if result.checkpoint is None:
            continue  # Tune starts it afresh; the trial finds its checkpoints itself
        # Tune also deletes its older registered checkpoints as newer ones come (num_to_keep)
        # and logs a traceback for each that is already gone.
        registered = [result.checkpoint] + [c for c, _ in result.best_checkpoints or ()]
        for checkpoint in registered:
            placeholder = join(trial_dir, _basename(checkpoint.path))
            if path_exists(placeholder):
                continue
            make_dirs(placeholder)
            if checkpoint is result.checkpoint:
                log(f"{name}: Tune's checkpoint {_basename(placeholder)} is gone from storage; "
                    "the trial continues from the newest one that loads")
    if lost:
        raise NinsweepError(
            f"{experiment}: finished trial(s) {', '.join(sorted(lost))} have no directory any "
            "more, so their results are lost and resume cannot rerun a finished trial; put "
            "the directories back, or run the space again under a new --name")


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _outcome(experiment: str, spec: SweepSpec, grid, started_at: float,
             terminated: bool = False) -> SweepOutcome:
    """Count trials by what they reached, not by Tune's status: after Ctrl-C Tune marks
    stopped trials TERMINATED although they never trained all their epochs, and a trial with
    a configuration error ends TERMINATED on purpose (so that Tune does not retry it)."""
    from . import metrics as M

    planned = {trial.name: trial.config.train.epochs for trial in spec.trials}
    finished = errored = config_errors = 0
    for result in grid:
        name = result.config["trial"]["name"]
        metrics = result.metrics or {}
        if metrics.get(M.CONFIG_ERROR):
            errored += 1
            config_errors += 1
        elif metrics.get(M.EPOCH, 0) >= planned[name]:
            finished += 1
        elif result.error is not None:
            errored += 1
    return SweepOutcome(experiment_dir=experiment, total=len(spec.trials), finished=finished,
                        errored=errored, wall_time_s=time.time() - started_at,
                        config_errors=config_errors, terminated=terminated)


def _logger(out: TextIO) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=out, flush=True)

    return log


# -- progress -------------------------------------------------------------------------------

try:
    from ray.tune import Callback as _TuneCallback
except ImportError:  # pragma: no cover - Ray is a declared dependency
    _TuneCallback = object


class SweepProgress(_TuneCallback):
    """One line per epoch, a status table every ``table_every_s``, and an ETA for the sweep."""

    def __init__(self, out: TextIO = sys.stdout, started_at: Optional[float] = None,
                 table_every_s: float = 60.0):
        self.out = out
        self.started_at = started_at or time.time()
        self.table_every_s = table_every_s
        self._last_table = time.time()
        self._first_start: Optional[float] = None
        self._latest: dict[str, dict[str, Any]] = {}

    def __getstate__(self):
        # Tune pickles the run config with the experiment; a stream cannot be pickled.
        state = dict(self.__dict__)
        state["out"] = None
        return state

    def __setstate__(self, state):
        # Restored by Tuner.restore: a new driver, so timings start again.
        self.__dict__.update(state)
        self.out = sys.stdout
        self.started_at = time.time()
        self._first_start = None

    def _print(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=self.out, flush=True)

    @staticmethod
    def _planned_epochs(trial) -> int:
        return int(trial.config["trial"]["config"]["train"]["epochs"])

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._first_start is None:
            self._first_start = time.time()
            self._print(f"first trial running {self._first_start - self.started_at:.1f} s "
                        "after start")
        self._print(f"{_trial_dirname(trial)}: started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from . import metrics as M

        name = _trial_dirname(trial)
        self._latest[name] = result
        if result.get(M.CONFIG_ERROR):
            self._print(f"{name}: ERROR, not retried: {result[M.CONFIG_ERROR]}")
            return
        epoch = result.get(M.EPOCH, 0)
        self._print(f"{name}: epoch {epoch}/{self._planned_epochs(trial)} "
                    f"test acc {100 * result.get(M.TEST_ACC, 0):.2f}% "
                    f"train loss {result.get(M.TRAIN_LOSS, float('nan')):.3f} "
                    f"{result.get(M.IMAGES_PER_S, 0):.0f} img/s"
                    f"{' (from its checkpoint)' if result.get(M.REPLAYED) else ''} | "
                    f"{self._summary(trials)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        from . import metrics as M

        if (trial.last_result or {}).get(M.CONFIG_ERROR):
            return  # said once, in on_trial_result
        self._print(f"{_trial_dirname(trial)}: finished | {self._summary(trials)}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        # A failed attempt Tune will retry (FailureConfig): a crash, or a lost node.
        self._print(f"{_trial_dirname(trial)}: failed (attempt {trial.num_failures}); "
                    "retrying from its latest checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(f"{_trial_dirname(trial)}: ERROR{_error_line(trial)} (see "
                    f"{trial.path}/error.txt) | {self._summary(trials)}")

    def on_step_end(self, iteration, trials, **info):
        if time.time() - self._last_table >= self.table_every_s:
            self._last_table = time.time()
            self._print("status\n" + self.table(trials))

    def on_experiment_end(self, trials, **info):
        self._print("sweep ended\n" + self.table(trials))

    def table(self, trials) -> str:
        from . import metrics as M

        rows = [f"{'trial':<24} {'status':<11} {'epoch':>9} {'test acc':>9} {'img/s':>7}"]
        for trial in trials:
            result = self._latest.get(_trial_dirname(trial), {})
            epoch = f"{result.get(M.EPOCH, 0)}/{self._planned_epochs(trial)}"
            accuracy = f"{100 * result[M.TEST_ACC]:.2f}%" if M.TEST_ACC in result else "-"
            speed = f"{result[M.IMAGES_PER_S]:.0f}" if M.IMAGES_PER_S in result else "-"
            status = "ERROR" if result.get(M.CONFIG_ERROR) else trial.status
            rows.append(f"{_trial_dirname(trial):<24} {status:<11} {epoch:>9} "
                        f"{accuracy:>9} {speed:>7}")
        return "\n".join(rows)

    def _summary(self, trials) -> str:
        from . import metrics as M

        done = sum(1 for t in trials if t.status in ("TERMINATED", "ERROR"))
        running = sum(1 for t in trials if t.status == "RUNNING")
        remaining_epochs = 0
        epoch_times = []
        for trial in trials:
            result = self._latest.get(_trial_dirname(trial), {})
            if trial.status not in ("TERMINATED", "ERROR"):
                remaining_epochs += self._planned_epochs(trial) - int(result.get(M.EPOCH, 0))
            if M.EPOCH_TIME_S in result:
                epoch_times.append(result[M.EPOCH_TIME_S])
        text = f"{done}/{len(trials)} done, {running} running"
        if epoch_times and running:
            eta = remaining_epochs * (sum(epoch_times) / len(epoch_times)) / running
            text += f", ETA {_duration(eta)}"
        return text


def _error_line(trial) -> str:
    """": <the exception's last line>" from the trial's error file (e.g. a DeviceError's
    one line), or nothing when it cannot be read."""
    try:
        lines = [line.strip() for line in Path(trial.error_file).read_text().splitlines()]
    except (OSError, TypeError):
        return ""
    lines = [line for line in lines if line]
    return f": {lines[-1][:300]}" if lines else ""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
