"""sweep.preflight: every trial checked against its data and resources before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray_support import (
    FAULT_SPACE,
    SPACES,
    write_images,
    write_space,
)

from ninsweep.cli import main
from ninsweep.space import load_space


@pytest.mark.parametrize("extra,problem", [
    ("train: {epochs: 1, batch_size: 128}\n",
     "train.batch_size: 128 is larger than the training set (100 images)"),
    ("data: {source: synthetic, synthetic_train_size: 100, train_subset: 200}\n",
     "data.train_subset: 200 but the train split of synthetic has 100 images"),
    ("data: {source: synthetic, synthetic_train_size: 100, train_subset: 16}\n",
     "train.batch_size: 32 is larger than the training set (16 images)"),
    ("data: {source: cifar10, test_subset: 20000}\n",
     "data.test_subset: 20000 but the test split of cifar10 has 10000 images"),
    ("model: {num_classes: 7}\n", "model.num_classes: 7 but the synthetic data has 10 classes"),
])
def test_preflight_refuses_trials_that_cannot_run_before_ray_starts(tmp_path, capsys, extra,
                                                                    problem):
    import ray

    space = _syntheticwrite_space(tmp_path, extra)
    storage = tmp_path / "results"
    assert main(["run", str(space), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err
    assert problem in err and "trial elu-nobn-keras-s0" in err and "(and 1 more trial)" in err
    assert not ray.is_initialized() and not storage.exists()
    assert main(["run", str(space), "--dry-run"]) == 2  # the dry run checks the same
    assert problem in capsys.readouterr().err


def test_a_cuda_trial_without_gpus_is_refused_before_ray_starts(tmp_path, capsys):
    import ray

    space = _syntheticwrite_space(tmp_path, "train: {epochs: 1, device: cuda}\n")
    storage = tmp_path / "results"
    assert main(["run", str(space), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err
    assert "train.device: 'cuda' in trial elu-nobn-keras-s0, but each trial asks Ray for no GPU" in err
    assert not ray.is_initialized() and not storage.exists()
    assert main(["run", str(space), "--dry-run"]) == 2
    assert "asks Ray for no GPU" in capsys.readouterr().err


def test_preflight_counts_an_image_folder_without_decoding_it(tmp_path, capsys):
    root = tmp_path / "images"
    write_images(root, {"cat": 3, "dog": 2})
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")  # counted, not decoded
    space = write_space(tmp_path, f"""\
        name: folder
        grid:
          - activation: [relu]
        data: {{source: imagefolder, root: {root}}}
        model: {{num_classes: 2}}
        train: {{epochs: 1, batch_size: 8}}
        """)
    assert main(["run", str(space), "--dry-run"]) == 2
    assert "train.batch_size: 8 is larger than the training set (6 images)" in capsys.readouterr().err
    three = write_space(tmp_path, space.read_text().replace("num_classes: 2", "num_classes: 3")
                   .replace("batch_size: 8", "batch_size: 4"), "three.yaml")
    assert main(["run", str(three), "--dry-run"]) == 2
    assert "model.num_classes: 3 but the imagefolder data has 2 classes" in capsys.readouterr().err
    fits = write_space(tmp_path, space.read_text().replace("batch_size: 8", "batch_size: 4"), "ok.yaml")
    assert main(["run", str(fits), "--dry-run"]) == 0


def test_resume_runs_the_preflight_on_the_manifest_before_ray(tmp_path, capsys):
    import ray

    from ninsweep.storage import write_manifest

    spec = load_space(_syntheticwrite_space(tmp_path, "train: {epochs: 1, batch_size: 128}\n"))
    experiment = tmp_path / "results" / "preflight"
    write_manifest(str(experiment), spec.to_manifest())
    assert main(["resume", str(experiment)]) == 2
    assert ("train.batch_size: 128 is larger than the training set (100 images)"
            in capsys.readouterr().err)
    assert not ray.is_initialized()
    assert sorted(p.name for p in experiment.iterdir()) == ["ninsweep.json"]


def test_preflight_accepts_the_shipped_spaces():
    from ninsweep.sweep.preflight import check_trials

    for path in sorted((SPACES.parent.parent / "search_spaces").glob("*.yaml")):
        check_trials(load_space(path))
    check_trials(load_space(FAULT_SPACE))


def _syntheticwrite_space(tmp_path: Path, extra: str) -> Path:
    """Two trials on 100 synthetic images; ``extra`` (YAML) replaces whole sections."""
    import yaml

    space = {"name": "preflight", "grid": [{"activation": ["elu", "relu"]}],
             "data": {"source": "synthetic", "synthetic_train_size": 100,
                      "synthetic_test_size": 20},
             "train": {"epochs": 1, "batch_size": 32}}
    space.update(yaml.safe_load(extra))
    return write_space(tmp_path, yaml.safe_dump(space))
