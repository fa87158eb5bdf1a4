"""The training loop: one model, one recipe, epoch by epoch. Knows nothing of Ray.

``Trainer`` owns the model, optimizer, data loaders and every random number generator, so its
``state_dict`` captures a run completely: on CPU, a run stopped after epoch k and resumed from
that state ends with bit-identical weights and metrics to an uninterrupted run. Callers (the
CLI, the Ray trainable, a notebook) get a callback after each epoch and decide what to do with
the metrics and the state.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics as M
from .config import ModelConfig, TrialConfig, from_dict, to_dict
from .data import DeviceLoader, ImageData, hold_out_validation, load_data
from .devices import describe_device, prepare_device
from .atomic import write_atomic
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .fmt import first_line
from .model import build_model, count_parameters, decayed_parameters

CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE = "checkpoint.pt"

EpochCallback = Callable[[dict[str, float], "Trainer"], None]
# Called after each training step with (steps done, steps in the epoch): progress within an
# epoch, which on a CPU takes minutes. It gets counts only, so it never syncs the device.
StepCallback = Callable[[int, int], None]


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but no CUDA device is available")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"train.device: {name!r} requested but this process sees "
                          f"{torch.cuda.device_count()} CUDA device(s), cuda:0 first")
    return torch.device(name)


def learning_rate_at(epoch: int, cfg: TrialConfig) -> float:
    """The step schedule: lr * gamma^(milestones passed); ``epoch`` is 0-indexed."""
    passed = sum(1 for milestone in cfg.train.lr_milestones if epoch >= milestone)
    return cfg.train.lr * cfg.train.lr_gamma ** passed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


class Trainer:
    """Trains the NIN of ``cfg`` on ``cfg.data`` with ``cfg.train``'s recipe."""

    def __init__(self, cfg: TrialConfig, data: Optional[ImageData] = None,
                 log: Optional[Callable[[str], None]] = None):
        self.cfg = cfg
        # Progress notes (data loading, cache builds): the caller's, or the logging module's.
        log = log or logging.getLogger("ninsweep.train").info
        self.log = log
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        # Before anything lands on the device: a reused worker's earlier run must not leak in.
        prepare_device(self.device, cfg.train.compile, cfg.train.cudnn_benchmark)
        log(describe_device(self.device))
        seed_everything(cfg.train.seed)

        data = data if data is not None else load_data(cfg.data, log=log)
        data, validation = hold_out_validation(data, cfg.data.val_size)
        if cfg.train.batch_size > len(data.train_labels):
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is larger than the "
                              f"training set ({len(data.train_labels)} images)")
        self.classes = data.classes
        if len(data.classes) != cfg.model.num_classes:
            raise ConfigError(f"model.num_classes: {cfg.model.num_classes} but the data has "
                              f"{len(data.classes)} classes")
        loader_options = dict(device=self.device, mean=data.mean, std=data.std,
                              channels_last=cfg.train.channels_last)
        self.train_loader = DeviceLoader(
            data.train_images, data.train_labels, batch_size=cfg.train.batch_size, train=True,
            augment=cfg.data.augment, crop_padding=cfg.data.crop_padding,
            flip_probability=cfg.data.flip_probability, **loader_options)
        self.test_loader = DeviceLoader(
            data.test_images, data.test_labels, batch_size=cfg.train.eval_batch_size,
            train=False, **loader_options)
        # Evaluated every epoch when data.val_size > 0: what "best epoch" is chosen on.
        self.val_loader = None if validation is None else DeviceLoader(
            *validation, batch_size=cfg.train.eval_batch_size, train=False, **loader_options)
        # The only source of data-order and augmentation randomness; checkpointed.
        self.data_generator = torch.Generator().manual_seed(cfg.train.seed)

        self.model = build_model(config=cfg.model).to(self.device)  # NIN or a factory's
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        decayed, not_decayed = decayed_parameters(self.model, cfg.train.weight_decay_on)
        self.optimizer = torch.optim.SGD(
            [{"params": decayed, "weight_decay": cfg.train.weight_decay},
             {"params": not_decayed, "weight_decay": 0.0}],
            lr=cfg.train.lr, momentum=cfg.train.momentum, nesterov=cfg.train.nesterov)
        # Compiled or not, parameters are shared with self.model, whose state we save.
        self.step_model = torch.compile(self.model) if cfg.train.compile else self.model
        self.epoch = 0  # finished epochs
        self.history: list[dict[str, float]] = []

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.cfg.train.epochs

    # -- one epoch -------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def train_one_epoch(self, on_step: Optional[StepCallback] = None) -> dict[str, float]:
        lr = learning_rate_at(self.epoch, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        # Sums stay on the device: no host sync per step.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        steps = len(self.train_loader)
        started = time.perf_counter()
        for step, (images, labels) in enumerate(self.train_loader.epoch(self.data_generator), 1):
            with self._autocast():
                logits = self.step_model(images)
                loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach().float() * labels.shape[0]
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            seen += labels.shape[0]
            if on_step is not None:
                on_step(step, steps)
        train_loss, train_correct = loss_sum.item(), correct.item()  # syncs the device
        if not math.isfinite(train_loss):
            # Stop before this epoch counts: its NaN weights must not replace the last
            # good checkpoint, and training on would only report NaN to the end.
            raise TrainingDiverged(
                f"epoch {self.epoch + 1}: the training loss is {train_loss} (training "
                f"diverged); lower train.lr (now {lr:g}) or check the data")
        train_time = time.perf_counter() - started
        test_loss, test_acc = self.evaluate()
        self.epoch += 1
        result = {
            M.EPOCH: self.epoch,
            M.TRAIN_LOSS: train_loss / seen,
            M.TRAIN_ACC: train_correct / seen,
            M.TEST_LOSS: test_loss,
            M.TEST_ACC: test_acc,
            M.LR: lr,
            M.EPOCH_TIME_S: time.perf_counter() - started,
            M.IMAGES_PER_S: seen / train_time,
        }
        if self.val_loader is not None:
            result[M.VAL_LOSS], result[M.VAL_ACC] = self.evaluate(self.val_loader)
            result[M.EPOCH_TIME_S] = time.perf_counter() - started
        if self.device.type == "cuda":
            result[M.PEAK_GPU_MEM_MB] = torch.cuda.max_memory_reserved(self.device) / 2**20
        self.history.append(result)
        return result

    @torch.no_grad()
    def evaluate(self, loader: Optional[DeviceLoader] = None) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on the test split (or on ``loader``'s images)."""
        loader = loader if loader is not None else self.test_loader
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for images, labels in loader.epoch(None):
            # No bf16 autocast here: logits in bf16 (8 bits of mantissa) tie or flip the
            # argmax of near-equal classes, moving accuracy by more than the gaps a sweep
            # compares. fp32 costs only the test pass; training keeps bf16.
            logits = self.step_model(images).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
        count = loader.num_images
        return loss_sum.item() / count, correct.item() / count

    def fit(self, on_epoch_end: Optional[EpochCallback] = None,
            on_step: Optional[StepCallback] = None) -> list[dict[str, float]]:
        """Train the remaining epochs, calling ``on_epoch_end(metrics, self)`` after each (and
        ``on_step(step, steps)`` after each training step)."""
        while not self.finished:
            result = self.train_one_epoch(on_step)
            if on_epoch_end is not None:
                on_epoch_end(result, self)
        return self.history

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this run stands."""
        numpy_state = np.random.get_state()
        rng = {
            "python": random.getstate(),
            # numpy's state holds an ndarray, which weights_only loading refuses: store parts.
            "numpy": {"kind": numpy_state[0], "keys": torch.from_numpy(numpy_state[1].copy()),
                      "pos": int(numpy_state[2]), "has_gauss": int(numpy_state[3]),
                      "cached_gaussian": float(numpy_state[4])},
            "torch": torch.get_rng_state(),
            "data": self.data_generator.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "history": list(self.history),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; refuse a state of a different architecture."""
        check_architecture(state, self.cfg.model)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            rng = state["rng"]
            random.setstate(_as_python_rng_state(rng["python"]))
            numpy_state = rng["numpy"]
            np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy(),
                                 numpy_state["pos"], numpy_state["has_gauss"],
                                 numpy_state["cached_gaussian"]))
            torch.set_rng_state(rng["torch"])
            self.data_generator.set_state(rng["data"])
            if self.device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state(rng["cuda"], self.device)
            self.epoch = int(state["epoch"])
            self.history = [dict(entry) for entry in state["history"]]
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint does not fit this run: {first_line(err, 300)}") from None


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
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint ({first_line(err, 300)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ninsweep checkpoint (format "
                              f"{state.get('format') if isinstance(state, dict) else '?'})")
    return state


def _as_python_rng_state(saved: Any) -> tuple:
    version, internal, gauss = saved
    return int(version), tuple(int(v) for v in internal), gauss
