"""The ninsweep command: train without Ray, one-line errors, exit codes, files left alone."""

import re

import pytest
from ray_support import ROOT, cli_env, ninsweep

from ninsweep.cli import main

TINY = ["--data", "synthetic", "--set", "data.synthetic_train_size=64",
        "--set", "data.synthetic_test_size=32", "--set", "data.synthetic_image_size=16",
        "--batch-size", "32", "--threads", "1"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "cache"))


def test_train_prints_a_line_per_epoch_and_the_final_accuracy(capsys):
    assert main(["train", *TINY, "--epochs", "2", "--activation", "elu", "--batchnorm",
                 "--init", "he"]) == 0
    out = capsys.readouterr().out
    assert "NIN elu, batchnorm on, init he: 969,822 parameters on cpu" in out
    assert len(re.findall(r"^epoch +\d/2 ", out, re.M)) == 2
    assert re.search(r"^final test accuracy \d+\.\d\d% \(best", out, re.M)


def test_train_resumes_from_its_checkpoint_dir(tmp_path, capsys):
    checkpoints = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--checkpoint-dir", str(checkpoints)]) == 0
    assert (checkpoints / "checkpoint.pt").is_file()
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(checkpoints)]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "after epoch 1" in out
    assert re.search(r"^epoch +2/2 ", out, re.M)


@pytest.mark.parametrize("args,message", [
    (["--activation", "relu6"], "model.activation: unknown value 'relu6'"),
    (["--init", "xavier"], "model.init: unknown value 'xavier'"),
    (["--epochs", "0"], "train.epochs: must be > 0"),
    (["--epochs", "-3"], "train.epochs: must be > 0"),
    (["--batch-size", "1000"], "train.batch_size: 1000 is larger than the training set (64 images)"),
    (["--set", "train.nope=1"], "train.nope: unknown key"),
    (["--set", "lr=1"], "expected SECTION.KEY=VALUE"),
])
def test_bad_train_flags_fail_with_one_line_and_exit_2(capsys, args, message):
    assert main(["train", *TINY, "--epochs", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err
    assert message in err


def test_missing_image_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--data", "imagefolder", "--data-dir", str(tmp_path / "nowhere"),
                 "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and "\n" not in err


def test_corrupt_checkpoint_is_refused_and_left_untouched(tmp_path, capsys):
    checkpoints = tmp_path / "run"
    checkpoints.mkdir()
    (checkpoints / "checkpoint.pt").write_bytes(b"garbage")
    assert main(["train", *TINY, "--epochs", "1", "--checkpoint-dir", str(checkpoints)]) == 2
    assert "unreadable or corrupt checkpoint" in capsys.readouterr().err
    assert (checkpoints / "checkpoint.pt").read_bytes() == b"garbage"


def test_checkpoint_of_another_architecture_is_refused_and_kept(tmp_path, capsys):
    checkpoints = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--checkpoint-dir", str(checkpoints)]) == 0
    before = (checkpoints / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "2", "--activation", "maxout",
                 "--checkpoint-dir", str(checkpoints)]) == 2
    assert "different architecture" in capsys.readouterr().err
    assert (checkpoints / "checkpoint.pt").read_bytes() == before


def test_errors_from_the_real_command_have_no_traceback(tmp_path):
    result = ninsweep("train", "--activation", "swish", env=cli_env(tmp_path), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("ninsweep: error: model.activation: unknown value 'swish' "
                                     "(choose from relu, leaky_relu, elu, maxout, gelu, silu, mish, "
                                     "selu, tanh, prelu, hardswish)")


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"Run the tests:\s*```\s*(.+?)\s*```", readme, re.S).group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    # Every line of the README's block (installing chromium, then the suite), in order.
    lines = [line.strip() for line in command.splitlines()]
    positions = [ci_lines.index(line) for line in lines if line in ci_lines]
    assert len(positions) == len(lines) and positions == sorted(positions), (lines, ci_lines)
