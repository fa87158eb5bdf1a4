"""The Ray glue: one Tune trial = one ``Trainer`` run, checkpointed through Tune.

No training logic lives here. The trial's parameters arrive as ``config["trial"]`` (name,
params, the full TrialConfig as a dict); the state of the ``Trainer`` goes out as a Tune
checkpoint and comes back in after a restart, a resume, or the loss of a node.

The state comes back from the newest checkpoint on storage that loads, not from the one
Tune's experiment snapshot registered (``sweep.checkpoints.restore_newest`` says why); Tune's own is
the fallback when storage cannot be listed.

A ``NinsweepError`` while setting up (bad input: a batch larger than the data, a corrupt
image) is not worth a retry: the trial records it in ``error.txt``, reports it once under
``metrics.CONFIG_ERROR`` and ends, instead of raising into Tune's retries.

Inside Tune use ``ray.tune.report / get_checkpoint / Checkpoint``: ``ray.train.*`` raises
there since Ray 2.51.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any, Callable, Optional

import ray
from ray import tune

from ninsweep.config import TrialConfig
from ninsweep.core.checkpoint import save_checkpoint
from ninsweep.core.devices import hide_gpus, trial_device
from ninsweep.core.train import Trainer
from ninsweep.errors import DeviceError, NinsweepError, StorageFull, TrainingDiverged
from ninsweep.experiment_dir import (
    ERROR_FILE,
    RESULT_FILE,
    state_file_name,
)
from ninsweep.fmt import one_line, size_text
from ninsweep.locations import join
from ninsweep.metrics import CONFIG_ERROR, EPOCH, REPLAYED, RESTORED
from ninsweep.space.schema import TRIAL_KEY  # {TRIAL_KEY: {name, params, config}}
from ninsweep.storage import filesystem, is_out_of_space
from ninsweep.sweep.checkpoints import (
    remove_partial_state,
    remove_stale_staging,
    restore_newest,
    staging_directory,
)


def make_trainable(checkpoint_every: int, experiment: Optional[str] = None):
    """A Tune function trainable that checkpoints every ``checkpoint_every`` epochs.

    ``experiment`` is the experiment's location on storage (a path or URI): each trial
    looks in its own directory there for the checkpoints to continue from.
    """

    def train_trial(config: dict[str, Any]) -> None:
        try:
            run_trial(config)
        except StorageFull:
            raise
        except Exception as err:
            if not is_out_of_space(err):
                raise
            where = getattr(err, "filename", None) or trial_dir_of(config)
            raise StorageFull(errno.ENOSPC, f"writing {where} found no space") from None

    def trial_dir_of(config: dict[str, Any]) -> Optional[str]:
        return join(experiment, config[TRIAL_KEY]["name"]) if experiment else None

    def run_trial(config: dict[str, Any]) -> None:
        trial = config[TRIAL_KEY]
        name = trial["name"]
        trial_dir = join(experiment, name) if experiment else None
        remove_stale_staging()

        def log(message: str) -> None:
            print(f"{name}: {message}")

        if trial.get("no_choice"):  # a tuned cell whose every tuning trial failed
            _record_config_error(trial_dir, name, NinsweepError(trial["no_choice"]))
            return
        try:
            cfg = device_for_trial(TrialConfig.from_dict(trial["config"], where=f"trial {name}"),
                                   name)
            trainer = Trainer(cfg, log=log)
        except DeviceError:
            raise  # not the space's fault: a retry may land on a node whose CUDA works
        except NinsweepError as err:
            if is_out_of_space(err):  # the data cache found its disk full: not the space's
                raise StorageFull(errno.ENOSPC, one_line(err)) from None
            _record_config_error(trial_dir, name, err)
            return

        notes: list[str] = []  # the fallback line, sent with the first report
        with staging_directory() as staging:
            trainer = restore_newest(trainer, trial_dir, staging, name,
                                     rebuild=lambda: Trainer(cfg, log=log),
                                     registered=tune.get_checkpoint(), notes=notes)

        def send(metrics: dict[str, Any], **checkpoint: Any) -> None:
            if notes:
                metrics = {**metrics, RESTORED: notes.pop()}
            tune.report(metrics, **checkpoint)

        logged = _report_unlogged_epochs(trainer, trial_dir, send)

        def report(metrics: dict[str, float], trainer: Trainer) -> None:
            if logged and trainer.epoch <= logged:
                # Trained again after a fall-back past a damaged checkpoint: its record is in
                # result.json already, and the history holds each epoch once.
                return
            if trainer.epoch % checkpoint_every and not trainer.finished:
                send(metrics)
                return
            # Staged in a private temp directory that a later trial removes if this process
            # is killed; Tune copies it into the trial's storage before report() returns.
            with staging_directory() as directory:
                state = directory / state_file_name(trainer.epoch)
                save_checkpoint(trainer.state_dict(), state)
                try:
                    send(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
                except Exception as err:
                    if trial_dir is None or not is_out_of_space(err):
                        raise
                    raise _storage_full(trial_dir, trainer.epoch, state) from None

        try:
            trainer.fit(on_epoch_end=report)
        except TrainingDiverged as err:
            # The same config and seed diverge again from the same checkpoint: a result of
            # this configuration (a learning rate too large), ended like a config error
            # without retries; its epochs so far stay in result.json.
            _record_config_error(trial_dir, name, err)

    train_trial.__name__ = "ninsweep_trial"
    return train_trial


def _storage_full(trial_dir: str, epoch: int, staged: Path) -> StorageFull:
    """The upload of ``epoch``'s checkpoint found the storage full: what it left cut short is
    deleted (a resume must not meet it), and the error names the storage and the size."""
    size = staged.stat().st_size
    removed = remove_partial_state(trial_dir, epoch, size)
    print(f"storage full: the checkpoint of epoch {epoch} ({size_text(size)}) did not fit in "
          f"{trial_dir}; removed what was cut short: {', '.join(removed) or 'nothing'}")
    return StorageFull(errno.ENOSPC, f"the {size_text(size)} checkpoint of epoch {epoch} did "
                       f"not fit in {trial_dir}")


def device_for_trial(cfg: TrialConfig, name: str) -> TrialConfig:
    """``cfg`` with the device this trial may use, from the GPUs Ray granted its worker.

    A zero-GPU trial hides the node's GPUs first (Ray 2.60 leaves them visible) and trains
    on CPU; a trial granted a GPU that cannot start CUDA fails here, at once, with one line
    (Tune retries it up to failure.max_retries times: on a cluster a retry may land on a
    healthy node).
    """
    granted = ray.get_gpu_ids()
    if not granted:
        hide_gpus(log=lambda message: print(f"{name}: {message}"))
    device = trial_device(cfg.train.device, len(granted), name)
    print(f"{name}: Ray granted GPU ids {list(granted)}; training on {device}")
    return cfg if device == cfg.train.device else cfg.replace(train={"device": device})


def _logged_epoch(trial_dir: Optional[str]) -> Optional[int]:
    """The last epoch in the trial's result.json on storage (0: none); None if unknown."""
    if trial_dir is None:
        return None
    fs, path = filesystem(join(trial_dir, RESULT_FILE))
    try:
        with fs.open_input_stream(path) as stream:
            text = stream.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    except OSError:
        return None
    epochs = [0]
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(record, dict) and isinstance(record.get(EPOCH), int):
            epochs.append(record[EPOCH])
    return max(epochs)


