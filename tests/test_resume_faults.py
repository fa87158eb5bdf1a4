"""Resume that loses no work, and faults that end in one line (issue 9, resume half).

Without Ray: the pre-flight checks of a space's trials, finding the newest checkpoint that
loads (falling back past damaged ones), ``status`` showing checkpointed progress, and the
removal of killed processes' staging directories.

With Ray (inside tests/run.sh's loopback namespace): the driver SIGKILLed after checkpoints
Tune's snapshot has not registered, then checkpoints truncated and deleted; SIGKILL before
the first report, SIGTERM, a deleted trial directory; a trial whose data cannot be decoded.
Every check is on what is on disk afterwards: which epochs each trial trained, and when.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ninsweep import metrics as M
from ninsweep.checkpoints import (list_states, load_newest, remove_stale_staging,
                                  staging_directory, state_file_name)
from ninsweep.cli import main
from ninsweep.config import TrialConfig
from ninsweep.errors import ConfigError
from ninsweep.space import load_space
from ninsweep.train import Trainer, load_checkpoint, save_checkpoint

from ray_support import (SPACES, cli_env, needs_netns, ninsweep, reported_records,
                         start_ninsweep, wait_until)

try:
    from .analysis_fixtures import make_experiment
except ImportError:
    from analysis_fixtures import make_experiment

FAULT_SPACE = SPACES / "fault.yaml"  # two trials, 6 epochs, a checkpoint every epoch, keep 2
TRIALS = ("elu-bn-he-s0", "relu-bn-he-s0")
EPOCHS = 6


def _space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _synthetic_space(tmp_path: Path, extra: str) -> Path:
    """Two trials on 100 synthetic images; ``extra`` (YAML) replaces whole sections."""
    import yaml

    space = {"name": "preflight", "grid": [{"activation": ["elu", "relu"]}],
             "data": {"source": "synthetic", "synthetic_train_size": 100,
                      "synthetic_test_size": 20},
             "train": {"epochs": 1, "batch_size": 32}}
    space.update(yaml.safe_load(extra))
    return _space(tmp_path, yaml.safe_dump(space))


def _write_images(root: Path, classes: dict[str, int], size: int = 16) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (size, size), (index * 20 % 255, 40, 90)).save(folder / f"{index}.png")


# -- pre-flight: before Ray starts ----------------------------------------------------------

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
    ("train: {epochs: 1, device: cuda}\n", "train.device: 'cuda' but each trial gets no GPU"),
])
def test_preflight_refuses_trials_that_cannot_run_before_ray_starts(tmp_path, capsys, extra,
                                                                    problem):
    import ray

    space = _synthetic_space(tmp_path, extra)
    storage = tmp_path / "results"
    assert main(["run", str(space), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err
    assert problem in err and "trial elu-nobn-keras-s0" in err and "(and 1 more trials)" in err
    assert not ray.is_initialized() and not storage.exists()
    assert main(["run", str(space), "--dry-run"]) == 2  # the dry run checks the same
    assert problem in capsys.readouterr().err


def test_preflight_counts_an_image_folder_without_decoding_it(tmp_path, capsys):
    root = tmp_path / "images"
    _write_images(root, {"cat": 3, "dog": 2})
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")  # counted, not decoded
    space = _space(tmp_path, f"""\
        name: folder
        grid:
          - activation: [relu]
        data: {{source: imagefolder, root: {root}}}
        model: {{num_classes: 2}}
        train: {{epochs: 1, batch_size: 8}}
        """)
    assert main(["run", str(space), "--dry-run"]) == 2
    assert "train.batch_size: 8 is larger than the training set (6 images)" in capsys.readouterr().err
    three = _space(tmp_path, space.read_text().replace("num_classes: 2", "num_classes: 3")
                   .replace("batch_size: 8", "batch_size: 4"), "three.yaml")
    assert main(["run", str(three), "--dry-run"]) == 2
    assert "model.num_classes: 3 but the imagefolder data has 2 classes" in capsys.readouterr().err
    fits = _space(tmp_path, space.read_text().replace("batch_size: 8", "batch_size: 4"), "ok.yaml")
    assert main(["run", str(fits), "--dry-run"]) == 0


def test_resume_runs_the_preflight_on_the_manifest_before_ray(tmp_path, capsys):
    import ray

    from ninsweep.storage import write_manifest

    spec = load_space(_synthetic_space(tmp_path, "train: {epochs: 1, device: cuda}\n"))
    experiment = tmp_path / "results" / "preflight"
    write_manifest(str(experiment), spec.to_manifest())
    assert main(["resume", str(experiment)]) == 2
    assert "train.device: 'cuda' but each trial gets no GPU" in capsys.readouterr().err
    assert not ray.is_initialized()
    assert sorted(p.name for p in experiment.iterdir()) == ["ninsweep.json"]


def test_preflight_accepts_the_shipped_spaces():
    from ninsweep.preflight import check_trials

    for path in sorted((SPACES.parent.parent / "search_spaces").glob("*.yaml")):
        check_trials(load_space(path))
    check_trials(load_space(FAULT_SPACE))


# -- the newest checkpoint that loads -------------------------------------------------------

def _tiny_config(epochs: int = 3) -> TrialConfig:
    return TrialConfig.from_dict({
        "data": {"source": "synthetic", "synthetic_train_size": 64, "synthetic_test_size": 32,
                 "synthetic_image_size": 16},
        "train": {"epochs": epochs, "batch_size": 32, "threads": 1}})


@pytest.fixture(scope="module")
def tiny_states(tmp_path_factory):
    """The states of a tiny run after epochs 1, 2 and 3."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ.setdefault("NINSWEEP_CACHE_DIR", str(cache))
    states = []
    Trainer(_tiny_config()).fit(lambda result, trainer: states.append(trainer.state_dict()))
    return states


