"""Run and resume a sweep on Ray Tune: the Tuner, its configs, and the manifest.

``run_sweep`` writes the experiment's manifest (``ninsweep.json``) before Ray starts, checks
that the cluster can ever schedule a trial (a GPU space on a GPU-less machine would otherwise
wait forever), and runs the Tuner. ``resume_sweep`` restores it with ``Tuner.restore``:
finished trials stay, unfinished and errored trials continue from their latest checkpoint,
pending ones start.

The console is ``ninsweep.console`` (our lines; Ray's go to the driver and trial logs) and
the progress callback is ``ninsweep.progress``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import portable
from .console import Console, DriverLog, with_trial_log
from .errors import NinsweepError
from .progress import LegacySweepProgress, SweepProgress as LiveProgress
from .space import SweepSpec
from .storage import (experiment_exists, is_uri, join, read_manifest, resolve_storage,
                      write_manifest)


@dataclass(frozen=True)
class SweepOutcome:
    experiment_dir: str
    total: int
    finished: int
    errored: int
    wall_time_s: float

    @property
    def interrupted(self) -> bool:
        return self.finished + self.errored < self.total

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.errored else 0


# -- Ray ------------------------------------------------------------------------------------

def start_ray(address: Optional[str], log: Callable[[str], None]) -> None:
    """Connect to ``address``, or start an embedded instance that listens on loopback only."""
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
            options["runtime_env"] = {"py_modules": [package], "excludes": ["__pycache__"]}
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise NinsweepError(f"cannot connect to Ray at {address}: {str(err).splitlines()[0]}") from None
        log(f"connected to Ray at {address}")
    else:
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
        log("started a local Ray instance on 127.0.0.1")


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
    """The trainable with the per-trial resources of ``spec`` attached; with ``experiment``,
    each trial's output goes to its ``trial.log`` there."""
    from ray import tune

    from .trainable import make_trainable

    # From here on the trial-name function pickles by value: the experiment state opens
    # without ninsweep (ninsweep.portable).
    portable.register()
    trainable = make_trainable(spec.checkpoint_every)
    if experiment is not None:
        trainable = with_trial_log(trainable, experiment)
    return tune.with_resources(trainable, spec.resources.to_ray())


def run_sweep(spec: SweepSpec, *, storage: Optional[str] = None, name: Optional[str] = None,
              address: Optional[str] = None, autoscaling: bool = False,
              console: Optional[Console] = None, started_at: Optional[float] = None,
              driver_log: Optional[DriverLog] = None) -> SweepOutcome:
    started_at = started_at or time.time()
    console = console or Console()
    log = console.line
    storage = resolve_storage(storage)
    name = name or spec.name
    experiment = join(storage, name)
    if experiment_exists(experiment):
        raise NinsweepError(f"{experiment} already exists; resume it with `ninsweep resume "
                            f"{experiment}` or choose another --name")
    callbacks = _callbacks(spec, experiment, name, console, started_at)
    start_ray(address, log)
    import ray

    try:
        _check_cluster(spec, storage, autoscaling, log)
        manifest = spec.to_manifest()
        manifest.update(created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), experiment_name=name)
        write_manifest(experiment, manifest)
        if driver_log is not None:
            driver_log.move_into(experiment)
        return _fit_new(spec, storage, name, console, started_at, callbacks)
    finally:
        ray.shutdown()


def _check_cluster(spec: SweepSpec, storage: str, autoscaling: bool, log) -> None:
    check_schedulable(spec, autoscaling, log)
    if count_nodes() > 1:
        from .jobs import check_storage_for_cluster

        check_storage_for_cluster(storage, multi_node=True)


def _fit_new(spec: SweepSpec, storage: str, name: str, console: Console,
             started_at: float, callbacks: list) -> SweepOutcome:
    from ray import tune

    experiment = join(storage, name)
    console.line(f"experiment {experiment}: {len(spec.trials)} trials, "
                 f"{spec.resources.cpus:g} CPU + {spec.resources.gpus:g} GPU each")
    tuner = tune.Tuner(
        tune_trainable(spec, experiment),
        param_space=spec.to_param_space(),
        # Every trial asks for the same resources, so a finished trial's worker process (torch
        # imported, data cache mapped) can take the next one: the smoke sweep went from 55 s
        # to 27 s on 2 cores.
        tune_config=tune.TuneConfig(trial_name_creator=portable.trial_dirname,
                                    trial_dirname_creator=portable.trial_dirname,
                                    reuse_actors=True),
        run_config=_run_config(spec, name, storage, callbacks),
    )
    return _fit(tuner, experiment, spec, started_at)


