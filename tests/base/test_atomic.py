"""ninsweep.atomic.write_atomic: the old file or the whole new one, never half, no litter.

The same rule on a real full disk and a read-only mount is tested end to end in
test_faults.py (export, report, train's checkpoint, the manifest)."""

import os

import pytest

from ninsweep.atomic import write_atomic, write_output
from ninsweep.errors import NinsweepError


def test_bytes_text_and_a_writer_replace_the_file(tmp_path):
    path = tmp_path / "out.bin"
    write_atomic(path, b"one")
    write_atomic(path, "twö")
    assert path.read_text(encoding="utf-8") == "twö"
    write_atomic(path, lambda stream: stream.write(b"three"))
    assert path.read_bytes() == b"three"
    assert os.stat(path).st_mode & 0o777 == 0o644  # not the temporary file's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_writer_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"old state")

    def half_then_fail(stream):
        stream.write(b"half of the new st")
        stream.flush()
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError, match="disk went away"):
        write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old state"
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_exclusive_never_replaces_an_existing_file(tmp_path):
    path = tmp_path / "ninsweep.json"
    write_atomic(path, "{}", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(path, '{"format": 2}', exclusive=True)
    assert path.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["ninsweep.json"]


def test_an_output_that_cannot_be_written_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "no-such-dir" / "results.csv"
    with pytest.raises(NinsweepError, match=r"results.csv: cannot write: No such file") as err:
        write_output(missing, "a,b\n")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "no-such-dir").exists()


def test_a_write_that_torch_reports_without_its_cause_raises_the_os_error(tmp_path):
    """torch.save turns a full disk into "RuntimeError: ... unexpected pos" that names no
    cause; write_atomic raises the OSError the write met. A file-size limit stands in for the
    full disk here (EFBIG instead of ENOSPC), in a child process so the limit stays there."""
    import subprocess
    import sys

    script = f"""
import errno, resource, signal
import torch
from ninsweep.atomic import write_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the limit as an error, not a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    write_atomic({str(tmp_path / "state.pt")!r},
                 lambda stream: torch.save({{"w": torch.zeros(100_000)}}, stream))
except OSError as err:
    print("OSError", errno.errorcode[err.errno], type(err.__cause__).__name__)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "OSError EFBIG RuntimeError", done.stderr
    assert list(tmp_path.iterdir()) == []  # nor a temporary file left
