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
