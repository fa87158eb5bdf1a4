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
                 "train_subset": 1024, "test_subset": 500},
        # Batch 64: on 2 CPU cores about 30% less time per image than batch 32, and the same
        # accuracy after 2 epochs; batch 128 learns too little in 2 epochs (23%).
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "threads": 2},
    })
    trainer = Trainer(cfg)
    assert trainer.train_loader.num_images == 1024 and trainer.test_loader.num_images == 500
    history = trainer.fit()
    # Chance is 10%; 500 test images put its 99.9% bound near 14%. Measured here: 22% after
    # epoch 1, 32% after epoch 2 (at batch 32 and 1000 test images: the same 22% and 32%).
    assert max(r[M.TEST_ACC] for r in history) > 0.2
    assert history[-1][M.TRAIN_LOSS] < history[0][M.TRAIN_LOSS]
