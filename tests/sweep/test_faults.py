"""Bad input and outer faults: one line, exit 2, and nothing on disk lost or replaced.

Every test here checks what is on disk afterwards (byte for byte where files must be left
alone), besides the exit status and the one-line message. None of them starts Ray.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from analysis_fixtures import make_experiment
from ray_support import needs_netns, one_line_error

from ninsweep.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "cache"))


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (or the file itself) -> sha256 of its bytes."""
    files = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def experiment(tmp_path: Path) -> Path:
    return make_experiment(tmp_path, [{"seed": 0}, {"seed": 1}, {"activation": "elu"}])


# -- export / report: outputs ---------------------------------------------------------------

@pytest.mark.parametrize("target", ["ninsweep.json", "relu-s0/result.json", "relu-s0/",
                                    "mine.csv", "report/other.csv"])
def test_export_refuses_any_path_inside_the_experiment_but_its_own(tmp_path, capsys, target):
    exp = experiment(tmp_path)
    before = snapshot(exp)
    for force in ([], ["--force"]):
        assert main(["export", str(exp), "-o", str(exp / target), *force]) == 2
        assert "inside the experiment directory" in one_line_error(capsys)
        assert snapshot(exp) == before


def test_export_refuses_a_symlink_into_the_experiment(tmp_path, capsys):
    exp = experiment(tmp_path)
    link = tmp_path / "innocent.csv"
    link.symlink_to(exp / "ninsweep.json")
    before = snapshot(exp)
    assert main(["export", str(exp), "-o", str(link), "--force"]) == 2
    assert "inside the experiment directory" in one_line_error(capsys)
    assert snapshot(exp) == before and link.is_symlink()


