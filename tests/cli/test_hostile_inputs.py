"""Hostile inputs and faults, round two (issue 23): each one line, before Ray, files intact.

Cheap tests only (no Ray); the Ray-backed faults are in test_faults.py.
"""

import pickle
from pathlib import Path

import pytest

from ninsweep.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ninsweep: error: "), err
    return err.strip()


def _image_folder(root: Path, classes: int = 10, images: int = 2) -> Path:
    """Just the layout (preflight lists files, it decodes none)."""
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(images):
                (folder / f"{i}.png").write_bytes(b"")
    return root


# ---------------------------------------------------------- overrides: one change, in any order

@pytest.mark.parametrize("order", [
    ["--data-dir", "{D}", "--set", "data.source=imagefolder"],
    ["--set", "data.source=imagefolder", "--set", "data.root={D}"],
    ["--set", "data.root={D}", "--set", "data.source=imagefolder"],
])
def test_overrides_apply_together_whatever_their_order(tmp_path, capsys, order):
    folder = _image_folder(tmp_path / "D")
    args = [a.replace("{D}", str(folder)) for a in order]
    assert main(["run", "lab4", *args, "--set", "train.batch_size=4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("space lab4 (") and ": 10 trials, 164 epochs each, " \
        "data imagefolder; overrides: " in out.splitlines()[0]


def test_an_override_still_missing_a_key_names_the_flags(capsys):
    assert main(["run", "lab4", "--set", "data.source=imagefolder", "--dry-run"]) == 2
    assert _error(capsys) == ("ninsweep: error: --set data.source: data.root: is required for "
                              "source imagefolder (trial relu-nobn-keras-s0)")


def test_data_dir_and_set_data_root_together_is_refused(capsys):
    assert main(["run", "lab4", "--set", "data.root=/a", "--data-dir", "/b", "--dry-run"]) == 2
    assert _error(capsys) == ("ninsweep: error: --data-dir: and --set data.root both set "
                              "data.root; give one of them")


# ---------------------------------------------------------- names the file system refuses

def test_a_300_character_name_is_one_line_before_anything_is_written(tmp_path, capsys):
    name = "a" * 300
    assert main(["run", "smoke", "--name", name, "--storage", str(tmp_path), "--dry-run"]) == 2
    assert _error(capsys) == (f"ninsweep: error: --name: experiment name {'a' * 40!r}... is 300 "
                              "characters; at most 200 (it names a directory)")
    assert list(tmp_path.iterdir()) == []


def test_a_trial_name_too_long_for_a_directory_is_one_line(tmp_path, capsys):
    space = tmp_path / "long.yaml"
    space.write_text("grid:\n  - activation: [relu]\n    data.cache_dir: [" + "x" * 250 + "]\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    assert _error(capsys) == (f"ninsweep: error: {space}: grid[0]: trial name "
                              "'relu-nobn-keras-cache_dir_xxxxxxxxxxxxxx'... is 279 characters; "
                              "at most 200 (it names a directory)")


# ---------------------------------------------------------- every check the dry run can make

NETS = '''\
import torch.nn as nn


def narrow(width: int = 4, num_classes: int = 10):  # ignores num_classes: 5 outputs
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 5))
'''


def test_a_model_factory_of_the_wrong_output_width_fails_the_dry_run(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(NETS)
    space = tmp_path / "fac.yaml"
    space.write_text("model: {factory: 'nets:narrow'}\ngrid:\n  - width: [4, 8]\n"
                     "data: {source: synthetic, synthetic_train_size: 64}\n"
                     "train: {epochs: 1, batch_size: 16}\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    assert _error(capsys) == (f"ninsweep: error: {space}: model.factory: nets:narrow(width=4) "
                              "returns 2x5 for 2 images, not 2x10 (model.num_classes 10: one "
                              "score per class) (trial narrow-width4-s0)")


def test_a_set_model_factory_is_imported_by_the_dry_run(capsys):
    assert main(["run", "smoke", "--set", "model.factory=nosuchmod:fn", "--dry-run"]) == 2
    assert _error(capsys) == ("ninsweep: error: --set model.factory: cannot import 'nosuchmod' "
                              "(no module named 'nosuchmod'; put it next to the space file, in "
                              "the working directory or on PYTHONPATH)")


@pytest.mark.parametrize("val_size, problem", [
    (100, "data.val_size: 100 but the training set has 100 images (some must be left to train "
          "on)"),
    (90, "train.batch_size: 16 is larger than the training set (10 images, after "
         "data.val_size 90)"),
])
def test_a_validation_split_too_large_fails_the_dry_run_from_file_or_set(tmp_path, capsys,
                                                                         val_size, problem):
    space = tmp_path / "small.yaml"
    text = ("grid:\n  - activation: [relu, elu]\n"
            "data: {source: synthetic, synthetic_train_size: 100%s}\n"
            "train: {epochs: 1, batch_size: 16}\n")
    space.write_text(text % "")
    in_file = tmp_path / "in-file.yaml"
    in_file.write_text(text % f", val_size: {val_size}")
    for args in ([str(in_file)], [str(space), "--set", f"data.val_size={val_size}"]):
        assert main(["run", *args, "--dry-run"]) == 2
        assert _error(capsys) == (f"ninsweep: error: {args[0]}: trial relu-nobn-keras-s0: "
                                  f"{problem} (and 1 more trial)")


# ---------------------------------------------------------- Tune state that does not load

COMPAT = Path(__file__).resolve().parents[1] / "fixtures" / "main-9c78cef" / "compat"


@pytest.mark.slow  # imports Ray (starts none)
@pytest.mark.parametrize("content, problem", [
    (bytes(range(256)) * 4, "does not unpickle (UnpicklingError: "),
    (pickle.dumps({"trials": []}), "holds dict, not a saved Tune Tuner; "),
], ids=["random-bytes", "wrong-shape"])
def test_a_tuner_pkl_that_does_not_load_is_one_line_naming_it(tmp_path, capsys, content,
                                                               problem):
    import shutil

    import ray

    from ninsweep.sweep.runner import check_tune_state

    check_tune_state(str(COMPAT))  # a real one loads (without starting Ray)
    experiment = Path(shutil.copytree(COMPAT, tmp_path / "compat"))
    (experiment / "tuner.pkl").write_bytes(content)
    before = {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file()}
    assert main(["resume", str(experiment)]) == 2
    err = _error(capsys)
    assert err.startswith(f"ninsweep: error: {experiment}/tuner.pkl: {problem}")
    assert err.endswith("resume trusts this file for the sweep's Tune settings and trials: put "
                        "back an intact copy, or start the space again with `ninsweep run "
                        "--name` (the trials' results here stay readable by status, export "
                        "and report)")
    assert not ray.is_initialized()
    assert {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------- user modules: one rule

MYDATA = """\
import torch


def tiny(n: int = 32):
    def split(k):
        images = (torch.arange(k * 3 * 64) * 7 % 251).to(torch.uint8).reshape(k, 3, 8, 8)
        return images, torch.arange(k) % 10
    return split(n), split(16)
"""


def test_train_finds_a_data_factory_in_the_working_directory_as_run_does(tmp_path, capsys,
                                                                        monkeypatch):
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "mydata.py").write_text(MYDATA)
    assert main(["train", "--set", "data.factory=mydata:tiny", "--epochs", "1",
                 "--batch-size", "8", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert ("NIN relu, batchnorm off, init keras: 966,986 parameters on cpu; data factory: "
            "32 train / 16 test images\n") in out
    assert list((tmp_path / "cache").glob("factory-*.pt"))


# ---------------------------------------------------------- messages in ninsweep's words

def test_a_damaged_history_line_is_one_warning_line_of_ours(tmp_path, capsys):
    import shutil

    experiment = Path(shutil.copytree(COMPAT, tmp_path / "compat"))
    result = experiment / "relu-bn-keras-lr0.05-s0" / "result.json"
    lines = result.read_text().splitlines()
    result.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    assert main(["status", str(experiment)]) == 0
    err = capsys.readouterr().err
    assert err == f"ninsweep: WARNING: {result}:2: not a JSON object, line skipped\n"


def test_a_checkpoint_torch_refuses_is_one_line_without_its_weights_only_advice(tmp_path,
                                                                                capsys):
    import argparse

    import torch

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": 1, "args": argparse.Namespace(a=1)}, run / "checkpoint.pt")
    (run / "cut.pt").write_bytes(b"garbage" * 10)
    before = (run / "checkpoint.pt").read_bytes()
    assert main(["train", "--data", "synthetic", "--epochs", "1",
                 "--checkpoint-dir", str(run)]) == 2
    assert _error(capsys) == (f"ninsweep: error: {run / 'checkpoint.pt'}: unreadable or corrupt "
                              "checkpoint (it holds an object of type argparse.Namespace; a "
                              "checkpoint holds tensors and plain values only, and ninsweep runs "
                              "no code from one)")
    assert (run / "checkpoint.pt").read_bytes() == before
    from ninsweep.core.checkpoint import load_checkpoint
    from ninsweep.errors import CheckpointError

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run / "cut.pt")
    assert str(info.value) == (f"{run / 'cut.pt'}: unreadable or corrupt checkpoint (not a "
                               "PyTorch checkpoint: its bytes do not unpickle (Unsupported "
                               "operand 103))")


# ---------------------------------------------------------- outputs kept in the experiment

def test_the_end_of_a_run_refreshes_an_epoch_csv_an_export_left_in_the_experiment(tmp_path,
                                                                                capsys):
    import json
    import shutil
    from types import SimpleNamespace

    from ninsweep.cli.results import finish_sweep

    experiment = Path(shutil.copytree(COMPAT, tmp_path / "compat"))
    assert main(["export", str(experiment), "--per-epoch"]) == 0
    epochs = experiment / "results-epochs.csv"
    exported = epochs.read_text()
    # The sweep goes on (a resume trains one more epoch), then ends.
    result = experiment / "relu-bn-keras-lr0.05-s0" / "result.json"
    last = json.loads(result.read_text().splitlines()[-1])
    result.write_text(result.read_text() + json.dumps({**last, "epoch": last["epoch"] + 1,
                                                       "test_acc": 0.875}) + "\n")
    outcome = SimpleNamespace(experiment_dir=str(experiment), finished=2, total=2, errored=0, stopped=0,
                              wall_time_s=1.0, interrupted=False, terminated=False,
                              config_errors=0, exit_code=0, storage_full=None)
    capsys.readouterr()
    finish_sweep(outcome, out=__import__("io").StringIO())
    assert epochs.read_text() != exported
    fresh = tmp_path / "fresh.csv"
    assert main(["export", str(experiment), "--per-epoch", "-o", str(fresh)]) == 0
    assert epochs.read_text() == (tmp_path / "fresh-epochs.csv").read_text()
    assert ",0.875," in epochs.read_text()


# ---------------------------------------------------------- a tracker's backend, before Ray

@pytest.mark.slow  # imports Ray's MLflow integration (starts no Ray)
def test_a_users_mlflow_backend_is_opened_before_ray_file_uris_work(tmp_path, capsys,
                                                                  monkeypatch):
    pytest.importorskip("mlflow")
    import ray

    from ninsweep.sweep.trackers import make_trackers

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{store}")
    assert make_trackers(["mlflow"], str(tmp_path / "exp"), "exp").names == ["mlflow"]
    assert store.is_dir()  # opened: MLflow 3 keeps a file store on request, made here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://x")
    storage = tmp_path / "results"
    assert main(["run", "smoke", "--tracker", "mlflow", "--storage", str(storage)]) == 2
    err = _error(capsys)
    assert err.startswith("ninsweep: error: tracker mlflow: MLFLOW_TRACKING_URI=nosuch://x "
                          "cannot be opened (")
    assert err.endswith("); point it at an MLflow server you can reach, a database "
                        "(sqlite:///mlflow.db) or a file:// folder, or unset it for the store "
                        "inside the experiment")
    assert not ray.is_initialized()
    assert not (storage / "smoke" / "ninsweep.json").exists()
