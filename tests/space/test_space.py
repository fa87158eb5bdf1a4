"""Search spaces: YAML -> SweepSpec -> trials. Fast; Ray is never started (nor imported)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ninsweep.config import TrialConfig
from ninsweep.errors import ConfigError, NinsweepError
from ninsweep.space import (
    Resources,
    SweepSpec,
    format_dry_run,
    load_space,
    package_spaces_dir,
    parse_space,
    resolve_space_path,
)

REPO = Path(__file__).resolve().parents[2]
SPACES = REPO / "search_spaces"

LAB4_NAMES = [
    "relu-nobn-keras-s0", "relu-nobn-he-s0", "relu-bn-keras-s0", "relu-bn-he-s0",
    "elu-nobn-keras-s0", "elu-nobn-he-s0", "elu-bn-keras-s0", "elu-bn-he-s0",
    "leaky_relu-bn-he-s0", "maxout-bn-he-s0",
]
# The reference grid (docs/lab4-reference.md): (activation, batchnorm, init).
LAB4_CELLS = {
    (act, bn, init) for act in ("relu", "elu") for bn in (False, True) for init in ("keras", "he")
} | {("leaky_relu", True, "he"), ("maxout", True, "he")}

MINIMAL = "grid:\n  - activation: [relu, elu]\n"


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str, name: str = "space.yaml") -> str:
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, NinsweepError)
    assert message.startswith(f"{path}: "), message
    return message


# --------------------------------------------------------------------------------------
# The shipped spaces


def test_lab4_is_the_reference_grid():
    spec = load_space(SPACES / "lab4.yaml")
    assert spec.name == "lab4"
    assert spec.description
    assert spec.source == str(SPACES / "lab4.yaml")
    assert [t.name for t in spec.trials] == LAB4_NAMES
    cells = {(t.params["activation"], t.params["batchnorm"], t.params["init"])
             for t in spec.trials}
    assert cells == LAB4_CELLS
    for t in spec.trials:
        assert t.params == {"activation": t.config.model.activation,
                            "batchnorm": t.config.model.batchnorm,
                            "init": t.config.model.init, "seed": 0}
        # Everything but the grid values is the reference recipe: TrialConfig's defaults,
        # except pool 2, average as in the code that produced the report's numbers.
        expected = TrialConfig().replace(model={"activation": t.params["activation"],
                                                "batchnorm": t.params["batchnorm"],
                                                "init": t.params["init"], "pool2": "avg"})
        assert t.config == expected
        assert t.config.train.epochs == 164 and t.config.data.source == "cifar10"
    assert spec.resources == Resources(cpus=2.0, gpus=0.25)
    assert (spec.checkpoint.every, spec.checkpoint.keep, spec.failure.max_retries) == (1, 2, 3)
    assert spec.seeds == (0,)
    assert spec.trial_epochs == 1640
    assert spec.trial("elu-bn-he-s0").config.model.activation == "elu"


def test_lab4_three_seeds_repeats_every_config():
    spec = load_space(SPACES / "lab4-3seeds.yaml")
    assert len(spec.trials) == 30
    assert spec.seeds == (0, 1, 2)
    assert len(set(spec.trial_names)) == 30
    for seed in (0, 1, 2):
        block = spec.trials[10 * seed:10 * seed + 10]  # seed-major: all configs per seed
        assert [t.name for t in block] == [n[:-1] + str(seed) for n in LAB4_NAMES]
        for t in block:
            assert t.params["seed"] == seed
            assert t.config.train.seed == seed
    lab4 = load_space(SPACES / "lab4.yaml")
    assert [t.config for t in spec.trials[:10]] == [t.config for t in lab4.trials]


def test_smoke_is_the_same_grid_on_tiny_data():
    spec = load_space(SPACES / "smoke.yaml")
    # Every lab4 cell at two seeds: the factor effects get paired intervals (issue 23).
    assert [t.name for t in spec.trials] == \
        LAB4_NAMES + [name.replace("-s0", "-s1") for name in LAB4_NAMES]
    for t in spec.trials:
        assert t.config.data.source == "synthetic"
        assert t.config.train.epochs == 3
        assert t.config.train.lr_milestones[0] < t.config.train.epochs  # the LR step is run
    # Small enough to finish end to end in about a minute on 2 cores (measured at 44-54 s
    # with these sizes, issue 23): the training images x pixels x epochs of all trials.
    work = sum(t.config.data.synthetic_train_size * t.config.data.synthetic_image_size ** 2
               * t.config.train.epochs for t in spec.trials)
    assert work <= 20 * 192 * 12 ** 2 * 3
    assert spec.resources == Resources(cpus=1.0, gpus=0.0)
    assert spec.checkpoint.keep >= 2


def test_shipped_spaces_all_load_and_round_trip():
    files = sorted(SPACES.glob("*.yaml"))
    assert {f.stem for f in files} >= {"lab4", "lab4-3seeds", "smoke"}
    for f in files:
        spec = load_space(f)
        assert spec.name == f.stem
        back = SweepSpec.from_manifest(json.loads(json.dumps(spec.to_manifest())))
        assert back == spec


# --------------------------------------------------------------------------------------
# The format


def test_scalars_dotted_keys_and_extra_params(tmp_path):
    spec = load_space(write(tmp_path, """
