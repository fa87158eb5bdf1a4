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
import random
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ninsweep.config import TrialConfig
from ninsweep.core.checkpoint import CHECKPOINT_FORMAT, check_architecture
from ninsweep.core.data import DeviceLoader, ImageData, hold_out_validation, load_data
from ninsweep.core.devices import describe_device, prepare_device, resolve_device
from ninsweep.core.model import build_model, count_parameters, decayed_parameters
from ninsweep.errors import CheckpointError, ConfigError, TrainingDiverged
from ninsweep.fmt import first_line
from ninsweep.metrics import (
    EPOCH,
    EPOCH_TIME_S,
    IMAGES_PER_S,
    LR,
    PEAK_GPU_MEM_MB,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
)

EpochCallback = Callable[[dict[str, float], "Trainer"], None]
# Called after each training step with (steps done, steps in the epoch): progress within an
# epoch, which on a CPU takes minutes. It gets counts only, so it never syncs the device.
StepCallback = Callable[[int, int], None]


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
            EPOCH: self.epoch,
            TRAIN_LOSS: train_loss / seen,
            TRAIN_ACC: train_correct / seen,
            TEST_LOSS: test_loss,
            TEST_ACC: test_acc,
            LR: lr,
            EPOCH_TIME_S: time.perf_counter() - started,
            IMAGES_PER_S: seen / train_time,
        }
        if self.val_loader is not None:
            result[VAL_LOSS], result[VAL_ACC] = self.evaluate(self.val_loader)
            result[EPOCH_TIME_S] = time.perf_counter() - started
        if self.device.type == "cuda":
            result[PEAK_GPU_MEM_MB] = torch.cuda.max_memory_reserved(self.device) / 2**20
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


def _as_python_rng_state(saved: Any) -> tuple:
    version, internal, gauss = saved
    return int(version), tuple(int(v) for v in internal), gauss