def test_newest_loadable_state_wins_whatever_its_directory(tmp_path, tiny_states):
    """Tune's counter, restored from a stale snapshot, can put a newer state into an older
    checkpoint directory: the epoch in the file name orders them, not the directory."""
    trial_dir = tmp_path / "trial"
    save_checkpoint(tiny_states[0], trial_dir / "checkpoint_000000" / state_file_name(1))
    save_checkpoint(tiny_states[2], trial_dir / "checkpoint_000001" / state_file_name(3))
    save_checkpoint(tiny_states[1], trial_dir / "checkpoint_000002" / state_file_name(2))
    (trial_dir / "checkpoint_000003").mkdir()  # a placeholder for a deleted one: no state
    assert [s.epoch for s in list_states(str(trial_dir))] == [3, 2, 1]

    trainer = Trainer(_tiny_config())
    restored = load_newest(str(trial_dir), list_states(str(trial_dir)), trainer.load_state_dict,
                           load_checkpoint, tmp_path)
    assert trainer.epoch == 3 and restored.source.checkpoint_dir == "checkpoint_000001"
    assert restored.describe("t") == "t: resumed after epoch 3 from checkpoint_000001/state-epoch-00003.pt"


def test_damaged_newest_states_fall_back_to_an_older_intact_one(tmp_path, tiny_states):
    trial_dir = tmp_path / "trial"
    for epoch, state in enumerate(tiny_states, start=1):
        save_checkpoint(state, trial_dir / f"checkpoint_{epoch - 1:06d}" / state_file_name(epoch))
    newest = trial_dir / "checkpoint_000002" / state_file_name(3)
    newest.write_bytes(newest.read_bytes()[:4096])  # a node died mid-write
    other = Trainer(_tiny_config()).state_dict()
    other["config"]["model"]["activation"] = "elu"  # not this trial's architecture
    save_checkpoint(other, trial_dir / "checkpoint_000001" / state_file_name(2))
    intact = (trial_dir / "checkpoint_000000" / state_file_name(1)).read_bytes()

    trainer = Trainer(_tiny_config())
    restored = load_newest(str(trial_dir), list_states(str(trial_dir)), trainer.load_state_dict,
                           load_checkpoint, tmp_path)
    assert trainer.epoch == 1 and [s.epoch for s, _ in restored.skipped] == [3, 2]
    line = restored.describe("t")
    assert line.startswith("t: resumed after epoch 1 from checkpoint_000000/state-epoch-00001.pt "
                           "(skipped damaged checkpoint_000002/state-epoch-00003.pt: unreadable")
    assert "different architecture" in line and "\n" not in line
    assert (trial_dir / "checkpoint_000000" / state_file_name(1)).read_bytes() == intact

    nothing = load_newest(str(trial_dir), [s for s in list_states(str(trial_dir)) if s.epoch > 1],
                          Trainer(_tiny_config()).load_state_dict, load_checkpoint, tmp_path)
    assert nothing.state is None and nothing.describe("t").startswith("t: starting at epoch 1 (")


def test_status_shows_checkpointed_progress_beyond_result_json(tmp_path, tiny_states, capsys):
    exp = make_experiment(tmp_path, [{"activation": "elu", "epochs": 5, "done": 2},
                                     {"activation": "relu", "epochs": 5, "done": 2}])
    save_checkpoint(tiny_states[2], exp / "elu-s0" / "checkpoint_000002" / state_file_name(3))
    save_checkpoint(tiny_states[1], exp / "relu-s0" / "checkpoint_000001" / state_file_name(2))
    assert main(["status", str(exp)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("elu-s0")))
    assert "2/5" in lines[at]
    assert lines[at + 1].strip().startswith("checkpointed through epoch 3/5")
    relu = lines.index(next(line for line in lines if line.startswith("relu-s0")))
    assert relu + 1 == len(lines) or "checkpointed" not in lines[relu + 1]


# -- staging directories of killed processes --------------------------------------------------

def test_staging_directories_of_killed_processes_are_removed(tmp_path):
    """A trial killed while it stages a checkpoint (SIGKILL skips every finally) leaves its
    staging directory; the next trial on the machine removes it, and only it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""\
            import sys, time
            from ninsweep.checkpoints import staging_directory
            with staging_directory() as directory:
                (directory / "state-epoch-00001.pt").write_bytes(b"x" * 100000)
                print(directory.parent, flush=True)
                time.sleep(600)
            """)],
        env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE, text=True)
    killed = Path(holder.stdout.readline().strip())
    assert killed.is_dir() and killed.parent == tmp_path
    assert remove_stale_staging(str(tmp_path)) == []  # alive: left alone
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    with staging_directory() as mine:
        pass
    assert not mine.exists()  # removed on a normal exit
    os.environ["TMPDIR"] = str(tmp_path)
    try:
        import tempfile

        tempfile.tempdir = None
        with staging_directory() as live:
            assert remove_stale_staging(str(tmp_path)) == [killed]
            assert live.is_dir() and not killed.exists()
    finally:
        del os.environ["TMPDIR"]
        tempfile.tempdir = None
