"""sweep.out_of_space and its parts: a full storage noticed, the sweep stopped, one line said.

The whole path with Ray, on a real tmpfs that fills up mid-sweep, is
tests/sweep/test_faults.py::test_a_storage_that_fills_mid_sweep_stops_in_one_line_and_resumes.
"""

import errno
import io
import signal

import pytest

from ninsweep.console import Console
from ninsweep.errors import StorageFull
from ninsweep.fmt import size_text
from ninsweep.space.loader import load_space, resolve_space_path
from ninsweep.storage import free_bytes, is_out_of_space, list_states, says_out_of_space
from ninsweep.sweep.checkpoints import remove_partial_state
from ninsweep.sweep.out_of_space import WATCH, cut_short_lines, space_needed, storage_full_line
from ninsweep.sweep.progress import SweepProgress


@pytest.fixture(autouse=True)
def fresh_watch():
    WATCH.reset()
    yield
    WATCH.reset()


def test_a_full_disk_is_recognised_through_the_wrappers_that_carry_it():
    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    # pyarrow raises a plain OSError whose text keeps the errno; Ray wraps it again.
    assert is_out_of_space(OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28]"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("upload failed") from inner
    except RuntimeError as outer:
        assert is_out_of_space(outer)
    assert is_out_of_space(StorageFull(errno.ENOSPC, "the checkpoint did not fit"))
    assert not is_out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not is_out_of_space(ValueError("batch larger than the data"))
    assert says_out_of_space("ninsweep.errors.StorageFull: [Errno 28] the checkpoint did not fit")
    assert not says_out_of_space("ValueError: bad batch")


def test_sizes_read_as_a_person_writes_them():
    assert [size_text(n) for n in (0, 1023, 2048, 7_800_000, 5 << 30)] == [
        "0 B", "1023 B", "2.0 KiB", "7.4 MiB", "5.0 GiB"]


def test_free_space_is_asked_of_the_nearest_existing_directory(tmp_path):
    assert free_bytes(str(tmp_path / "not" / "yet")) == free_bytes(str(tmp_path)) > 0
    assert free_bytes("s3://bucket/exp") is None


def write_state(trial_dir, checkpoint, epoch, size):
    directory = trial_dir / checkpoint
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"state-epoch-{epoch:05d}.pt"
    path.write_bytes(b"x" * size)
    return path


def test_what_a_failed_upload_cut_short_is_removed_and_nothing_else(tmp_path):
    trial = tmp_path / "relu-s0"
    older = write_state(trial, "checkpoint_000000", 1, 100)
    cut = write_state(trial, "checkpoint_000001", 2, 40)  # the upload of 100 bytes stopped
    assert remove_partial_state(str(trial), 2, 100) == ["checkpoint_000001/state-epoch-00002.pt"]
    assert not cut.exists() and not cut.parent.exists()  # an empty checkpoint dir goes too
    assert older.read_bytes() == b"x" * 100
    whole = write_state(trial, "checkpoint_000001", 2, 100)
    (trial / "checkpoint_000001" / ".metadata.json").write_text("{}")
    assert remove_partial_state(str(trial), 2, 100) == []  # whole: left for loading to check
    assert whole.exists()
    whole.write_bytes(b"x" * 10)
    assert remove_partial_state(str(trial), 2, 100) == ["checkpoint_000001/state-epoch-00002.pt"]
    assert (trial / "checkpoint_000001" / ".metadata.json").exists()  # not ours: kept
    assert [s.label for s in list_states(str(trial))] == ["checkpoint_000000/state-epoch-00001.pt"]


def test_a_history_cut_short_loses_its_unfinished_line_only(tmp_path):
    trial = tmp_path / "relu-s0"
    trial.mkdir()
    (trial / "result.json").write_bytes(b'{"epoch": 1}\n{"epoch": 2}\n{"epo')
    (trial / "progress.csv").write_bytes(b"epoch,test_acc\n1,0.5\n")
    assert cut_short_lines(str(trial)) == ["result.json"]
    assert (trial / "result.json").read_bytes() == b'{"epoch": 1}\n{"epoch": 2}\n'
    assert (trial / "progress.csv").read_bytes() == b"epoch,test_acc\n1,0.5\n"
    (trial / "progress.csv").write_bytes(b"epoch,te")  # not even its header whole
    assert cut_short_lines(str(trial)) == ["progress.csv"]
    assert (trial / "progress.csv").read_bytes() == b""
    assert cut_short_lines(str(tmp_path / "no-such-trial")) == []


def smoke():
    return load_space(resolve_space_path("smoke"))


