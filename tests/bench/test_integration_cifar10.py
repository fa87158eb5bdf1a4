"""Real CIFAR-10 (the JPEG copy in ../shared): a small subset learns well above chance.

Skipped where ../shared/data/cifar10-jpeg.zip is absent (users won't have it).
"""

import pytest

from ninsweep import metrics as M
from ninsweep.config import TrialConfig
from ninsweep.core.train import Trainer


@pytest.mark.slow
def test_a_small_cifar10_subset_reaches_clearly_above_chance(cifar10_jpeg_root):
    cfg = TrialConfig.from_dict({
        "model": {"activation": "elu", "batchnorm": True, "init": "he"},
        "data": {"source": "imagefolder", "root": str(cifar10_jpeg_root),
                 "cache_dir": str(cifar10_jpeg_root.parent / "cifar10-jpeg-cache"),
                 "train_subset": 1024, "test_subset": 1000},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "threads": 2},
    })
    trainer = Trainer(cfg)
    assert trainer.train_loader.num_images == 1024 and trainer.test_loader.num_images == 1000
    history = trainer.fit()
    # Chance is 10%; 1000 test images put its 99.9% bound near 13%. Measured here: 22% after
    # epoch 1, 32% after epoch 2 (a third epoch added 0.4 points: not worth its time).
    assert max(r[M.TEST_ACC] for r in history) > 0.2
    assert history[-1][M.TRAIN_LOSS] < history[0][M.TRAIN_LOSS]