def _report_unlogged_epochs(trainer: Trainer, trial_dir: Optional[str],
                            send: Callable[..., None]) -> Optional[int]:
    """Report the restored epochs that never reached result.json, without training them;
    return the last epoch result.json holds (None: unknown).

    The trial uploads a checkpoint before the driver logs that epoch's result: a driver
    killed in between leaves a checkpoint one epoch ahead of result.json. A trial restored
    at its last epoch reports that epoch again, so that Tune records it as finished.
    """
    logged = _logged_epoch(trial_dir)
    if not trainer.history:
        return logged
    missing = [] if logged is None else [r for r in trainer.history if r[EPOCH] > logged]
    if not missing and trainer.finished:
        missing = [trainer.history[-1]]
    for record in missing:
        send({**record, REPLAYED: 1})
    return logged


def _record_config_error(trial_dir: Optional[str], name: str, err: NinsweepError) -> None:
    """End the trial on a user error: one line in error.txt and one report, no retries."""
    message = one_line(err)
    if trial_dir is not None:
        try:
            fs, path = filesystem(trial_dir)
            fs.create_dir(path, recursive=True)
            with fs.open_output_stream(join(path, ERROR_FILE)) as stream:
                stream.write(f"{type(err).__name__}: {message}\n".encode())
        except OSError:
            pass  # the report below still carries it
    tune.report({CONFIG_ERROR: message})