def test_the_space_still_needed_counts_the_checkpoints_each_trial_keeps(tmp_path):
    spec = smoke()  # a checkpoint every epoch, the latest 2 kept
    assert spec.checkpoint.every == 1 and spec.checkpoint.keep == 2
    epochs, trials = spec.trials[0].config.train.epochs, len(spec.trials)
    experiment = tmp_path / "exp"
    assert space_needed(str(experiment), spec) is None  # no state yet: no size known
    first, second = spec.trials[0].name, spec.trials[1].name
    write_state(experiment / first, "checkpoint_000000", epochs - 1, 1000)
    write_state(experiment / first, "checkpoint_000001", epochs, 1000)  # ended, both kept
    write_state(experiment / second, "checkpoint_000000", 1, 1200)
    # The others need 2 each, the second 1 more; 2 at once write one more before deleting.
    assert space_needed(str(experiment), spec, running=2) == ((trials - 2) * 2 + 1 + 2, 1200)


def test_the_line_names_the_storage_the_free_space_and_the_space_needed(tmp_path):
    spec = smoke()
    needed = (len(spec.trials) - 1) * 2 + 1 + 2
    experiment = tmp_path / "exp"
    write_state(experiment / spec.trials[0].name, "checkpoint_000000", 1, 3 << 20)
    WATCH.report(str(experiment / spec.trials[1].name),
                 "ninsweep.errors.StorageFull: [Errno 28] the 3.0 MiB checkpoint of epoch 1 "
                 f"did not fit in {experiment / spec.trials[1].name}")
    line = storage_full_line(str(experiment), spec, running=2)
    assert line == (
        f"{tmp_path}: no space left on device (the 3.0 MiB checkpoint of epoch 1 did not fit "
        f"in {experiment / spec.trials[1].name}); {size_text(free_bytes(str(tmp_path)))} free, "
        f"the rest of the sweep needs about {size_text(needed * (3 << 20))} more ({needed} "
        "checkpoints of 3.0 MiB); the sweep stopped, every finished epoch kept: free space, "
        f"then continue with: ninsweep resume {experiment}")
    assert "\n" not in line


def test_the_line_names_a_full_disk_outside_the_experiment_instead(tmp_path):
    spec = smoke()
    WATCH.report("/var/cache/ninsweep/x.pt", "[Errno 28] No space left on device")
    line = storage_full_line(str(tmp_path / "exp"), spec)
    assert line.startswith("/var/cache/ninsweep/x.pt: no space left on device ([Errno 28] No ")


class FakeTrial:
    class Metadata:
        num_failures = 1

    def __init__(self, tmp_path, error):
        self.config = {"trial": {"name": "relu-s0"}}
        self.status = "PENDING"
        self.last_result = {}
        self.path = str(tmp_path / "relu-s0")
        self.error_file = str(tmp_path / "error.txt")
        self.run_metadata = self.Metadata()
        (tmp_path / "error.txt").write_text(f"Failure # 1\nTraceback ...\n{error}\n")

    @property
    def num_failures(self):
        return self.run_metadata.num_failures


@pytest.fixture
def sigint_calls():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGINT, previous)


def test_a_trial_on_a_full_storage_stops_the_sweep_once_and_keeps_its_retry(tmp_path,
                                                                          sigint_calls):
    out = io.StringIO()
    progress = SweepProgress(Console(out, io.StringIO()), {"relu-s0": 2, "elu-s0": 2})
    trial = FakeTrial(tmp_path, "ninsweep.errors.StorageFull: [Errno 28] the 7.4 MiB "
                                "checkpoint of epoch 1 did not fit in /mnt/exp/relu-s0")
    progress.on_trial_recover(0, [trial], trial)
    assert trial.num_failures == 0  # the full disk was not the trial's attempt
    assert "failed (attempt" not in out.getvalue()
    assert out.getvalue().rstrip().endswith("relu-s0: its storage is full; stopping the sweep")
    assert sigint_calls == [signal.SIGINT]  # Tune's Ctrl-C handler, in a real sweep
    assert WATCH.shortage.detail == "the 7.4 MiB checkpoint of epoch 1 did not fit in " \
                                    "/mnt/exp/relu-s0"
    progress.on_step_end(0, [trial])
    assert sigint_calls == [signal.SIGINT]  # once


def test_a_full_driver_log_stops_the_sweep_at_the_next_step(tmp_path, sigint_calls):
    out = io.StringIO()
    progress = SweepProgress(Console(out, io.StringIO()), {"relu-s0": 2})
    progress.on_step_end(0, [])
    assert sigint_calls == []
    WATCH.report("/mnt/exp/driver.log", "No space left on device")  # from the log's thread
    progress.on_step_end(0, [])
    assert sigint_calls == [signal.SIGINT]
    assert "/mnt/exp/driver.log: no space left; stopping the sweep" in out.getvalue()


def test_other_failures_are_retried_as_before(tmp_path, sigint_calls):
    out = io.StringIO()
    progress = SweepProgress(Console(out, io.StringIO()), {"relu-s0": 2})
    trial = FakeTrial(tmp_path, "RuntimeError: CUDA error: an illegal memory access")
    progress.on_trial_recover(0, [trial], trial)
    assert trial.num_failures == 1 and sigint_calls == [] and WATCH.shortage is None
    assert "relu-s0: failed (attempt 1: RuntimeError: CUDA error" in out.getvalue()
