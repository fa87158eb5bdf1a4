"""Your own model: a space names a factory by import path; checked before Ray, shipped to it."""

import csv
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from ray_support import cli_env, needs_netns, ninsweep

from ninsweep.cli import main
from ninsweep.config import TrialConfig
from ninsweep.core.train import Trainer
from ninsweep.errors import CheckpointError, ConfigError
from ninsweep.space import load_space, parse_space

NETS = textwrap.dedent('''
    import os
    from torch import nn

    def tiny(width: int, depth: int = 1, num_classes: int = 10, calls: str = ""):
        """A small conv net; records the building process's id in ``calls``."""
        if calls:
            with open(calls, "a") as handle:
                handle.write(f"{os.getpid()}\\n")
        layers = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, num_classes))

    def not_a_module(width: int):
        return [width]

    def broken(width: int):
        raise ValueError(f"width {width} is not a multiple of 16")
''')

DATA = ("data: {source: synthetic, synthetic_train_size: 64, synthetic_test_size: 32, "
        "synthetic_image_size: 16}\n")


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A directory holding a user module with a unique name and a space file beside it."""
    module = f"nets_{os.getpid()}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(NETS)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the space dir is added to sys.path
    yield tmp_path, module
    sys.modules.pop(module, None)


def write_space(directory: Path, module: str, model: str, grid: str, extra: str = "") -> Path:
    space = directory / "study.yaml"
    space.write_text(f"model: {model.replace('NETS', module)}\ngrid:\n{grid}{DATA}"
                     f"train: {{epochs: 1, batch_size: 32, weight_decay_on: all}}\n{extra}")
    return space


def test_factory_keywords_are_grid_axes_with_names_params_and_the_module_to_ship(study):
    directory, module = study
    space = write_space(directory, module, '{factory: "NETS:tiny", depth: 2}',
                        "  - width: [4, 8]\n")
    spec = load_space(space)
    assert spec.trial_names == ("tiny-width4-s0", "tiny-width8-s0")
    assert spec.trials[0].params == {"seed": 0, "model.width": 4}
    model = spec.trials[1].config.model
    assert (model.factory, model.factory_kwargs) == (f"{module}:tiny", {"depth": 2, "width": 8})
    assert spec.code == (str(directory / f"{module}.py"),)
    # The manifest keeps the config and the code to ship: a resume needs no YAML.
    again = type(spec).from_manifest(json.loads(json.dumps(spec.to_manifest())))
    assert again.trials == spec.trials and again.code == spec.code


@pytest.mark.parametrize("model, grid, expected", [
    ('{factory: "NETS:tinyy"}', "  - width: [4]\n", "model.factory: module 'NETS' has no 'tinyy'"),
    ('{factory: "nosuchmodule_xyz:tiny"}', "  - width: [4]\n",
     "model.factory: cannot import 'nosuchmodule_xyz' (no module named 'nosuchmodule_xyz'"),
    ('{factory: "NETS.tiny"}', "  - width: [4]\n", "model.factory: 'NETS.tiny' is not an import path"),
    ('{factory: "NETS:tiny"}', "  - widht: [4]\n",
     "grid[0].widht: not a keyword of NETS:tiny (its keywords: width, depth, num_classes, calls)"),
    ('{factory: "NETS:tiny", colour: red}', "  - width: [4]\n",
     "model.colour: not a keyword of NETS:tiny"),
    ('{factory: "NETS:tiny"}', "  - depth: [1, 2]\n",
     "model.factory: NETS:tiny needs keyword 'width'"),
    ('{factory: "NETS:not_a_module"}', "  - width: [4]\n",
     "model.factory: NETS:not_a_module(width=4) returned list, not a torch.nn.Module"),
    ('{factory: "NETS:broken"}', "  - width: [4]\n",
     "model.factory: NETS:broken(width=4) raised ValueError: width 4 is not a multiple of 16"),
])
def test_a_bad_factory_fails_before_ray_in_one_line_naming_the_key(study, capsys, model, grid,
                                                                    expected):
    directory, module = study
    space = write_space(directory, module, model, grid)
    assert main(["run", str(space), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"ninsweep: error: {space}: {expected.replace('NETS', module)}"), err


def test_a_factory_model_trains_and_its_checkpoint_refuses_another_width(study):
    directory, module = study
    spec = load_space(write_space(directory, module, '{factory: "NETS:tiny"}',
                                  "  - width: [4, 8]\n"))
    trainer = Trainer(spec.trials[0].config)
    assert trainer.num_parameters == 3 * 4 * 9 + 4 + 4 * 10 + 10
    history = trainer.fit()
    assert len(history) == 1 and 0.0 <= history[0]["test_acc"] <= 1.0
    state = trainer.state_dict()
    resumed = Trainer(TrialConfig.from_dict(state["config"]))
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    with pytest.raises(CheckpointError, match="factory_kwargs"):
        Trainer(spec.trials[1].config).load_state_dict(state)


def test_factory_kwargs_without_a_factory_and_nin_trials_keep_their_names():
    with pytest.raises(ConfigError, match=r"^model\.factory_kwargs: needs model\.factory"):
        TrialConfig.from_dict({"model": {"factory_kwargs": {"width": 4}}})
    spec = parse_space("grid:\n  - activation: [relu]\n", "plain.yaml")
    assert spec.trial_names == ("relu-nobn-keras-s0",) and spec.code == ()


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
def test_a_factory_from_a_temporary_module_runs_a_two_trial_sweep_on_ray_workers(study):
    directory, module = study
    calls = directory / "calls.txt"
    space = write_space(directory, module, f'{{factory: "NETS:tiny", calls: "{calls}"}}',
                        "  - width: [4, 8]\n", "resources: {cpus: 1, gpus: 0}\n")
    env = cli_env(directory)
    # The module is importable only through what ninsweep ships: not from the working
    # directory (the repository), not from the test's PYTHONPATH.
    assert str(directory) not in env.get("PYTHONPATH", "")
    result = ninsweep("run", space, "--storage", directory / "results", env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(directory / "results" / "study" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["trial"], r["config"], r["status"]) for r in rows] == [
        ("tiny-width4-s0", "width=4", "finished"), ("tiny-width8-s0", "width=8", "finished")]
    # Built in the driver (checked before Ray) and in the workers: other processes.
    assert len(set(calls.read_text().split())) >= 2


# ------------------------------------------------------------------ your own data

DATA_MODULE = textwrap.dedent('''
    import numpy as np
    import torch
    from PIL import Image

    def tensors(n_train: int = 40, size: int = 8):
        """NHWC floats in [0, 1], as a numpy pipeline gives them."""
        g = torch.Generator().manual_seed(0)
        def split(n):
            labels = torch.arange(n) % 4
            return torch.rand(n, size, size, 3, generator=g), labels
        return {"train": split(n_train), "test": split(12), "classes": ["a", "b", "c", "d"]}

    class Folder:
        """torchvision-style: ds[i] == (PIL image, label), .classes."""
        classes = ["cat", "dog"]
        def __init__(self, n):
            self.n = n
        def __len__(self):
            return self.n
        def __getitem__(self, i):
            pixels = np.full((6, 6), 40 * i % 256, dtype=np.uint8)
            return Image.fromarray(pixels, mode="L"), i % 2

    def datasets():
        return Folder(10), Folder(4)

    def wrong():
        return 42
''')


@pytest.fixture
def data_module(tmp_path, monkeypatch):
    module = f"data_{os.getpid()}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(DATA_MODULE)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    yield module
    sys.modules.pop(module, None)


def test_a_data_factory_of_tensors_is_converted_cached_and_augmented(data_module, tmp_path):
    from ninsweep.core.data import cache_path, load_data

    cfg = TrialConfig.from_dict({"data": {"factory": f"{data_module}:tensors",
                                          "factory_kwargs": {"n_train": 40}}}).data
    assert cfg.source == "factory"
    data = load_data(cfg)
    assert data.train_images.shape == (40, 3, 8, 8) and data.train_images.dtype == torch.uint8
    assert data.classes == ("a", "b", "c", "d") and data.test_labels.tolist()[:5] == [0, 1, 2, 3, 0]
    assert cache_path(cfg).is_file()
    assert load_data(cfg).train_images.equal(data.train_images)  # from the cache
    trial = TrialConfig.from_dict({
        "model": {"num_classes": 4},
        "data": {"factory": f"{data_module}:tensors", "crop_padding": 2, "flip_probability": 1.0},
        "train": {"epochs": 1, "batch_size": 20}})
    assert len(Trainer(trial).fit()) == 1


def test_a_torchvision_style_dataset_factory_and_bad_returns(data_module):
    from ninsweep.core.data import load_data
    from ninsweep.errors import DataError

    cfg = TrialConfig.from_dict({"data": {"factory": f"{data_module}:datasets"}}).data
    data = load_data(cfg)
    assert data.train_images.shape == (10, 3, 6, 6) and data.classes == ("cat", "dog")
    assert data.train_images[3, :, 0, 0].tolist() == [120, 120, 120]  # grey to three channels
    bad = TrialConfig.from_dict({"data": {"factory": f"{data_module}:wrong"}}).data
    with pytest.raises(DataError, match=r"^data\.factory: .*:wrong returned int; expected"):
        load_data(bad)
    with pytest.raises(ConfigError, match=r"^data\.factory: names a data factory but data\.source"):
        TrialConfig.from_dict({"data": {"source": "synthetic", "factory": f"{data_module}:wrong"}})


def test_a_data_factory_keyword_is_checked_before_ray(data_module, tmp_path, capsys):
    space = tmp_path / "d.yaml"
    space.write_text(f"grid:\n  - activation: [relu]\n"
                     f"data: {{factory: \"{data_module}:tensors\", factory_kwargs: {{n_trian: 4}}}}\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ninsweep: error: {space}: data.factory_kwargs.n_trian: not a keyword of "
        f"{data_module}:tensors (its keywords: n_train, size)")


# ------------------------------------------------------------------ the example study

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resnet"


def test_the_example_resnet_study_expands_and_its_model_is_resnet20():
    spec = load_space(EXAMPLE / "resnet-cifar10.yaml")
    assert len(spec.trials) == 16 and spec.code == (str(EXAMPLE / "resnet.py"),)
    from ninsweep.core.model import build_model, count_parameters

    resnet20 = build_model(config=spec.trials[0].config.model)
    assert count_parameters(resnet20) == 272_474  # ResNet-20 with 1x1 projection shortcuts


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
def test_the_synthetic_example_runs_end_to_end_to_a_report(tmp_path):
    from ninsweep import analysis

    try:
        from .analysis_fixtures import check_analysable
    except ImportError:
        from analysis_fixtures import check_analysable

    env = cli_env(tmp_path)
    result = ninsweep("run", EXAMPLE / "resnet-synthetic.yaml", "--storage", tmp_path / "results",
                      env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    experiment = tmp_path / "results" / "resnet-synthetic"
    exp = check_analysable(experiment, tmp_path, expect_trials=4, expect_finished=4)
    assert exp.objective == {"metric": "test_loss", "mode": "min"}
    report = ninsweep("report", experiment, "--output", tmp_path / "report", env=env, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    text = next((tmp_path / "report").glob("*.md")).read_text()
    assert "Best by the objective, lowest mean final test_loss" in text
    labels = set(analysis.trial_table(exp)["config"])
    assert labels == {"norm=batch width=4", "norm=batch width=8", "norm=group width=4",
                      "norm=group width=8"}
    assert all(f"**{label}**" in text or f"| {label} |" in text for label in labels)


def test_a_checkpoint_written_before_the_new_model_fields_still_fits_its_model():
    from ninsweep.config import ModelConfig
    from ninsweep.core.checkpoint import check_architecture

    # What a BatchNorm trial's checkpoint held before norm, norm_groups, prelu_init, factory.
    old = {"activation": "elu", "batchnorm": True, "init": "he", "leaky_relu_slope": 0.01,
           "elu_alpha": 1.0, "maxout_pieces": 2, "pool2": "max", "pool_padding": "same",
           "dropout": 0.5, "bn_momentum": 0.01, "bn_eps": 1e-3, "num_classes": 10}
    check_architecture({"config": {"model": old}}, ModelConfig(activation="elu", batchnorm=True,
                                                               init="he"))
    with pytest.raises(CheckpointError, match="norm: checkpoint 'batch', requested 'group'"):
        check_architecture({"config": {"model": {**old, "batchnorm": False, "norm": "batch"}}},
                           ModelConfig(activation="elu", norm="group", init="he"))
