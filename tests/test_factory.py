"""Your own model: a space names a factory by import path; checked before Ray, shipped to it."""

import csv
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ninsweep.cli import main
from ninsweep.config import TrialConfig
from ninsweep.errors import CheckpointError, ConfigError
from ninsweep.space import load_space, parse_space
from ninsweep.train import Trainer

from ray_support import cli_env, needs_netns, ninsweep

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