def _callbacks(spec: SweepSpec, experiment: str, name: str, console: Console,
               started_at: float, more_trackers: Sequence[str] = ()) -> list:
    """Progress, TensorBoard and the trackers, built (and checked) before Ray starts; also
    what the pickled callbacks resolve to when this run restores the experiment."""
    from .tracking import TensorBoardLogger, activate, factors, make_trackers, tracker_names

    progress = LiveProgress(console, {t.name: t.config.train.epochs for t in spec.trials},
                            started_at=started_at)
    tensorboard = TensorBoardLogger(factors(t.params for t in spec.trials))
    trackers = make_trackers(tracker_names(spec.trackers, more_trackers), experiment, name)
    activate(progress=progress, tensorboard=tensorboard, trackers=trackers)
    return [progress, tensorboard, trackers]


def _fit(tuner, experiment: str, spec: SweepSpec, started_at: float) -> SweepOutcome:
    from .tracking import active, activate

    try:
        grid = tuner.fit()
    finally:
        progress = active("progress")
        if isinstance(progress, LiveProgress):
            progress.close()  # the bar, if the sweep ended by an exception
        activate()
    return _outcome(experiment, spec, grid, started_at)


def _run_config(spec: SweepSpec, name: str, storage: str, callbacks: list):
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint_keep),
        failure_config=tune.FailureConfig(max_failures=spec.max_retries),
        # On remote storage the trials' logs are written in their working directories;
        # uploading artifacts carries them into the trial directories.
        sync_config=tune.SyncConfig(sync_artifacts=is_uri(storage)),
        callbacks=callbacks,
        verbose=0,  # our own progress lines replace Tune's large tables
    )


def resume_sweep(experiment: str, *, address: Optional[str] = None, autoscaling: bool = False,
                 console: Optional[Console] = None, driver_log: Optional[DriverLog] = None,
                 trackers: Sequence[str] = ()) -> SweepOutcome:
    from ray import tune

    started_at = time.time()
    console = console or Console()
    log = console.line
    experiment = experiment if is_uri(experiment) else str(Path(experiment).expanduser().resolve())
    spec = SweepSpec.from_manifest(read_manifest(experiment))
    if driver_log is not None:
        driver_log.move_into(experiment)
    storage, _, name = experiment.rstrip("/").rpartition("/")
    callbacks = _callbacks(spec, experiment, name, console, started_at, trackers)
    start_ray(address, log)
    import ray

    try:
        _check_cluster(spec, storage, autoscaling, log)
        if not tune.Tuner.can_restore(experiment):
            # The driver died between writing the manifest and Tune's first snapshot: nothing
            # ran yet, so start the sweep the manifest describes.
            log(f"{experiment}: no Tune state yet; starting the sweep from its manifest")
            return _fit_new(spec, storage, name, console, started_at, callbacks)
        tuner = tune.Tuner.restore(experiment, trainable=tune_trainable(spec, experiment),
                                   resume_unfinished=True, resume_errored=True)
        log(f"resuming {experiment}")
        return _fit(tuner, experiment, spec, started_at)
    finally:
        ray.shutdown()


def _outcome(experiment: str, spec: SweepSpec, grid, started_at: float) -> SweepOutcome:
    """Count trials by what they reached, not by Tune's status: after Ctrl-C Tune marks
    stopped trials TERMINATED although they never trained all their epochs."""
    from . import metrics as M

    planned = {trial.name: trial.config.train.epochs for trial in spec.trials}
    finished = errored = 0
    for result in grid:
        name = result.config["trial"]["name"]
        if result.metrics and result.metrics.get(M.EPOCH, 0) >= planned[name]:
            finished += 1
        elif result.error is not None:
            errored += 1
    return SweepOutcome(experiment_dir=experiment, total=len(spec.trials), finished=finished,
                        errored=errored, wall_time_s=time.time() - started_at)


# Names that experiments written by earlier versions pickled by reference (their tuner.pkl and
# experiment state): kept so that `ninsweep resume` still opens them.
_trial_dirname = portable.trial_dirname
SweepProgress = LegacySweepProgress
