"""sweep.logs: Ray's output kept in the experiment's driver.log and trial.log."""

import errno
import os
import subprocess
import sys
from pathlib import Path

from ninsweep.sweep.logs import DriverLog, LogPump, output_to_file


def test_output_to_file_takes_the_descriptors_of_child_processes_and_loggers_too(tmp_path):
    """What the driver relies on: C++ loggers and subprocesses write to fd 1/2 directly."""
    log = tmp_path / "logs" / "driver.log"
    script = f"""
import logging, os, subprocess, sys
from ninsweep.console import Console
from ninsweep.sweep.logs import output_to_file
console = Console()
handler = logging.StreamHandler(sys.stderr)  # bound before the redirect, as Ray's are
logging.getLogger("ray").addHandler(handler)
with output_to_file({str(log)!r}, header="test"):
    print("python print")
    os.write(2, b"raw fd 2\\n")
    subprocess.run(["echo", "child process"])
    logging.getLogger("ray").warning("ray logger")
    console.line("our line")
print("after the block")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[0].endswith("] our line")
    assert result.stdout.splitlines()[1] == "after the block"
    text = log.read_text()
    for line in ("test", "python print", "raw fd 2", "child process", "ray logger"):
        assert line in text
    assert "our line" not in text and "after the block" not in text


def test_driver_log_moves_into_the_experiment_once_it_exists(tmp_path):
    experiment = tmp_path / "exp"
    with DriverLog("ninsweep run test") as log:
        os.write(1, b"before the manifest\n")
        early = log.path
        experiment.mkdir()
        log.move_into(str(experiment))
        os.write(2, b"after the manifest\n")
    assert not os.path.exists(early)
    assert log.path == str(experiment / "driver.log")
    text = (experiment / "driver.log").read_text()
    assert text.index("before the manifest") < text.index("after the manifest")


def test_a_driver_log_that_never_reached_an_experiment_leaves_nothing_behind():
    with DriverLog("ninsweep run refused") as log:
        pass  # e.g. the experiment already exists: refused before Ray starts
    assert not os.path.exists(log.path)


def test_a_full_log_disk_costs_lines_not_an_error_in_whoever_printed(tmp_path):
    """Tune's callbacks print: an OSError from a print into a full driver.log ended the
    sweep with tracebacks. /dev/full refuses every write with ENOSPC."""
    lost = []
    with output_to_file("/dev/full", on_lost=lambda path, err: lost.append((path, err.errno))):
        for _ in range(3):  # what print() and Ray's loggers come to: writes to fd 1 and 2
            os.write(1, b"a line Tune prints\n")
            os.write(2, b"a warning\n")
        subprocess.run(["echo", "a child process"], check=True)
    assert lost == [("/dev/full", errno.ENOSPC)]  # told once per gap, not per line


def test_the_first_write_after_a_gap_says_how_much_is_missing(tmp_path):
    pump = LogPump(Path("/dev/full"))
    try:
        pump.write(b"lost line\n")
        assert pump.lost == len(b"lost line\n")
        # Space again (someone freed it): the same descriptor now reaches a file.
        target = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(target, pump._file)
        os.close(target)
        pump.write(b"next line\n")
        assert pump.lost == 0
    finally:
        pump.close()
    assert (tmp_path / "log").read_text() == (
        "\n[ninsweep: 10 bytes of output lost here: No space left on device]\nnext line\n")
