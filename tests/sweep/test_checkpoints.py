"""A trial's checkpoints on storage: the newest state that loads, remote storage, staging
directories of killed processes (sweep.checkpoints, storage.list_states)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from analysis_fixtures import make_experiment

from ninsweep.cli import main
from ninsweep.config import TrialConfig
from ninsweep.core.checkpoint import load_checkpoint, save_checkpoint
from ninsweep.core.train import Trainer
from ninsweep.experiment_dir import state_file_name
from ninsweep.storage import list_states
from ninsweep.sweep.checkpoints import load_newest, remove_stale_staging, staging_directory


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


def test_checkpoints_on_remote_storage_are_listed_and_fetched(tmp_path, tiny_states,
                                                              monkeypatch):
    """s3:// and gs:// trial directories: listed through pyarrow, states copied into the
    staging directory to load (served here from a local folder, as in test_analysis)."""
    import pyarrow.fs

    from ninsweep import storage
    from ninsweep.sweep import checkpoints

    bucket = tmp_path / "bucket"
    save_checkpoint(tiny_states[0], bucket / "trial" / "checkpoint_000000" / state_file_name(1))
    save_checkpoint(tiny_states[1], bucket / "trial" / "checkpoint_000001" / state_file_name(2))
    newest = bucket / "trial" / "checkpoint_000001" / state_file_name(2)
    newest.write_bytes(newest.read_bytes()[:3000])

    def filesystem(location):
        assert location.startswith("s3://bucket")
        return pyarrow.fs.LocalFileSystem(), str(bucket) + location[len("s3://bucket"):]

    monkeypatch.setattr(checkpoints, "filesystem", filesystem)
    monkeypatch.setattr(storage, "filesystem", filesystem)
    states = list_states("s3://bucket/trial")
    assert [s.epoch for s in states] == [2, 1]
    trainer = Trainer(_tiny_config())
    with staging_directory() as staging:
        restored = load_newest("s3://bucket/trial", states, trainer.load_state_dict,
                               load_checkpoint, staging)
        assert sorted(p.name for p in staging.iterdir()) == [state_file_name(1), state_file_name(2)]
    assert trainer.epoch == 1 and [s.epoch for s, _ in restored.skipped] == [2]
    assert not staging.exists()
    assert list_states("s3://bucket/missing") == []


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


def test_staging_directories_of_killed_processes_are_removed(tmp_path):
    """A trial killed while it stages a checkpoint (SIGKILL skips every finally) leaves its
    staging directory; the next trial on the machine removes it, and only it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""\
            import sys, time
            from ninsweep.sweep.checkpoints import staging_directory
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
