"""Checks of a sweep's trials that need no Ray and no training: run before Ray starts.

A trial whose configuration cannot run (a batch larger than its training set, a model with
more classes than its data, a model factory that raises) would otherwise be found only inside
Ray, after the cluster started and the data loaded, once per trial. ``check_trials`` finds
these from what is known without decoding any data: CIFAR-10's fixed split sizes, a synthetic
source's configured sizes, an image folder's file listing (when the folder is visible from
here: on a cluster the data may live on the workers only); and it builds each distinct model
of a model factory once. ``run``, ``resume`` and ``run --dry-run`` call it. No Ray; torch
only for a space that names a model factory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ninsweep.config import DataConfig, ModelConfig, TrialConfig
from ninsweep.datasets import (
    CIFAR10_CLASSES,
    CIFAR10_SPLITS,
    SYNTHETIC_NUM_CLASSES,
    known_image_size,
    resolve_data_root,
    scan_imagefolder,
)
from ninsweep.errors import ConfigError
from ninsweep.fmt import one_line
from ninsweep.space.loader import space_dirs
from ninsweep.space.schema import SweepSpec


def check_trials(spec: SweepSpec, where: Optional[str] = None) -> None:
    """Raise ``ConfigError`` naming the first trial that cannot run, and how many share it.

    ``where`` names the space in the message (default: its file).
    """
    where = where or spec.source or spec.name
    check_factory_models(spec, where)
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
    if data.source == "synthetic":
        return data.synthetic_train_size, data.synthetic_test_size, SYNTHETIC_NUM_CLASSES
    if data.source != "imagefolder":
        return None  # a data factory: known once its function runs, in the first trial
    root = resolve_data_root(data)
    if not root.exists():
        return None  # perhaps only on the cluster's workers: the trial will tell
    scan = scan_imagefolder(Path(root))
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
    # The validation split is held out of the (subset) training split (core.data's rule).
    if cfg.data.val_size >= usable:
        return (f"data.val_size: {cfg.data.val_size} but the training set has {usable} images "
                "(some must be left to train on)")
    usable -= cfg.data.val_size
    if cfg.train.batch_size > usable:
        held_out = f", after data.val_size {cfg.data.val_size}" if cfg.data.val_size else ""
        return (f"train.batch_size: {cfg.train.batch_size} is larger than the training set "
                f"({usable} images{held_out})")
    if cfg.model.num_classes != classes:
        return f"model.num_classes: {cfg.model.num_classes} but the {source} data has {classes} classes"
    return None


def check_factory_models(spec: SweepSpec, where: str) -> None:
    """Build each distinct model of a model factory once; its error is one line naming the
    key and the trial (``model.factory: mynets:resnet(width=4) raised ValueError: ...``)."""
    factory_trials = [t for t in spec.trials if t.config.model.factory is not None]
    if not factory_trials:
        return
    # torch, only for a space that has models to build (the NIN needs no check here).
    from ninsweep.core.model import build_factory_model, check_factory_output

    dirs = (*space_dirs(spec.source), *(Path(path).parent for path in spec.code))
    checked: set[tuple[ModelConfig, Optional[int]]] = set()
    for trial in factory_trials:
        model, size = trial.config.model, known_image_size(trial.config.data)
        if (model, size) in checked:  # configs hash, factory keywords included
            continue
        checked.add((model, size))
        try:
            check_factory_output(build_factory_model(model, dirs), model, size)
        except ConfigError as err:
            raise ConfigError(one_line(f"{where}: {err} (trial {trial.name})")) from None

