"""``ninsweep train``: one model of the study with the reference recipe, without Ray.

Loaded only when the command runs (``cli.main``), so it imports torch at the top; every other
command starts without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ninsweep.cli.exits import EXIT_INTERRUPTED
from ninsweep.config import TrialConfig
from ninsweep.console import Console, StepProgress, epoch_line
from ninsweep.core.checkpoint import save_checkpoint, state_to_continue
from ninsweep.core.train import Trainer
from ninsweep.errors import ConfigError
from ninsweep.experiment_dir import CHECKPOINT_FILE
from ninsweep.fmt import reason
from ninsweep.metrics import EPOCH, TEST_ACC
from ninsweep.space.loader import parse_assignment


def trial_config_from_args(args: argparse.Namespace):
    sections: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    flags = {
        "model": {"activation": args.activation, "batchnorm": args.batchnorm, "init": args.init,
                  "pool2": args.pool2},
        "data": {"source": args.data, "root": args.data_dir, "train_subset": args.train_subset,
                 "test_subset": args.test_subset},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                  "seed": args.seed, "device": args.device, "threads": args.threads,
                  "amp": args.amp, "compile": args.compile},
    }
    for section, values in flags.items():
        sections[section].update({k: v for k, v in values.items() if v is not None})
    for assignment in args.set or ():
        key, value = parse_assignment(assignment)
        section, _, field = key.partition(".")
        if section not in sections:
            raise ConfigError(f"--set {key}: unknown section {section!r} (model, data, train)")
        sections[section][field] = value
    return TrialConfig.from_dict(sections)


def _checkpoint_dir(text: str) -> Path:
    """The --checkpoint-dir, made and proven writable before any training time is spent."""
    directory = Path(text).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--checkpoint-dir {text}: is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe, probe_path = tempfile.mkstemp(dir=directory, prefix=".ninsweep-probe-")
        os.close(probe)
        os.unlink(probe_path)
    except OSError as err:
        raise ConfigError(f"--checkpoint-dir {text}: cannot write there "
                          f"({reason(err)})") from None
    return directory


def command_train(args: argparse.Namespace) -> int:
    cfg = trial_config_from_args(args)
    checkpoint_path = (_checkpoint_dir(args.checkpoint_dir) / CHECKPOINT_FILE
                       if args.checkpoint_dir else None)
    # Refused before time is spent on data and model (another recipe, a run past --epochs).
    state = state_to_continue(checkpoint_path, cfg) if checkpoint_path is not None else None
    if state is not None and int(state.get("epoch", 0)) == cfg.train.epochs:
        print(f"already finished: checkpoint {checkpoint_path} is at epoch {cfg.train.epochs} "
              f"of {cfg.train.epochs}; nothing to train")
        return 0

    trainer = Trainer(cfg, log=lambda message: print(message, flush=True))
    model = (f"{cfg.model.factory}({', '.join(f'{k}={v!r}' for k, v in cfg.model.factory_kwargs.items())})"
             if cfg.model.factory else
             f"NIN {cfg.model.activation}, batchnorm {'on' if cfg.model.batchnorm else 'off'}, "
             f"init {cfg.model.init}")
    print(f"{model}: {trainer.num_parameters:,} parameters on {trainer.device}; "
          f"data {cfg.data.source}: {trainer.train_loader.num_images} train / "
          f"{trainer.test_loader.num_images} test images", flush=True)
    if state is not None:
        trainer.load_state_dict(state)
        print(f"resumed from {checkpoint_path} after epoch {trainer.epoch}", flush=True)
        for result in trainer.history:
            print(epoch_line(result, cfg.train.epochs, width=3) + "  (from checkpoint)")

    def on_epoch_end(result: dict[str, float], trainer: Trainer) -> None:
        print(epoch_line(result, cfg.train.epochs, width=3), flush=True)
        if checkpoint_path is not None:
            save_checkpoint(trainer.state_dict(), checkpoint_path)

    steps = StepProgress(Console(), epoch_of=lambda: trainer.epoch + 1)
    try:
        history = trainer.fit(on_epoch_end, on_step=steps)
    except KeyboardInterrupt:
        steps.close()
        where = f"; run the same command to resume from {checkpoint_path}" if checkpoint_path else ""
        print(f"\ninterrupted after epoch {trainer.epoch}{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not history:
        print("nothing to train: the checkpoint has already reached --epochs")
        return 0
    best = max(history, key=lambda r: r[TEST_ACC])
    print(f"final test accuracy {100 * history[-1][TEST_ACC]:.2f}% "
          f"(best {100 * best[TEST_ACC]:.2f}% at epoch {best[EPOCH]})")
    return 0
