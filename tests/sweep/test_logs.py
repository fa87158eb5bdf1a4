"""sweep.logs: Ray's output kept in the experiment's driver.log and trial.log."""

import os
import subprocess
import sys

from ninsweep.sweep.logs import DriverLog


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