name: lrs
seeds: 2
grid:
  - activation: elu               # a scalar is a one-element list
    batchnorm: [true]
    train.lr: [0.1, 0.01]
    data.train_subset: [5000]
    model.elu_alpha: [0.5]
train: {epochs: 3, weight_decay: 1e-4}  # YAML 1.2 float
data: {source: synthetic}
"""))
    assert spec.seeds == (0, 1)
    assert [t.name for t in spec.trials] == [
        "elu-bn-keras-lr0.1-train_subset5000-elu_alpha0.5-s0",
        "elu-bn-keras-lr0.01-train_subset5000-elu_alpha0.5-s0",
        "elu-bn-keras-lr0.1-train_subset5000-elu_alpha0.5-s1",
        "elu-bn-keras-lr0.01-train_subset5000-elu_alpha0.5-s1",
    ]
    t = spec.trials[1]
    assert t.params == {"activation": "elu", "batchnorm": True, "init": "keras", "seed": 0,
                        "train.lr": 0.01, "data.train_subset": 5000, "model.elu_alpha": 0.5}
    assert t.config.train.lr == 0.01 and t.config.train.weight_decay == 1e-4
    assert t.config.data.train_subset == 5000 and t.config.model.elu_alpha == 0.5
    assert t.config.train.epochs == 3


def test_union_of_blocks_with_different_keys_shares_param_columns(tmp_path):
    spec = load_space(write(tmp_path, """
grid:
  - activation: [relu]
  - activation: [elu]
    pool2: [max, avg]
    train.lr_milestones: [[2], [1, 2]]
  - activation: [maxout]
    train.lr_milestones: [5, 9]      # a flat list is one value of a list-valued field
    train.nesterov: [false]
"""))
    names = [t.name for t in spec.trials]
    assert names == [
        "relu-nobn-keras-pool2_max-lr_milestones_81_122-nesterov-s0",
        "elu-nobn-keras-pool2_max-lr_milestones_2-nesterov-s0",
        "elu-nobn-keras-pool2_max-lr_milestones_1_2-nesterov-s0",
        "elu-nobn-keras-pool2_avg-lr_milestones_2-nesterov-s0",
        "elu-nobn-keras-pool2_avg-lr_milestones_1_2-nesterov-s0",
        "maxout-nobn-keras-pool2_max-lr_milestones_5_9-nonesterov-s0",
    ]
    for t in spec.trials:
        assert list(t.params) == ["activation", "batchnorm", "init", "seed", "model.pool2",
                                  "train.lr_milestones", "train.nesterov"]
    assert spec.trials[-1].config.train.lr_milestones == (5, 9)
    assert spec.trials[-1].params["train.lr_milestones"] == [5, 9]


def test_single_block_may_be_a_mapping_and_name_defaults_to_file_stem(tmp_path):
    spec = load_space(write(tmp_path, "grid: {activation: [relu, elu]}\n", "mine.yaml"))
    assert spec.name == "mine"
    assert spec.trial_names == ("relu-nobn-keras-s0", "elu-nobn-keras-s0")
    assert spec.resources == Resources(cpus=1.0, gpus=0.0)
    assert (spec.checkpoint.every, spec.checkpoint.keep, spec.failure.max_retries) == (1, 2, 3)


def test_whole_gpus_and_yaml_anchors(tmp_path):
    spec = load_space(write(tmp_path, """
