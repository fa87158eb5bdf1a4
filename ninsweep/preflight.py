"""Checks of a sweep's trials that need no Ray and no training: run before Ray starts.

A trial whose configuration cannot run (a batch larger than its training set, a model with
more classes than its data) would otherwise be found only inside Ray, after the cluster
started and the data loaded, once per trial. ``check_trials`` finds these from what is known
without decoding any data: CIFAR-10's fixed split sizes, a synthetic source's configured
sizes, an image folder's file listing (when the folder is visible from here: on a cluster the
data may live on the workers only), and the GPUs the space gives each trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .config import DataConfig, TrialConfig
from .errors import ConfigError

# torchvision's CIFAR-10: fixed by its md5-checked archive.
CIFAR10_SPLITS = (50_000, 10_000)
CIFAR10_CLASSES = 10


def check_trials(spec, where: Optional[str] = None) -> None:
    """Raise ``ConfigError`` naming the first trial that cannot run, and how many share it.

    ``spec`` is a ``space.SweepSpec``; ``where`` names it in the message (its file).
    """
    where = where or spec.source or spec.name
    problems: list[tuple[str, str]] = []
    shapes: dict[DataConfig, Optional[tuple[int, int, int]]] = {}
    for trial in spec.trials:
        if trial.config.data not in shapes:
            shapes[trial.config.data] = data_shape(trial.config.data)
        problem = trial_problem(trial.config, shapes[trial.config.data])
        if problem:
            problems.append((trial.name, problem))
    if problems:
        name, problem = problems[0]
        others = len(problems) - 1
        more = f" (and {others} more trial{'s' if others > 1 else ''})" if others else ""
        raise ConfigError(f"{where}: trial {name}: {problem}{more}")


def data_shape(data: DataConfig) -> Optional[tuple[int, int, int]]:
    """(train images, test images, classes) of a source, or None when unknown from here.

    Raises the data module's ``DataError`` for an image folder laid out wrongly.
    """
    if data.source == "cifar10":
        return (*CIFAR10_SPLITS, CIFAR10_CLASSES)
    from . import data as D  # torch: only when a space needs it

    if data.source == "synthetic":
        return data.synthetic_train_size, data.synthetic_test_size, D.SYNTHETIC_NUM_CLASSES
    root = D.resolve_data_root(data)
    if not root.exists():
        return None  # perhaps only on the cluster's workers: the trial will tell
    scan = D._scan_imagefolder(Path(root))
    return (sum(map(len, scan.files["train"])), sum(map(len, scan.files["test"])),
            len(scan.classes))


def trial_problem(cfg: TrialConfig, shape: Optional[tuple[int, int, int]]) -> Optional[str]:
    """The first reason ``cfg`` cannot run on its data (one phrase, naming the key), or None.

    Devices against the GPUs a trial gets are the space's rule (``space.check_trial_devices``,
    applied when the space loads).
    """
    if shape is None:
        return None
    train_size, test_size, classes = shape
    source = cfg.data.source
    for split, size, subset in (("train", train_size, cfg.data.train_subset),
                                ("test", test_size, cfg.data.test_subset)):
        if subset is not None and subset > size:
            return f"data.{split}_subset: {subset} but the {split} split of {source} has {size} images"
    usable = min(cfg.data.train_subset or train_size, train_size)
    if cfg.train.batch_size > usable:
        return (f"train.batch_size: {cfg.train.batch_size} is larger than the training set "
                f"({usable} images)")
    if cfg.model.num_classes != classes:
        return f"model.num_classes: {cfg.model.num_classes} but the {source} data has {classes} classes"
    return None
