"""Run and resume a sweep on Ray Tune: the Tuner, its configs, and the manifest.

``run_sweep`` writes the experiment's manifest (``ninsweep.json``) before Ray starts, checks
that the cluster can ever schedule a trial (a GPU space on a GPU-less machine would otherwise
wait forever), and runs the Tuner. ``resume_sweep`` restores it with ``Tuner.restore``:
finished trials stay, unfinished and errored trials continue from their latest checkpoint,
pending ones start.

The console is ``ninsweep.console`` (our lines; Ray's go to the driver and trial logs:
``sweep.logs``), the progress callback ``sweep.progress``, TensorBoard and trackers
``sweep.trackers``; starting Ray is ``sweep.ray_cluster``'s.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import ray
from ray import tune

from ninsweep.console import Console
from ninsweep.errors import CheckpointError, NinsweepError, Terminated
from ninsweep.experiment_dir import (
    REPLICATION_FILE,
    RESULT_FILE,
    TUNE_SNAPSHOT_RE,
    TUNER_FILE,
    UNREADABLE_SUFFIX,
    extension_file,
    set_aside_tuner,
)
from ninsweep.fmt import first_line
from ninsweep.locations import is_uri, join, resolve_storage
from ninsweep.metrics import CONFIG_ERROR, EPOCH, STOPPED_EARLY
from ninsweep.space.schema import TRIAL_KEY, SweepSpec, TrialSpec, check_experiment_name, tracker_names
from ninsweep.storage import (
    check_storage_for_cluster,
    experiment_exists,
    file_names,
    is_out_of_space,
    make_dirs,
    move,
    path_exists,
    read_bytes,
    read_extensions,
    read_manifest,
    write_manifest,
    write_text,
)
from ninsweep.sweep import tune_state
from ninsweep.sweep.logs import DriverLog, with_trial_log
from ninsweep.sweep.out_of_space import WATCH, cut_short_lines, storage_full_line
from ninsweep.sweep.preflight import check_trials
from ninsweep.sweep.progress import SweepProgress
from ninsweep.sweep.ray_cluster import check_schedulable, count_nodes, start_ray
from ninsweep.sweep.replicate import ReplicationSearcher
from ninsweep.sweep.replicate import set_log as set_replication_log
from ninsweep.sweep.schedulers import make_scheduler
from ninsweep.sweep.staged import StagedSearcher
from ninsweep.sweep.trackers import TensorBoardLogger, activate, active, factors, make_trackers
from ninsweep.sweep.trainable import make_trainable


@dataclass(frozen=True)
class SweepOutcome:
    experiment_dir: str
    total: int
    finished: int
    errored: int
    wall_time_s: float
    config_errors: int = 0  # of the errored: a configuration that cannot run (not retried)
    terminated: bool = False  # stopped by SIGTERM rather than Ctrl-C
    stopped: int = 0  # stopped early by the space's scheduler (not finished, not errored)
    storage_full: Optional[str] = None  # the line saying so, when a full storage stopped it

    @property
    def interrupted(self) -> bool:
        return self.finished + self.stopped + self.errored < self.total

    @property
    def exit_code(self) -> int:
        if self.storage_full:
            return 75  # cli.exits.EXIT_STORAGE_FULL: free space, then resume
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


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """``Tuner(param_space=...)``: a grid over the trials' names, each resolved to its trial.

    Each trial's Ray config is ``{"trial_name": name, TRIAL_KEY: {"name", "params",
    "config"}}`` (so Ray's params.json holds exactly that); the trial directory is named
    after it (``tune_state.trial_dirname``). An experiment made before the name grid (a grid
    over the trial dicts) resumes from its own stored param space.
    """
    trials = {t.name: t.to_dict() for t in spec.trials}
    return {tune_state.TRIAL_NAME: tune.grid_search(list(trials)),
            TRIAL_KEY: tune.sample_from(tune_state.TrialNamed(trials))}


def tune_trainable(spec: SweepSpec, experiment: Optional[str] = None):
    """The trainable with the per-trial resources of ``spec`` attached; its trials look for
    their checkpoints under ``experiment`` (a path or URI) and write their output to their
    ``trial.log`` there."""
    # From here on the trial-name function pickles by value: the experiment state opens
    # without ninsweep (ninsweep.portable).
    tune_state.register()
    trainable = make_trainable(spec.checkpoint.every, experiment)
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
    name = check_experiment_name(name) if name is not None else spec.name
    storage = resolve_storage(storage)
    experiment = join(storage, name)
    if experiment_exists(experiment):
        raise NinsweepError(f"{experiment} already exists; resume it with `ninsweep resume "
                            f"{experiment}` or choose another --name")
    check_trials(spec)
    callbacks = _callbacks(spec, experiment, name, console, started_at)
    start_ray(address, log, code=spec.code)
    try:
        with _SigtermAsCtrlC() as sigterm:
            _check_cluster(spec, storage, autoscaling, log)
            manifest = spec.to_manifest()
            manifest.update(created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), experiment_name=name)
            write_manifest(experiment, manifest)
            if driver_log is not None:
                driver_log.move_into(experiment)
            return _fit_new(spec, storage, name, console, started_at, sigterm, callbacks)
    finally:
        ray.shutdown()


def extend_sweep(experiment: str, added: Sequence[TrialSpec], *, command: str,
                 address: Optional[str] = None, autoscaling: bool = False,
                 console: Optional[Console] = None,
                 driver_log: Optional[DriverLog] = None) -> SweepOutcome:
    """Run ``added`` as new trials of a finished experiment (``ninsweep extend``).

    Tune cannot add trials to a run it restores (ray-project/ray#42221), so the new trials
    are a Tune run of their own in the same experiment directory: their list is written
    first (``ninsweep-extend-N.json``, never replaced), the previous run's ``tuner.pkl`` is
    kept beside as ``tuner-before-extend-N.pkl``, and ``resume`` continues the newest run.
    The finished trials' directories are not touched.
    """
    started_at = time.time()
    console = console or Console()
    experiment = experiment if is_uri(experiment) else str(Path(experiment).expanduser().resolve())
    spec = SweepSpec.from_manifest(read_manifest(experiment))
    number = len(read_extensions(experiment)) + 1
    run = spec.model_copy(update={"trials": tuple(added)})
    check_trials(run, where=experiment)
    if driver_log is not None:
        driver_log.move_into(experiment)
    write_extension(experiment, number, added, command)
    tuner_file = join(experiment, TUNER_FILE)
    if path_exists(tuner_file):
        move(tuner_file, join(experiment, set_aside_tuner(number)))
    storage, _, name = experiment.rstrip("/").rpartition("/")
    callbacks = _callbacks(run, experiment, name, console, started_at)
    start_ray(address, console.line, code=spec.code)
    try:
        with _SigtermAsCtrlC() as sigterm:
            _check_cluster(run, storage, autoscaling, console.line)
            console.line(f"{experiment}: extension {number}, {len(added)} new trials")
            return _fit_new(run, storage, name, console, started_at, sigterm, callbacks)
    finally:
        ray.shutdown()


def write_extension(experiment: str, number: int, added: Sequence[TrialSpec], command: str) -> None:
    """``ninsweep-extend-N.json``, written once (an existing one is never replaced)."""
    record = {"format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
              "trials": [t.to_dict() for t in added]}
    target = join(experiment, extension_file(number))
    try:
        write_text(target, json.dumps(record, indent=2), exclusive=True)
    except FileExistsError:
        raise NinsweepError(f"{target} already exists: another extend is running") from None
    except OSError as err:
        raise NinsweepError(f"{target}: cannot write ({first_line(err, 160)})") from None


def _check_cluster(spec: SweepSpec, storage: str, autoscaling: bool, log) -> None:
    check_schedulable(spec, autoscaling, log)
    if count_nodes() > 1:
        check_storage_for_cluster(storage, multi_node=True)


def _fit_new(spec: SweepSpec, storage: str, name: str, console: Console,
             started_at: float, sigterm: _SigtermAsCtrlC, callbacks: list) -> SweepOutcome:
    experiment = join(storage, name)
    console.line(f"experiment {experiment}: {len(spec.trials)} trials, "
                 f"{spec.resources.cpus:g} CPU + {spec.resources.gpus:g} GPU each")
    searcher = search_alg(spec, experiment)
    staged = searcher is not None
    tuner = tune.Tuner(
        tune_trainable(spec, experiment),
        param_space={} if staged else param_space(spec),
        # Every trial asks for the same resources, so a finished trial's worker process (torch
        # imported, data cache mapped) can take the next one: the smoke sweep went from 55 s
        # to 27 s on 2 cores.
        tune_config=tune.TuneConfig(trial_name_creator=tune_state.trial_dirname,
                                    trial_dirname_creator=tune_state.trial_dirname,
                                    reuse_actors=True, scheduler=make_scheduler(spec),
                                    search_alg=searcher,
                                    num_samples=len(spec.trials) if staged else 1,
                                    max_concurrent_trials=(spec.search.max_concurrent
                                                           if spec.search else None)),
        run_config=_run_config(spec, name, storage, callbacks),
    )
    return _fit(tuner, experiment, spec, started_at, sigterm)


def search_alg(spec: SweepSpec, experiment: str):
    """The Searcher that hands out a space's trials as results arrive (its tuned cells' final
    trials, or adaptive replication's seeds); None: Tune runs the listed trials as a grid."""
    if spec.tune is not None:
        return StagedSearcher(spec)
    if spec.replication is not None:
        return ReplicationSearcher(spec, experiment)
    return None


def _callbacks(spec: SweepSpec, experiment: str, name: str, console: Console,
               started_at: float, more_trackers: Sequence[str] = ()) -> list:
    """Progress, TensorBoard and the trackers, built (and checked) before Ray starts; also
    what the pickled callbacks resolve to when this run restores the experiment."""
    WATCH.reset()
    progress = SweepProgress(console, {t.name: t.config.train.epochs for t in spec.trials},
                             started_at=started_at,
                             scheduler=spec.scheduler.label if spec.scheduler else None)
    tensorboard = TensorBoardLogger(factors(t.params for t in spec.trials))
    trackers = make_trackers(tracker_names(spec.trackers, more_trackers), experiment, name)
    activate(progress=progress, tensorboard=tensorboard, trackers=trackers)
    set_replication_log(console.line)
    return [progress, tensorboard, trackers]


def _fit(tuner, experiment: str, spec: SweepSpec, started_at: float,
         sigterm: _SigtermAsCtrlC) -> SweepOutcome:
    progress = active("progress")
    running = 1
    try:
        grid = tuner.fit()
    except Exception as err:
        if not is_out_of_space(err):
            raise
        # A write on the driver's side (Tune's own) found no space and ended fit: the
        # trials' checkpoints on storage are what a resume continues from.
        WATCH.report(experiment, first_line(err, 200))
        grid = None
    finally:
        if isinstance(progress, SweepProgress):
            progress.close()  # the bar, if the sweep ended by an exception
            running = progress.eta.capacity
        activate()
    if WATCH.shortage is not None:
        line = storage_full_line(experiment, spec, running)
        return _outcome(experiment, spec, grid or (), started_at, sigterm.received,
                        storage_full=line)
    return _outcome(experiment, spec, grid, started_at, sigterm.received)


def _run_config(spec: SweepSpec, name: str, storage: str, callbacks: list):
    return tune.RunConfig(
        name=name,
        storage_path=storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.keep),
        failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
        # On remote storage the trials' logs are written in their working directories;
        # uploading artifacts carries them into the trial directories.
        sync_config=tune.SyncConfig(sync_artifacts=is_uri(storage)),
        callbacks=callbacks,
        verbose=0,  # our own progress lines replace Tune's large tables
    )


def resume_sweep(experiment: str, *, address: Optional[str] = None, autoscaling: bool = False,
                 console: Optional[Console] = None, driver_log: Optional[DriverLog] = None,
                 trackers: Sequence[str] = ()) -> SweepOutcome:
    started_at = time.time()
    console = console or Console()
    log = console.line
    experiment = experiment if is_uri(experiment) else str(Path(experiment).expanduser().resolve())
    spec = tune_run_spec(experiment, SweepSpec.from_manifest(read_manifest(experiment)))
    check_trials(spec, where=experiment)
    check_tune_state(experiment)
    has_snapshot = set_aside_unreadable_snapshots(experiment, log)
    repair_histories(experiment, spec, log)
    if driver_log is not None:
        driver_log.move_into(experiment)
    storage, _, name = experiment.rstrip("/").rpartition("/")
    callbacks = _callbacks(spec, experiment, name, console, started_at, trackers)
    start_ray(address, log, code=spec.code)
    try:
        with _SigtermAsCtrlC() as sigterm:
            _check_cluster(spec, storage, autoscaling, log)
            if not tune.Tuner.can_restore(experiment) or not has_snapshot:
                # The driver died before Tune's first snapshot of its trials was whole on
                # storage: start the sweep the manifest describes; every trial continues
                # from its own newest state that loads, so no finished epoch is trained again.
                log(f"{experiment}: no readable Tune snapshot of the trials; starting the "
                    "sweep from its manifest (each trial continues from its newest state)")
                set_aside_histories(experiment, spec, log)
                return _fit_new(spec, storage, name, console, started_at, sigterm, callbacks)
            tuner = tune.Tuner.restore(experiment, trainable=tune_trainable(spec, experiment),
                                       resume_unfinished=True, resume_errored=True)
            _prepare_restore(experiment, spec, tuner.get_results(), log)
            log(f"resuming {experiment}")
            return _fit(tuner, experiment, spec, started_at, sigterm)
    finally:
        ray.shutdown()


def tune_run_spec(experiment: str, spec: SweepSpec) -> SweepSpec:
    """The trials of the experiment's latest Tune run: the manifest's, or after ``ninsweep
    extend`` the newest extension's (Tune cannot add trials to a run it restores)."""
    extensions = read_extensions(experiment)
    if not extensions:
        return spec
    return spec.model_copy(update={"trials": spec.with_extensions(extensions[-1:]).trials[
        len(spec.trials):]})


def check_tune_state(experiment: str) -> None:
    """Refuse, before Ray starts, Tune state that ``Tuner.restore`` could not load: a
    ``tuner.pkl`` that does not unpickle, or holds something other than a saved Tuner."""
    target = join(experiment, TUNER_FILE)
    data = read_bytes(target)
    if data is None:
        return  # no Tune state yet: resume starts the sweep from its manifest
    try:
        state = ray.cloudpickle.loads(data)
    except Exception as err:  # whatever unpickling damaged bytes raises
        problem = f"does not unpickle ({type(err).__name__}: {first_line(err, 120)})"
    else:
        # A saved Tuner is its __dict__ (TunerInternal.__getstate__).
        if isinstance(state, dict) and {"_tune_config", "_run_config"} <= state.keys():
            return
        problem = f"holds {type(state).__name__}, not a saved Tune Tuner"
    raise CheckpointError(f"{target}: {problem}; resume trusts this file for the sweep's Tune "
                          "settings and trials: put back an intact copy, or start the space "
                          "again with `ninsweep run --name` (the trials' results here stay "
                          "readable by status, export and report)")


def set_aside_unreadable_snapshots(experiment: str, log) -> bool:
    """Rename Tune's newest trial snapshots aside while they do not parse; whether one that
    does remains.

    Tune writes ``experiment_state-*.json`` in place and copies it to storage in a
    background thread, so a driver killed meanwhile leaves it cut short. ``Tuner.restore``
    reads only the newest and, when that fails, loses every trial silently (``get_results``
    then raises, and ``fit`` refuses to resume). Renamed, not deleted: nothing on disk is lost.
    """
    snapshots = [n for n in file_names(experiment) if TUNE_SNAPSHOT_RE.fullmatch(n)]
    for snapshot in reversed(snapshots):  # Tune reads the greatest name
        location = join(experiment, snapshot)
        try:
            state = json.loads(read_bytes(location) or b"")
        except ValueError:
            state = None
        if isinstance(state, dict) and "trial_data" in state:
            return True
        move(location, location + UNREADABLE_SUFFIX)
        log(f"{location}: Tune's snapshot does not parse (cut short when the driver died?); "
            f"set aside as {snapshot}{UNREADABLE_SUFFIX}")
    return False


def repair_histories(experiment: str, spec: SweepSpec, log) -> None:
    """Cut off the unfinished last line a full disk left in a trial's ``result.json`` or
    ``progress.csv`` (``out_of_space.cut_short_lines``), before Tune appends to them."""
    for trial in spec.trials:
        for name in cut_short_lines(join(experiment, trial.name)):
            log(f"{trial.name}: {name} ended in a line cut short (a copy the disk could not "
                "finish); that line is removed and its epoch replayed from the checkpoint")


def set_aside_histories(experiment: str, spec: SweepSpec, log) -> None:
    """Rename each trial's ``result.json`` aside before Tune starts the trials afresh.

    A new Tune run replaces the trial's result.json on storage with the one it logs, so the
    epochs logged before would be lost. Set aside, it is kept; the trial, finding no
    result.json, re-reports every epoch its checkpoint holds (marked replayed, not trained).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for trial in spec.trials:
        history = join(experiment, trial.name, RESULT_FILE)
        if path_exists(history):
            kept = f"{history}.before-{stamp}"
            move(history, kept)
            log(f"{trial.name}: its history so far is kept as {_basename(kept)}; the trial "
                "reports its checkpoint's epochs again")


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
    planned = {trial.name: trial.config.train.epochs for trial in spec.trials}
    lost = []
    for result in results:
        try:
            name = _basename(result.path)  # the trial directory is named after the trial
        except RuntimeError:  # Ray: a trial that never started has no directory name yet
            continue
        trial_dir = join(experiment, name)
        metrics = result.metrics or {}
        if metrics.get(CONFIG_ERROR):
            continue  # ended on purpose; Tune leaves it alone
        if metrics.get(EPOCH, 0) >= planned.get(name, 0):
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


def skipped_trials(experiment: str) -> list[str]:
    """The trials adaptive replication finished without (``replication.json``)."""
    data = read_bytes(join(experiment, REPLICATION_FILE))
    try:
        return list(json.loads(data).get("skipped", [])) if data else []
    except (ValueError, AttributeError):
        return []


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _outcome(experiment: str, spec: SweepSpec, grid, started_at: float,
             terminated: bool = False, storage_full: Optional[str] = None) -> SweepOutcome:
    """Count trials by what they reached, not by Tune's status: after Ctrl-C Tune marks
    stopped trials TERMINATED although they never trained all their epochs, and a trial with
    a configuration error ends TERMINATED on purpose (so that Tune does not retry it)."""
    planned = {trial.name: trial.config.train.epochs for trial in spec.trials}
    finished = errored = config_errors = stopped = 0
    for result in grid:
        if not result.config:
            continue  # never started, and nothing on storage yet (Tune read no metrics)
        name = result.config[TRIAL_KEY]["name"]
        metrics = result.metrics or {}
        if metrics.get(CONFIG_ERROR):
            errored += 1
            config_errors += 1
        elif metrics.get(EPOCH, 0) >= planned[name]:
            finished += 1
        elif metrics.get(STOPPED_EARLY):
            stopped += 1
        elif result.error is not None:
            errored += 1
    skipped = len(skipped_trials(experiment)) if spec.replication is not None else 0
    return SweepOutcome(experiment_dir=experiment, total=len(spec.trials) - skipped,
                        finished=finished,
                        errored=errored, wall_time_s=time.time() - started_at,
                        config_errors=config_errors, terminated=terminated, stopped=stopped,
                        storage_full=storage_full)
