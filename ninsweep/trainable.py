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
from .train import CHECKPOINT_FILE, Trainer, load_checkpoint, save_checkpoint

TRIAL_KEY = "trial"  # the one key of Tune's param space: {"trial": {name, params, config}}


def make_trainable(checkpoint_every: int):
    """A Tune function trainable that checkpoints every ``checkpoint_every`` epochs."""

    def train_trial(config: dict[str, Any]) -> None:
        trial = config[TRIAL_KEY]
        cfg = TrialConfig.from_dict(trial["config"], where=f"trial {trial['name']}")
        trainer = Trainer(cfg, log=print)

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