def test_export_never_replaces_an_existing_file_without_force(tmp_path, capsys):
    exp = experiment(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    # Only the per-config file exists: the refusal still comes before the per-trial file.
    (out / "mine-configs.csv").write_text("precious\n")
    assert main(["export", str(exp), "-o", str(out / "mine.csv")]) == 2
    err = one_line_error(capsys)
    assert "mine-configs.csv already exists; pass --force" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine-configs.csv"]
    assert (out / "mine-configs.csv").read_text() == "precious\n"

    assert main(["export", str(exp), "-o", str(out / "mine.csv"), "--force"]) == 0
    assert (out / "mine-configs.csv").read_text() != "precious\n"
    assert (out / "mine.csv").stat().st_size > 0


def test_export_refreshes_its_own_files_in_the_experiment(tmp_path, capsys):
    exp = experiment(tmp_path)
    assert main(["export", str(exp)]) == 0
    (exp / "results.csv").write_text("stale\n")
    assert main(["export", str(exp)]) == 0  # derived, regenerated without --force
    assert main(["export", str(exp), "-o", str(exp) + "/"]) == 0
    assert (exp / "results.csv").read_text() != "stale\n"
    assert (exp / "ninsweep.json").read_text().startswith("{")


def test_report_refuses_the_experiment_root_and_existing_files(tmp_path, capsys):
    exp = experiment(tmp_path)
    before = snapshot(exp)
    assert main(["report", str(exp), "-o", str(exp), "--force"]) == 2
    assert "inside the experiment directory" in one_line_error(capsys)
    assert snapshot(exp) == before

    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    assert main(["report", str(exp), "-o", str(out)]) == 2
    assert "report.md already exists; pass --force" in one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "my notes\n"
    assert main(["report", str(exp), "-o", str(out), "--force"]) == 0
    assert (out / "report.md").read_text().startswith("#")
    # The default folder inside the experiment is its own: refreshed without --force.
    assert main(["report", str(exp)]) == 0 and main(["report", str(exp)]) == 0
    assert (exp / "report" / "report.md").is_file()


# -- --name ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "/tmp/elsewhere", "a/b", "..", ".hidden", ""])
@pytest.mark.parametrize("command", ["run", "submit"])
def test_name_obeys_the_rule_of_the_yaml_name_key(tmp_path, capsys, name, command):
    storage = tmp_path / "storage"
    storage.mkdir()
    args = ["--storage", str(storage), "--name", name]
    if command == "submit":
        args = ["--storage", "/mnt/ninsweep", "--name", name, "--address", "http://127.0.0.1:1"]
    # Refused before anything starts (no Ray, no cluster): the name is checked first.
    assert main([command, "smoke", *args]) == 2
    err = one_line_error(capsys)
    assert f"--name: {name!r} is not a usable experiment name" in err
    assert list(storage.iterdir()) == [] and not (tmp_path / "x").exists()


# -- space size: caps instead of hangs --------------------------------------------------------

def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    lines = ["name: bomb", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):  # 9^10 values once expanded
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines += ["grid:", "  - activation: [relu]"]
    space = _space(tmp_path, "\n".join(lines) + "\n")
    assert main(["run", str(space), "--dry-run", "--storage", str(tmp_path / "s")]) == 2
    assert "expands to more than 1,000,000 values through aliases" in one_line_error(capsys)
    assert not (tmp_path / "s").exists()


def test_a_recursive_alias_and_deep_nesting_are_one_line(tmp_path, capsys):
    space = _space(tmp_path, "name: rec\nx: &x [1, *x]\ngrid:\n  - activation: [relu]\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    assert "inside its own anchor" in one_line_error(capsys)
    space = _space(tmp_path, "name: deep\nx: " + "[" * 3000 + "]" * 3000 + "\ngrid: {activation: [relu]}\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    assert "nested too deeply" in one_line_error(capsys)


def test_a_million_trial_grid_is_refused_with_its_size(tmp_path, capsys):
    values = ", ".join(str(round(0.001 * (i + 1), 3)) for i in range(100))
    space = _space(tmp_path, f"name: huge\ngrid:\n  - train.lr: [{values}]\n"
                             f"    train.weight_decay: [{values}]\n    train.lr_gamma: [{values}]\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    err = one_line_error(capsys)
    assert "grid: expands to 1,000,000 trials" in err and "at most 100,000" in err


def test_a_large_grid_lists_every_trial(tmp_path, capsys):
    # 2 x 2 x 2 x 1,250 = 10,000 trials: was ~30 s (type hints once per trial), now linear.
    values = ", ".join(str(0.0001 * (i + 1)) for i in range(1250))
    space = _space(tmp_path, "name: big\ntrain: {epochs: 1}\ngrid:\n  - activation: [relu, elu]\n"
                             "    batchnorm: [true, false]\n    init: [keras, he]\n"
                             f"    train.lr: [{values}]\n")
    assert main(["run", str(space), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "total: 10000 trials" in out and len(out.splitlines()) == 10003


# -- outer faults on real mounts: a full tmpfs, a read-only one -------------------------------
#
# Each scenario runs in its own mount namespace (`unshare -m`, as root): a small tmpfs is
# mounted over an empty directory, seeded with files, filled to the last byte or remounted
# read-only, and the ninsweep command runs on it. What the mount holds afterwards is copied
# out (the mount vanishes with the namespace) and compared with what was seeded.

def _can_mount() -> bool:
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return done.returncode == 0


needs_mounts = pytest.mark.skipif(not _can_mount(), reason="needs root and unshare -m")


def on_mount(tmp_path: Path, args: list[str], *, seed: Path | None = None, size_kb: int = 256,
             fill: bool = False, read_only: bool = False, python: tuple = ("-m", "ninsweep")):
    """Run ``ninsweep ARGS`` (``{mnt}`` stands for the mount) on a fresh tmpfs.

    Returns (exit status, stderr, the directory holding a copy of the mount afterwards).
    """
    import shlex
    import subprocess
    import sys

    from ray_support import ROOT, cli_env

    mount, after = tmp_path / "mnt", tmp_path / "after"
    mount.mkdir(parents=True)
    after.mkdir()
    command = shlex.join([sys.executable, *python,
                          *(a.replace("{mnt}", str(mount)) for a in args)])
    script = [f"mount -t tmpfs -o size={size_kb}k tmpfs {mount}"]
    if seed is not None:
        script.append(f"cp -a {seed}/. {mount}/")
    if fill:
        script.append(f"dd if=/dev/zero of={mount}/.filler bs=4k 2>/dev/null || true")
    if read_only:
        script.append(f"mount -o remount,ro {mount}")
    script += [f"rc=0; {command} 2>{tmp_path}/stderr >{tmp_path}/stdout || rc=$?",
               f"echo $rc >{tmp_path}/rc",
               f"cp -a {mount}/. {after}/", f"rm -f {after}/.filler"]
    done = subprocess.run(["unshare", "-m", "bash", "-ec", "\n".join(script)], cwd=ROOT,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return (int((tmp_path / "rc").read_text()), (tmp_path / "stderr").read_text().strip(), after)


def relative_snapshot(root: Path) -> dict[str, str]:
    return {str(Path(k).relative_to(root)): v for k, v in snapshot(root).items()}


def assert_one_line(stderr: str, *fragments: str) -> None:
    assert stderr.startswith("ninsweep: error: ") and "\n" not in stderr, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


@needs_mounts
def test_export_on_a_full_disk_keeps_the_old_files(tmp_path):
    seed = tmp_path / "seed"
    make_experiment(seed, [{"seed": 0}, {"seed": 1}], name="exp")
    (seed / "out.csv").write_text("old trials\n")
    (seed / "out-configs.csv").write_text("old configs\n")
    before = relative_snapshot(seed)
    status, err, after = on_mount(tmp_path, ["export", "{mnt}/exp", "-o", "{mnt}/out.csv",
                                             "--force"], seed=seed, fill=True)
    assert status == 2
    assert_one_line(err, "cannot write", "No space left on device")
    assert relative_snapshot(after) == before  # no temporary files left either


@pytest.mark.slow
@needs_mounts
def test_read_only_storage_refuses_run_export_and_report_in_one_line(tmp_path):
    seed = tmp_path / "seed"
    make_experiment(seed, [{"seed": 0}], name="exp")
    before = relative_snapshot(seed)
    for args in (["export", "{mnt}/exp"], ["report", "{mnt}/exp"],
                 ["run", "smoke", "--storage", "{mnt}", "--name", "new"],
                 ["resume", "{mnt}/exp"]):
        status, err, after = on_mount(tmp_path / args[0], args, seed=seed, read_only=True)
        assert status == 2, (args, err)
        assert_one_line(err, "Read-only file system")
        assert relative_snapshot(after) == before, args


@pytest.mark.slow
@needs_mounts
def test_train_on_a_full_disk_keeps_the_last_checkpoint_and_says_so(tmp_path):
    from ninsweep.experiment_dir import CHECKPOINT_FILE

    seed = tmp_path / "seed"
    tiny = ["--data", "synthetic", "--set", "data.synthetic_train_size=64",
            "--set", "data.synthetic_test_size=32", "--set", "data.synthetic_image_size=16",
            "--batch-size", "32", "--threads", "1"]
    assert main(["train", *tiny, "--epochs", "1", "--checkpoint-dir", str(seed / "ck")]) == 0
    size_kb = (seed / "ck" / CHECKPOINT_FILE).stat().st_size // 1024 + 64
    before = relative_snapshot(seed)
    status, err, after = on_mount(tmp_path, ["train", *tiny, "--epochs", "2", "--checkpoint-dir",
                                             "{mnt}/ck"], seed=seed, size_kb=size_kb, fill=True)
    assert status == 2
    assert_one_line(err, "cannot write the checkpoint", "the previous checkpoint is unchanged")
    assert relative_snapshot(after) == before


WRITE_MANIFEST = """
import sys
from ninsweep.errors import NinsweepError
from ninsweep.storage import write_manifest
try:
    write_manifest(sys.argv[1], {"format": 1, "trials": ["x" * 100] * 2000})
except NinsweepError as err:
    sys.exit(f"ninsweep: error: {err}")
"""


@needs_mounts
def test_the_manifest_on_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    seed = tmp_path / "seed"
    (seed / "other").mkdir(parents=True)
    (seed / "other" / "ninsweep.json").write_text('{"format": 1}')
    before = relative_snapshot(seed)
    status, err, after = on_mount(tmp_path, ["{mnt}/new"], seed=seed, fill=True,
                                  python=("-c", WRITE_MANIFEST))
    assert status == 1  # sys.exit(message)
    assert_one_line(err, "cannot write the manifest", "No space left on device")
    after_files = relative_snapshot(after)
    assert after_files == before  # no ninsweep.json, no temporary file in new/


# -- outer faults without a mount -------------------------------------------------------------

@pytest.mark.slow
def test_two_runs_of_one_name_at_the_same_moment_one_wins_one_refuses(tmp_path):
    """Two real processes: the winner holds the lock while it waits on the address (a port
    that never speaks gRPC, 6 s); the other is refused at once. Nothing is left behind.
    6 s: both start together, so the loser reaches the lock within the start-up skew of two
    identical processes (well under a second), long before the winner lets go."""
    import socket
    import subprocess
    import sys

    from ray_support import ROOT, cli_env

    storage = tmp_path / "storage"
    env = dict(cli_env(tmp_path), NINSWEEP_CONNECT_TIMEOUT="6")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        command = [sys.executable, "-m", "ninsweep", "run", "smoke", "--storage", str(storage),
                   "--address", address]
        runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [run.communicate(timeout=120) for run in runs]
    errors = sorted(err.strip() for _, err in results)
    assert [run.returncode for run in runs] == [2, 2]
    refused = [e for e in errors if "another ninsweep run or resume is writing" in e]
    waited = [e for e in errors if "the port answers but not as a Ray cluster" in e]
    assert len(refused) == 1 and len(waited) == 1, errors
    for err in errors:
        assert_one_line(err)
    assert list(storage.iterdir()) == []  # no lock file, no empty experiment directory


def test_storage_and_checkpoint_dir_that_are_files(tmp_path, capsys):
    place = tmp_path / "place"
    place.mkdir()
    blocker = place / "file"
    blocker.write_text("mine\n")
    assert main(["run", "smoke", "--storage", str(blocker)]) == 2
    assert f"{blocker}: is a file, not a directory" in one_line_error(capsys)
    assert main(["run", "smoke", "--storage", str(blocker / "below")]) == 2
    assert "is a file, not a directory" in one_line_error(capsys)
    assert main(["train", "--data", "synthetic", "--epochs", "1",
                 "--checkpoint-dir", str(blocker)]) == 2
    assert f"--checkpoint-dir {blocker}: is a file, not a directory" in one_line_error(capsys)
    assert main(["train", "--data", "synthetic", "--epochs", "1",
                 "--checkpoint-dir", str(blocker / "below")]) == 2
    assert "--checkpoint-dir" in one_line_error(capsys)
    assert [p.name for p in place.iterdir()] == ["file"] and blocker.read_text() == "mine\n"


def test_a_manifest_that_is_not_utf8_is_one_line_everywhere(tmp_path, capsys):
    exp = experiment(tmp_path)
    (exp / "ninsweep.json").write_bytes(b'{"format": 1, "space_name": "\xff\xfe"}')
    before = snapshot(exp)
    for command in (["status", str(exp)], ["export", str(exp), "-o", str(tmp_path / "x.csv")],
                    ["report", str(exp)], ["resume", str(exp)]):
        assert main(command) == 2, command
        err = one_line_error(capsys)
        assert "ninsweep.json" in err and ("UTF-8" in err or "utf-8" in err), err
    assert snapshot(exp) == before


def test_a_second_run_of_the_same_name_at_the_same_moment_is_refused(tmp_path, capsys):
    from ninsweep.storage import experiment_lock

    storage = tmp_path / "storage"
    with experiment_lock(str(storage / "smoke")):  # the first run, still starting
        (storage / "smoke" / "marker").write_text("first\n")
        assert main(["run", "smoke", "--storage", str(storage)]) == 2
        assert "another ninsweep run or resume is writing this experiment" in one_line_error(capsys)
        assert main(["resume", str(storage / "smoke")]) == 2
        assert "another ninsweep run or resume" in one_line_error(capsys)
    # Released: the lock file goes, the first run's files stay.
    assert sorted(p.name for p in (storage / "smoke").iterdir()) == ["marker"]


def test_a_refused_run_leaves_no_empty_experiment_directory(tmp_path, capsys):
    from ninsweep.storage import experiment_lock

    storage = tmp_path / "storage"
    with pytest.raises(RuntimeError):
        with experiment_lock(str(storage / "smoke")):
            raise RuntimeError("refused before anything was written")
    assert list(storage.iterdir()) == []


# -- train --checkpoint-dir: the recipe, finished runs, non-finite numbers --------------------

TINY = ["--data", "synthetic", "--set", "data.synthetic_train_size=64",
        "--set", "data.synthetic_test_size=32", "--set", "data.synthetic_image_size=16",
        "--batch-size", "32", "--threads", "1"]


@pytest.fixture(scope="module")
def checkpoint_at_epoch_2(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ck")
    assert main(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(directory)]) == 0
    return directory


def test_a_checkpoint_of_another_recipe_is_refused_naming_the_keys(checkpoint_at_epoch_2, capsys):
    before = snapshot(checkpoint_at_epoch_2)
    assert main(["train", *TINY, "--epochs", "4", "--lr", "0.05",
                 "--set", "data.synthetic_seed=3", "--checkpoint-dir",
                 str(checkpoint_at_epoch_2)]) == 2
    err = one_line_error(capsys)
    assert "different recipe" in err
    assert "train.lr (checkpoint 0.1, requested 0.05)" in err and "data.synthetic_seed" in err
    assert snapshot(checkpoint_at_epoch_2) == before


def test_runtime_settings_may_change_when_continuing(checkpoint_at_epoch_2):
    from ninsweep.config import TrialConfig
    from ninsweep.core.checkpoint import load_checkpoint, recipe_differences
    from ninsweep.experiment_dir import CHECKPOINT_FILE

    state = load_checkpoint(checkpoint_at_epoch_2 / CHECKPOINT_FILE)
    cfg = TrialConfig.from_dict(state["config"]).replace(
        train={"epochs": 9, "threads": 2, "device": "cpu", "eval_batch_size": 7,
               "compile": True}, data={"root": "/elsewhere", "cache_dir": "/tmp/x"})
    assert recipe_differences(state, cfg) == []
    assert [d[0] for d in recipe_differences(state, cfg.replace(train={"seed": 5}))] == ["train.seed"]


def test_a_finished_checkpoint_says_so(checkpoint_at_epoch_2, capsys):
    before = snapshot(checkpoint_at_epoch_2)
    assert main(["train", *TINY, "--epochs", "1", "--checkpoint-dir", str(checkpoint_at_epoch_2)]) == 2
    err = one_line_error(capsys)
    assert "is at epoch 2, past --epochs 1" in err and "epoch 2/1" not in err
    assert main(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(checkpoint_at_epoch_2)]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out and "epoch 2 of 2" in out
    assert snapshot(checkpoint_at_epoch_2) == before


@pytest.mark.parametrize("args,key", [
    (["--lr", "inf"], "train.lr"), (["--lr", "nan"], "train.lr"),
    (["--set", "train.momentum=.nan"], "train.momentum"),
    (["--set", "model.dropout=-.inf"], "model.dropout"),
])
def test_non_finite_numbers_are_refused_at_validation(tmp_path, capsys, args, key):
    assert main(["train", *TINY, "--epochs", "1", *args, "--checkpoint-dir", str(tmp_path / "ck")]) == 2
    assert f"{key}: must be a finite number" in one_line_error(capsys)
    assert not (tmp_path / "ck" / "checkpoint.pt").exists()


def test_non_finite_numbers_in_a_manifest_are_refused():
    from ninsweep.config import TrialConfig
    from ninsweep.errors import ConfigError

    with pytest.raises(ConfigError, match="train.lr: must be a finite number"):
        TrialConfig.from_dict({"train": {"lr": float("inf")}})


def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_good_checkpoint(tmp_path, capsys):
    from ninsweep.core.checkpoint import load_checkpoint
    from ninsweep.experiment_dir import CHECKPOINT_FILE

    checkpoints = tmp_path / "ck"
    # lr 0.1 for epoch 1, then x1e7 from epoch 2 on: the loss becomes NaN in epoch 2.
    blow_up = ["--set", "train.lr_milestones=[1]", "--set", "train.lr_gamma=10000000.0"]
    assert main(["train", *TINY, "--epochs", "1", *blow_up, "--checkpoint-dir", str(checkpoints)]) == 0
    before = snapshot(checkpoints)
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "4", *blow_up, "--checkpoint-dir", str(checkpoints)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("ninsweep: error: epoch 2: the training loss is nan") and "\n" not in err
    assert "epoch   2/4" not in captured.out  # the diverged epoch is not reported as done
    assert snapshot(checkpoints) == before
    assert load_checkpoint(checkpoints / CHECKPOINT_FILE)["epoch"] == 1


# -- waits on something outside have a bound ---------------------------------------------------





def test_a_dashboard_that_accepts_and_never_answers_is_one_line(tmp_path, capsys, monkeypatch):
    import socket

    pytest.importorskip("requests")
    monkeypatch.setenv("NINSWEEP_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("NINSWEEP_REQUEST_TIMEOUT", "1")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        assert main(["jobs", "list", "--address", f"http://127.0.0.1:{port}"]) == 2
    err = one_line_error(capsys)
    assert f"cannot reach the Ray dashboard at http://127.0.0.1:{port}" in err
    assert "timed out" in err.lower()


@needs_mounts
def test_unreachable_cloud_storage_gives_up_within_the_bound(tmp_path):
    # No network at all (a fresh network namespace): gs:// used to retry for 15 minutes.
    import subprocess
    import sys

    from ray_support import ROOT, cli_env

    env = dict(cli_env(tmp_path), NINSWEEP_STORAGE_TIMEOUT="2", NINSWEEP_CACHE_DIR=str(tmp_path))
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "ninsweep", "status",
                           "gs://ninsweep-no-such-bucket/exp"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 2, done.stderr
    assert_one_line(done.stderr.strip(), "gs://ninsweep-no-such-bucket/exp: cannot")


@pytest.mark.ray
@pytest.mark.slow
@needs_netns
@needs_mounts
def test_run_on_a_full_storage_stops_in_one_line_and_leaves_nothing(tmp_path):
    """The whole path with Ray: the lock (an empty file) still fits, Ray starts, the manifest
    does not fit: one line, Ray shut down, no partial manifest, no empty experiment folder."""
    seed = tmp_path / "seed"
    make_experiment(seed, [{"seed": 0}], name="earlier")
    before = relative_snapshot(seed)
    status, err, after = on_mount(tmp_path, ["run", "smoke", "--max-epochs", "1", "--storage",
                                             "{mnt}", "--name", "full"], seed=seed, fill=True)
    assert status == 2
    # Ray's own start-up warnings come first; ours is the one line that ends it.
    assert "Traceback" not in err
    assert_one_line(err.splitlines()[-1], "ninsweep.json: cannot write the manifest",
                    "No space left on device")
    assert relative_snapshot(after) == before and not (after / "full").exists()


def _state_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("state-epoch-*.pt")}


@pytest.mark.ray
@pytest.mark.slow
@needs_netns
@needs_mounts
def test_a_storage_that_fills_mid_sweep_stops_in_one_line_and_resumes(tmp_path):
    """Issue 23: a tmpfs with room for two of the sweep's checkpoints. The sweep stops at the
    first one that does not fit: one line (the storage, the space free and needed), no
    traceback, nothing cut short where resume would trust it; on a larger storage resume
    ends the sweep with each epoch once and no checkpointed epoch trained again."""
    import json
    import re
    import zipfile

    from ray_support import FAULT_SPACE

    args = ["run", str(FAULT_SPACE), "--set", "train.epochs=3", "--storage", "{mnt}",
            "--name", "full"]
    status, err, after = on_mount(tmp_path / "first", args, size_kb=20_000)
    mount = tmp_path / "first" / "mnt"
    assert status == 75, err
    assert "Traceback" not in err
    assert re.fullmatch(
        rf"ninsweep: error: {mount}: no space left on device \(the [\d.]+ MiB checkpoint of "
        rf"epoch \d did not fit in {mount}/full/(elu|relu)-bn-he-s0\); [\d.]+ (B|KiB|MiB) "
        r"free, the rest of the sweep needs about [\d.]+ MiB more \(\d+ checkpoints of "
        r"[\d.]+ MiB\); the sweep stopped, every finished epoch kept: free space, then "
        rf"continue with: ninsweep resume {mount}/full", err.splitlines()[-1]), err
    states = _state_files(after)
    assert states, "no checkpoint fitted: the mount is too small for this test"
    for name in states:  # every state on storage is whole: no cut-off or empty file
        assert zipfile.is_zipfile(after / name), name
    checkpointed = {}
    for name in states:
        trial, epoch = name.split("/")[1], int(name[-8:-3])
        checkpointed[trial] = max(checkpointed.get(trial, 0), epoch)

    status, err, final = on_mount(tmp_path / "second", ["resume", "{mnt}/full"], seed=after,
                                  size_kb=200_000)
    assert status == 0, err
    stdout = (tmp_path / "second" / "stdout").read_text()
    assert "2/2 trials finished, 0 errored" in stdout
    for trial in ("elu-bn-he-s0", "relu-bn-he-s0"):
        lines = (final / "full" / trial / "result.json").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3], trial
        if trial in checkpointed:
            log = (final / "full" / trial / "trial.log").read_text()
            assert f"resumed after epoch {checkpointed[trial]}" in log, log
    for name in _state_files(final):
        assert zipfile.is_zipfile(final / name), name


@needs_mounts
def test_train_on_a_full_disk_says_no_space_in_one_line_and_leaves_nothing(tmp_path):
    """torch.save calls a full disk "unexpected pos"; the line says what it is."""
    args = ["train", "--data", "synthetic", "--set", "data.synthetic_train_size=128",
            "--set", "data.synthetic_test_size=64", "--set", "data.synthetic_image_size=16",
            "--epochs", "1", "--checkpoint-dir", "{mnt}/ck"]
    status, err, after = on_mount(tmp_path, args, size_kb=3000)
    assert status == 2
    assert_one_line(err, f"{tmp_path}/mnt/ck/checkpoint.pt: cannot write the checkpoint "
                    "([Errno 28] No space left on device); the previous checkpoint is unchanged")
    assert list((after / "ck").iterdir()) == []  # no temporary file left either