grid:
  - &base {activation: [relu], batchnorm: [true]}
  - <<: *base
    activation: [elu]
resources: {cpus: 0.5, gpus: 2}
"""))
    assert spec.trial_names == ("relu-bn-keras-s0", "elu-bn-keras-s0")
    assert spec.resources == Resources(cpus=0.5, gpus=2.0)
    assert spec.resources.to_ray() == {"cpu": 0.5, "gpu": 2.0}


# --------------------------------------------------------------------------------------
# Validation: one line, "<file>: <key path>: <problem>"

G = "grid:\n  - activation: [relu, elu]\n"

ERROR_CASES = [
    # (id, YAML, expected text after "<file>: ")
    ("unknown-activation", "grid:\n  - activation: [relu, relu6]\n",
     "grid[0].activation: unknown value 'relu6' (choose from relu, leaky_relu, elu, maxout, gelu, silu, mish, selu, tanh, prelu, hardswish)"),
    ("unknown-init", G + "  - activation: [maxout]\n    init: [xavier]\n",
     "grid[1].init: unknown value 'xavier'"),
    ("wrong-type-in-grid", "grid:\n  - batchnorm: [maybe]\n",
     "grid[0].batchnorm: expected true or false, got str 'maybe'"),
    ("wrong-type-in-list-value", "grid:\n  - train.lr_milestones: [[1, a]]\n",
     "grid[0].train.lr_milestones[1]: expected an integer"),
    ("top-level-list", "- activation: [relu]\n", "expected a mapping at the top level, got a list"),
    ("empty-file", "", "the file is empty"),
    ("unknown-top-key", G + "epochs: 3\n", "epochs: unknown key (known: name, description"),
    ("unknown-resources-key", G + "resources: {cpu: 2}\n",
     "resources.cpu: unknown key (known: cpus, gpus)"),
    ("unknown-checkpoint-key", G + "checkpoint: {evry: 2}\n", "checkpoint.evry: unknown key"),
    ("unknown-failure-key", G + "failure: {retries: 2}\n", "failure.retries: unknown key"),
    ("unknown-model-key", G + "model: {pool3: max}\n", "model.pool3: unknown key"),
    ("unknown-data-key", G + "data: {sorce: cifar10}\n", "data.sorce: unknown key"),
    ("unknown-train-key", G + "train: {learning_rate: 0.1}\n", "train.learning_rate: unknown key"),
    ("wrong-type-override", G + "train: {epochs: ten}\n",
     "train.epochs: expected an integer, got str 'ten'"),
    ("out-of-range-override", G + "train: {epochs: 0}\n", "train.epochs: must be > 0"),
    ("section-not-mapping", G + "train: 3\n", "train: expected a mapping"),
    ("resources-not-mapping", G + "resources: 2\n", "resources: expected a mapping"),
    ("empty-grid", "grid: []\n", "grid: empty list of blocks"),
    ("missing-grid", "name: x\n", "grid: missing or empty"),
    ("empty-block", "grid:\n  - {}\n", "grid[0]: empty block"),
    ("empty-values", "grid:\n  - activation: []\n", "grid[0].activation: empty list of values"),
    ("block-not-mapping", "grid:\n  - [relu, elu]\n", "grid[0]: expected a mapping"),
    ("fractional-gpus-above-one", G + "resources: {gpus: 1.5}\n",
     "resources.gpus: 1.5 GPUs: use a fraction up to 1"),
    ("negative-gpus", G + "resources: {gpus: -0.5}\n", "resources.gpus: must be >= 0"),
    ("negative-cpus", G + "resources: {cpus: -1}\n", "resources.cpus: must be > 0, got -1"),
    ("zero-cpus", G + "resources: {cpus: 0}\n", "resources.cpus: must be > 0"),
    ("cpus-not-a-number", G + "resources: {cpus: two}\n", "resources.cpus: expected a number"),
    ("gpus-boolean", G + "resources: {gpus: true}\n", "resources.gpus: expected a number"),
    ("seeds-empty", G + "seeds: []\n", "seeds: empty list"),
    ("seeds-negative", G + "seeds: [0, -1]\n", "seeds[1]: must be >= 0, got -1"),
    ("seeds-duplicate", G + "seeds: [0, 1, 0]\n", "seeds[2]: duplicate seed 0"),
    ("seeds-zero-count", G + "seeds: 0\n", "seeds: a count of seeds must be >= 1"),
    ("seeds-not-int", G + "seeds: [0.5]\n", "seeds[0]: expected an integer"),
    ("grid-key-unknown", "grid:\n  - actvation: [relu]\n", "grid[0].actvation: not a config field"),
    ("grid-key-bare-train-field", "grid:\n  - lr: [0.1]\n",
     "grid[0].lr: not a model field; write train.lr"),
    ("grid-key-unknown-dotted", "grid:\n  - train.learning_rate: [0.1]\n",
     "grid[0].train.learning_rate: not a config field"),
    ("grid-key-unknown-section", "grid:\n  - optim.lr: [0.1]\n",
     "grid[0].optim.lr: not a config field"),
    ("grid-seed", "grid:\n  - train.seed: [1, 2]\n",
     "grid[0].train.seed: set seeds with the top-level"),
    ("train-seed-override", G + "train: {seed: 3}\n", "train.seed: set seeds with the top-level"),
    ("grid-and-override", "grid:\n  - train.lr: [0.1, 0.01]\ntrain: {lr: 0.1}\n",
     "grid[0].train.lr: also set in the train section"),
    ("bare-grid-and-override", G + "model: {activation: elu}\n",
     "grid[0].activation: also set in the model section"),
    ("same-field-twice-in-block", "grid:\n  - activation: [relu]\n    model.activation: [elu]\n",
     "grid[0].model.activation: same field as grid[0].activation"),
    ("duplicate-configuration", G + "  - activation: [elu]\n",
     "grid[1]: duplicate configuration elu-nobn-keras-s0 (also produced by grid[0])"),
    ("checkpoint-keep-1", G + "checkpoint: {keep: 1}\n", "checkpoint.keep: must be >= 2"),
    ("checkpoint-every-0", G + "checkpoint: {every: 0}\n", "checkpoint.every: must be >= 1"),
    ("max-retries-negative", G + "failure: {max_retries: -1}\n",
     "failure.max_retries: must be >= 0"),
    ("cross-field-rule", "grid:\n  - train.momentum: [0.0, 0.9]\n",
     "train.nesterov: needs momentum > 0 (with grid[0]: train.momentum=0)"),
    ("bad-name", G + "name: a/b\n", "name: 'a/b' is not a usable experiment name"),
    ("description-not-string", G + "description: [a]\n", "description: expected a string"),
    ("non-json-value", G + "description: !!set {a}\n", "description: unsupported YAML value"),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_validation_errors_name_file_key_and_problem(tmp_path, text, expected):
    message = load_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'space.yaml'}: {expected}"), message


def test_error_uses_the_file_name_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("lab4.yaml").write_text("grid:\n  - activation: [relu, relu6]\n")
    with pytest.raises(ConfigError) as info:
        load_space("lab4.yaml")
    assert str(info.value) == ("lab4.yaml: grid[0].activation: unknown value 'relu6' "
                               "(choose from relu, leaky_relu, elu, maxout, gelu, silu, mish, selu, tanh, "
                               "prelu, hardswish)")


@pytest.mark.parametrize("text, line", [
    ("grid:\n  - activation: [relu\n", 3),
    ("grid:\n  - activation: [relu]\n   batchnorm: [true]\n", 3),
    ("grid:\n\t- activation: [relu]\n", 2),
])
def test_malformed_yaml_reports_the_line(tmp_path, text, line):
    message = load_error(tmp_path, text)
    assert f": line {line}, column " in message and "invalid YAML" in message


def test_duplicate_yaml_keys_are_an_error(tmp_path):
    message = load_error(tmp_path, G + "train: {epochs: 3}\ntrain: {epochs: 4}\n")
    assert "line 4" in message and "duplicate key 'train' (first at line 3)" in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_space(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------
# Command-line overrides


def test_overrides_cap_epochs_set_data_dir_and_resources():
    spec = load_space(SPACES / "lab4.yaml")
    short = spec.with_overrides(max_epochs=5, data_dir="/data/cifar", gpus_per_trial=0,
                                cpus_per_trial=1)
    assert short.trial_names == spec.trial_names
    assert [t.params for t in short.trials] == [t.params for t in spec.trials]
    for t in short.trials:
        assert t.config.train.epochs == 5
        assert t.config.train.lr_milestones == (81, 122)  # kept, just never reached
        assert t.config.data.root == "/data/cifar"
    assert short.resources == Resources(cpus=1.0, gpus=0.0)
    assert short.overrides == {"max_epochs": 5, "data_dir": "/data/cifar",
                               "cpus_per_trial": 1.0, "gpus_per_trial": 0.0}
    # A cap above the space's epochs changes nothing.
    assert spec.with_overrides(max_epochs=1000).trials == spec.trials
    assert spec.with_overrides() == spec
    # The original is untouched (frozen).
    assert spec.trials[0].config.train.epochs == 164


@pytest.mark.parametrize("kwargs, expected", [
    ({"max_epochs": 0}, "--max-epochs: must be >= 1"),
    ({"gpus_per_trial": 1.5}, "--gpus-per-trial: 1.5 GPUs: use a fraction up to 1"),
    ({"gpus_per_trial": -1}, "--gpus-per-trial: must be >= 0"),
    ({"cpus_per_trial": -2}, "--cpus-per-trial: must be > 0"),
    ({"cpus_per_trial": 0}, "--cpus-per-trial: must be > 0"),
    ({"data_dir": ""}, "--data-dir: must not be empty"),
])
def test_bad_overrides(kwargs, expected):
    spec = load_space(SPACES / "smoke.yaml")
    with pytest.raises(ConfigError) as info:
        spec.with_overrides(**kwargs)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------
# Manifest


def test_manifest_round_trip_through_json():
    spec = load_space(SPACES / "lab4-3seeds.yaml").with_overrides(max_epochs=3,
                                                                  gpus_per_trial=0)
    manifest = spec.to_manifest()
    text = json.dumps(manifest)  # JSON-serialisable as it is
    assert manifest["format"] == 1
    assert manifest["space_name"] == "lab4-3seeds"
    assert manifest["space_file"] == spec.source
    assert manifest["space"]["seeds"] == [0, 1, 2]  # the YAML as loaded
    assert manifest["trials"][0] == {"name": "relu-nobn-keras-s0",
                                     "params": spec.trials[0].params,
                                     "config": spec.trials[0].config.to_dict()}
    assert manifest["resources"] == {"cpus": 2.0, "gpus": 0.0}
    assert manifest["checkpoint"] == {"every": 1, "keep": 2}
    assert manifest["failure"] == {"max_retries": 3}
    back = SweepSpec.from_manifest(json.loads(text))
    assert back == spec
    assert back.trials[5].config.train.epochs == 3
    # created (added by the sweep) and other extra keys are ignored
    assert SweepSpec.from_manifest({**json.loads(text), "created": "2024-01-01T00:00:00"}) == spec


def test_manifest_errors_name_the_entry():
    manifest = load_space(SPACES / "smoke.yaml").to_manifest()
    with pytest.raises(ConfigError, match=r"^ninsweep.json: format: unsupported manifest format 7"):
        SweepSpec.from_manifest({**manifest, "format": 7})
    bad = json.loads(json.dumps(manifest))
    bad["trials"][2]["config"]["model"]["activation"] = "relu6"
    with pytest.raises(ConfigError,
                       match=r"^run/ninsweep.json: trials\[2\].config: model.activation: unknown"):
        SweepSpec.from_manifest(bad, where="run/ninsweep.json")
    bad = json.loads(json.dumps(manifest))
    bad["trials"][1]["name"] = bad["trials"][0]["name"]
    with pytest.raises(ConfigError, match=r"trials\[1\].name: duplicate trial name"):
        SweepSpec.from_manifest(bad)


def test_param_space_holds_one_entry_per_trial():
    pytest.importorskip("ray")
    from ray.tune.search.variant_generator import generate_variants

    from ninsweep.sweep.runner import param_space

    spec = load_space(SPACES / "smoke.yaml")
    # What Tune resolves (a grid over names, each name's trial): every trial once, in order.
    resolved = [config for _, config in generate_variants(param_space(spec))]
    assert [c["trial"] for c in resolved] == [t.to_dict() for t in spec.trials]
    assert [c["trial_name"] for c in resolved] == list(spec.trial_names)


# --------------------------------------------------------------------------------------
# Dry run


def test_dry_run_lists_every_trial_with_resources_and_totals():
    spec = load_space(SPACES / "lab4.yaml")
    lines = format_dry_run(spec).splitlines()
    assert len(lines) == 1 + 10 + 2
    assert lines[0].startswith("space lab4 (") and "10 trials" in lines[0] \
        and "164 epochs" in lines[0]
    for name, line in zip(LAB4_NAMES, lines[1:11]):
        assert line.split()[0] == name
        assert "seed=0" in line and "activation=" in line
        assert line.endswith("cpus=2 gpus=0.25")
    assert "elu-bn-he-s0" in lines[8] and "batchnorm=true init=he" in lines[8]
    footer = "\n".join(lines[11:])
    assert "10 trials" in footer and "1640 trial-epochs" in footer
    assert "cpus=20 gpus=2.5" in footer
    assert "checkpoint every 1 epoch, keep 2" in footer and "3 retries" in footer


def test_dry_run_shows_overrides():
    spec = load_space(SPACES / "lab4.yaml").with_overrides(max_epochs=2, gpus_per_trial=0)
    text = format_dry_run(spec)
    assert "2 epochs each" in text.splitlines()[0]
    assert "max_epochs=2" in text.splitlines()[0]
    assert "20 trial-epochs" in text and "gpus=0\n" in text


# --------------------------------------------------------------------------------------
# Finding a space


def test_resolve_by_name_from_the_package():
    assert package_spaces_dir() == SPACES
    assert resolve_space_path("lab4").resolve() == SPACES / "lab4.yaml"
    assert resolve_space_path("smoke.yaml").resolve() == SPACES / "smoke.yaml"


def test_resolve_prefers_path_then_cwd_spaces(tmp_path, monkeypatch):
    mine = write(tmp_path, MINIMAL, "custom.yaml")
    assert resolve_space_path(str(mine)) == mine
    assert resolve_space_path(mine) == mine
    monkeypatch.chdir(tmp_path)
    (tmp_path / "search_spaces").mkdir()
    local = write(tmp_path / "search_spaces", MINIMAL, "lab4.yaml")
    assert resolve_space_path("lab4").resolve() == local  # ./search_spaces shadows the package
    assert resolve_space_path("custom.yaml") == Path("custom.yaml")  # a path relative to cwd


def test_resolve_unknown_name_lists_available(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve_space_path("lab5")
    message = str(info.value)
    assert message.startswith("lab5: no such search space")
    assert "lab4" in message and "lab4-3seeds" in message and "smoke" in message
    with pytest.raises(ConfigError, match="no such search space"):
        resolve_space_path(os.path.join("nowhere", "lab4.yaml"))
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_space_path(tmp_path)


# ------------------------------------------------------------------ open axes (issue 12)

def test_open_axes_are_grid_keys_with_their_parameters():
    spec = parse_space("grid:\n"
                       "  - activation: [gelu, leaky_relu]\n"
                       "    norm: [none, group]\n"
                       "    norm_groups: [4]\n"
                       "    init: [orthogonal]\n"
                       "    leaky_relu_slope: [0.2]\n", "open.yaml")
    assert spec.trial_names[:2] == ("gelu-orthogonal-norm_none-norm_groups4-leaky_relu_slope0.2-s0",
                                    "gelu-orthogonal-norm_group-norm_groups4-leaky_relu_slope0.2-s0")
    configs = [t.config.model for t in spec.trials]
    assert [(c.activation, c.norm, c.norm_groups) for c in configs] == [
        ("gelu", "none", 4), ("gelu", "group", 4), ("leaky_relu", "none", 4),
        ("leaky_relu", "group", 4)]
    assert spec.trials[1].params["model.norm"] == "group"


def test_batchnorm_and_norm_batch_in_one_grid_are_the_same_trial(tmp_path):
    message = load_error(tmp_path, "grid:\n  - batchnorm: [true]\n  - norm: [batch]\n")
    assert "grid[1]: duplicate configuration" in message


def test_batchnorm_true_with_another_norm_is_one_line_naming_the_key(tmp_path):
    message = load_error(tmp_path, "grid:\n  - batchnorm: [true]\n    norm: [layer]\n")
    assert message == (f"{tmp_path / 'space.yaml'}: grid[0].norm: 'layer' contradicts "
                       "batchnorm: true (batchnorm: true means norm: batch; set one of them)")


def test_objective_defaults_by_metric_and_rejects_what_cannot_be_ranked(tmp_path):
    grid = "grid:\n  - activation: [relu]\n"
    assert parse_space(grid, "a.yaml").objective == {"metric": "test_acc", "mode": "max"}
    spec = parse_space(grid + "objective: {metric: test_loss}\n", "a.yaml")
    assert spec.objective == {"metric": "test_loss", "mode": "min"}
    assert SweepSpec.from_manifest(json.loads(json.dumps(spec.to_manifest()))).objective == \
        spec.objective
    assert load_error(tmp_path, grid + "objective: {metric: accuracy}\n").endswith(
        "objective.metric: unknown metric 'accuracy' (choose from test_acc, test_loss, val_acc, "
        "val_loss, train_acc, train_loss)")
    assert load_error(tmp_path, grid + "objective: {metric: val_acc}\n").endswith(
        "objective.metric: val_acc needs a validation split (data.val_size > 0 in every trial)")
    assert load_error(tmp_path, grid + "objective: {mode: best}\n").endswith(
        "objective.mode: unknown mode 'best' (max: higher is better, min: lower)")


# ------------------------------------------------------------------ one value parser (issue 11)

def test_values_parse_the_same_from_yaml_and_from_set():
    from ninsweep.space import parse_assignment, parse_value

    grid = "grid:\n  - activation: [relu]\n"
    in_yaml = parse_space(grid + "train: {weight_decay: 1e-4, lr: 1}\n", "a.yaml")
    on_line = parse_space(grid, "a.yaml").with_overrides(settings=dict(
        parse_assignment(text) for text in ("train.weight_decay=1e-4", "train.lr=1")))
    assert on_line.trials[0].config == in_yaml.trials[0].config
    train = in_yaml.trials[0].config.train
    # An integer where a number is wanted is that number; 1e-4 is a float (YAML 1.2).
    assert train.weight_decay == 1e-4 and train.lr == 1.0 and isinstance(train.lr, float)
    # A number where an integer is wanted, or text where a number is, is not coerced.
    with pytest.raises(ConfigError, match="train.epochs: expected an integer, got float 2.5"):
        in_yaml.with_overrides(settings={"train.epochs": parse_value("2.5")})
    with pytest.raises(ConfigError, match="train.lr: expected a number, got str '1e-4x'"):
        in_yaml.with_overrides(settings={"train.lr": parse_value("1e-4x")})
