"""A run's checkpoint: its format, whether it fits a run, and when a run may continue it.

A checkpoint is a ``Trainer.state_dict()`` (model, optimizer, every RNG, epoch, history and
the whole ``TrialConfig``) saved with ``torch.save`` and loaded with ``weights_only=True`` (no
code from the file). ``check_architecture`` refuses a state of another model,
``check_recipe`` one made with another recipe (every setting except the runtime ones,
``RUNTIME_KEYS``), and ``state_to_continue`` is the policy of ``ninsweep train
--checkpoint-dir``: continue a matching checkpoint, refuse one that trained past the run.
Where checkpoints live on a sweep's storage is ``sweep.checkpoints``'s. No Ray.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

import torch

from ninsweep.atomic import write_atomic
from ninsweep.config import ModelConfig, TrialConfig, from_dict, to_dict
from ninsweep.errors import CheckpointError, ConfigError
from ninsweep.fmt import first_line

CHECKPOINT_FORMAT = 1


def check_architecture(state: dict[str, Any], model_cfg: ModelConfig) -> None:
    """Refuse a checkpoint whose model settings differ from ``model_cfg``."""
    saved = state.get("config", {}).get("model")
    if not isinstance(saved, dict):
        raise CheckpointError("checkpoint has no model configuration; not a ninsweep checkpoint")
    wanted = to_dict(model_cfg)
    saved = _as_current(ModelConfig, saved)
    differences = [f"{key}: checkpoint {saved.get(key)!r}, requested {value!r}"
                   for key, value in wanted.items() if saved.get(key) != value]
    if differences:
        raise CheckpointError("checkpoint is of a different architecture (" +
                              "; ".join(differences) + ")")


# Settings a run may change when it continues a checkpoint (train --checkpoint-dir): how
# long, where and how fast it runs, and where the data lives. Every other key is the recipe
# (model, data source and subsets, optimiser, schedule, seed), and must match the checkpoint.
RUNTIME_KEYS = frozenset({
    "train.epochs", "train.device", "train.threads", "train.amp", "train.compile",
    "train.channels_last", "train.eval_batch_size", "data.root", "data.cache_dir",
})


def recipe_differences(state: dict[str, Any], cfg: TrialConfig) -> list[tuple[str, Any, Any]]:
    """``(section.key, checkpoint's value, cfg's value)`` for every recipe setting that differs."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError("checkpoint has no configuration; not a ninsweep checkpoint")
    differences = []
    for section, values in cfg.to_dict().items():
        stored = saved.get(section) if isinstance(saved.get(section), dict) else {}
        stored = _as_current(type(getattr(cfg, section)), stored)
        for key, value in values.items():
            name = f"{section}.{key}"
            if name not in RUNTIME_KEYS and stored.get(key, "(unset)") != value:
                differences.append((name, stored.get(key, "(unset)"), value))
    return differences


def check_recipe(state: dict[str, Any], cfg: TrialConfig, where: str = "checkpoint") -> None:
    """Refuse to continue a checkpoint made with another recipe, naming the keys."""
    differences = recipe_differences(state, cfg)
    if differences:
        shown = ", ".join(f"{name} (checkpoint {old!r}, requested {new!r})"
                          for name, old, new in differences[:6])
        more = f" and {len(differences) - 6} more" if len(differences) > 6 else ""
        raise CheckpointError(f"{where} was made with a different recipe: {shown}{more}; "
                              "use the checkpoint's settings or another --checkpoint-dir")


def _as_current(cls: type, saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config section as this ninsweep writes it: fields added since hold their
    defaults (what the older ninsweep built), ``batchnorm: true`` reads as ``norm: batch``.
    A section this version cannot read is compared as it is."""
    try:
        return to_dict(from_dict(cls, saved))
    except ConfigError:
        return saved


def save_checkpoint(state: dict[str, Any], path: os.PathLike | str) -> Path:
    """Write ``state`` atomically: a reader sees the old file or the new one, never half.

    A failed write (disk full, read-only, quota) raises ``CheckpointError`` and leaves the
    previous checkpoint as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda stream: torch.save(state, stream))
    except (OSError, RuntimeError) as err:  # torch reports a failed write as RuntimeError
        raise CheckpointError(f"{path}: cannot write the checkpoint ({first_line(err, 300)}); "
                              "the previous checkpoint is unchanged") from None
    return path


def load_checkpoint(path: os.PathLike | str) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint "
                              f"({_load_problem(err)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ninsweep checkpoint (format "
                              f"{state.get('format') if isinstance(state, dict) else '?'})")
    return state


def _load_problem(err: BaseException) -> str:
    """torch.load's error in ninsweep's words: its weights-only refusal advises loading the
    file with ``weights_only=False`` (running whatever code it holds), which ninsweep never
    does, so only the finding is kept."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    if not text.startswith("Weights only load failed"):
        return first_line(err, 300) if text.strip() else f"{type(err).__name__}: empty or cut short"
    found = " ".join(text.partition("WeightsUnpickler error:")[2].split())
    global_ = re.match(r"Unsupported global: GLOBAL (\S+)", found)
    if global_:
        return (f"it holds an object of type {global_.group(1)}; a checkpoint holds tensors and "
                "plain values only, and ninsweep runs no code from one")
    detail = found.partition(" Check the documentation")[0].partition(". ")[0].rstrip(".")
    return f"not a PyTorch checkpoint: its bytes do not unpickle ({detail or 'no detail'})"


def state_to_continue(path: Path, cfg: TrialConfig) -> Optional[dict[str, Any]]:
    """The checkpoint at ``path`` if a run of ``cfg`` may continue it; None when there is none.

    Refused (``CheckpointError``, one line) before any time is spent on data and model: a
    checkpoint of another architecture or recipe, and one already past ``train.epochs``. A
    checkpoint at exactly ``train.epochs`` is returned: the run has nothing left to train.
    """
    if not path.exists():
        return None
    state = load_checkpoint(path)
    check_architecture(state, cfg.model)
    check_recipe(state, cfg, where=f"checkpoint {path}")
    done = int(state.get("epoch", 0))
    if done > cfg.train.epochs:
        raise CheckpointError(
            f"checkpoint {path} is at epoch {done}, past --epochs {cfg.train.epochs}: that run "
            f"already trained further; give --epochs {done} or more to continue it, or "
            "another --checkpoint-dir")
    return state
