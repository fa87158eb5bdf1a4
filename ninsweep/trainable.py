"""The Ray glue: one Tune trial = one ``Trainer`` run, checkpointed through Tune.

No training logic lives here. The trial's parameters arrive as ``config["trial"]`` (name,
params, the full TrialConfig as a dict); the state of the ``Trainer`` goes out as a Tune
checkpoint and comes back in after a restart, a resume, or the loss of a node.

Inside Tune use ``ray.tune.report / get_checkpoint / Checkpoint``: ``ray.train.*`` raises
there since Ray 2.51.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from .config import TrialConfig
from .devices import hide_gpus, trial_device
from .train import CHECKPOINT_FILE, Trainer, load_checkpoint, save_checkpoint

TRIAL_KEY = "trial"  # the one key of Tune's param space: {"trial": {name, params, config}}


def make_trainable(checkpoint_every: int):
    """A Tune function trainable that checkpoints every ``checkpoint_every`` epochs."""

    def train_trial(config: dict[str, Any]) -> None:
        trial = config[TRIAL_KEY]
        cfg = TrialConfig.from_dict(trial["config"], where=f"trial {trial['name']}")
        cfg = placed(cfg, trial["name"])
        trainer = Trainer(cfg, log=lambda message: print(f"{trial['name']}: {message}"))

        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                trainer.load_state_dict(load_checkpoint(Path(directory) / CHECKPOINT_FILE))
            print(f"{trial['name']}: resumed after epoch {trainer.epoch}")

        def report(metrics: dict[str, float], trainer: Trainer) -> None:
            if trainer.epoch % checkpoint_every and not trainer.finished:
                tune.report(metrics)
                return
            with tempfile.TemporaryDirectory(prefix="ninsweep-ckpt-") as directory:
                save_checkpoint(trainer.state_dict(), Path(directory) / CHECKPOINT_FILE)
                # Tune copies the directory into the trial's storage before returning.
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

        trainer.fit(on_epoch_end=report)

    train_trial.__name__ = "ninsweep_trial"
    return train_trial


def placed(cfg: TrialConfig, name: str) -> TrialConfig:
    """``cfg`` with the device this trial may use, from the GPUs Ray granted its worker.

    A zero-GPU trial hides the node's GPUs first (Ray 2.60 leaves them visible) and trains
    on CPU; a trial granted a GPU that cannot start CUDA fails here, at once, with one line
    (Tune retries it up to failure.max_retries times: on a cluster a retry may land on a
    healthy node).
    """
    import ray

    granted = ray.get_gpu_ids()
    if not granted:
        hide_gpus(log=lambda message: print(f"{name}: {message}"))
    device = trial_device(cfg.train.device, len(granted), name)
    print(f"{name}: Ray granted GPU ids {list(granted)}; training on {device}")
    return cfg if device == cfg.train.device else cfg.replace(train={"device": device})
