"""Ray's output, kept in the experiment's log files instead of on the console.

``output_to_file`` points the process's stdout and stderr file descriptors at a log file for
a while. The driver wraps its whole Ray session in it (``DriverLog``: Ray's warnings, Tune's
banners and the C++ core's messages all write to fd 1/2), and each trial wraps its run in it
(``with_trial_log``: its prints, Ray's worker logging, library warnings), so the log files in
the experiment (``driver.log``, ``<trial>/trial.log``) hold all of that and the console holds
only our lines.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from ninsweep.console import LOG
from ninsweep.experiment_dir import DRIVER_LOG, TRIAL_LOG
from ninsweep.fmt import first_line, reason
from ninsweep.locations import is_uri, join
from ninsweep.space.schema import TRIAL_KEY
from ninsweep.storage import filesystem
from ninsweep.sweep.out_of_space import WATCH


@contextlib.contextmanager
def output_to_file(path: os.PathLike | str, header: Optional[str] = None,
                   on_lost: Optional[Callable[[str, OSError], None]] = None) -> Iterator[Path]:
    """Point this process's stdout and stderr descriptors (and so every Python stream, logging
    handler and C++ logger writing to them) at ``path``, appending, until the block ends.

    The descriptors point at a pipe that a thread copies into the file (``LogPump``): a full
    disk costs the log its lines (``on_lost(path, error)`` is told, once per gap), never an
    ``OSError`` in whoever printed (Tune's callbacks print; they would end the sweep).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pump = LogPump(path, on_lost)
    saved = [os.dup(1), os.dup(2)]
    try:
        if header:
            pump.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {header}\n".encode())
        os.dup2(pump.input, 1)
        os.dup2(pump.input, 2)
        yield path
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)
        pump.close()


class LogPump:
    """A pipe whose bytes a thread appends to a log file, dropping (and counting) what the
    file system refuses; the first write after a gap says how much is missing there."""

    # How long close() waits for the copy to drain: a child process that inherited the pipe
    # (and outlives the block) would keep it open for ever.
    CLOSE_WAIT_S = 2.0

    def __init__(self, path: Path, on_lost: Optional[Callable[[str, OSError], None]] = None):
        self.path = path
        self.on_lost = on_lost
        self.lost = 0  # bytes dropped since the last successful write
        self._why = ""
        self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._output, self.input = os.pipe()
        self._thread = threading.Thread(target=self._copy, name="ninsweep-log", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        try:
            while chunk := os.read(self._output, 1 << 16):
                self.write(chunk)
        finally:
            os.close(self._output)
            os.close(self._file)

    def write(self, data: bytes) -> None:
        if self.lost:
            note = f"\n[ninsweep: {self.lost} bytes of output lost here: {self._why}]\n"
            if not self._write_all(note.encode()):
                self.lost += len(data)
                return
            self.lost = 0
        if not self._write_all(data):
            self.lost += len(data)

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._file, view):]
            except OSError as err:
                if not self.lost and self.on_lost is not None:
                    with contextlib.suppress(Exception):
                        self.on_lost(str(self.path), err)
                self._why = reason(err)
                return False
        return True

    def close(self) -> None:
        os.close(self.input)
        self._thread.join(self.CLOSE_WAIT_S)


class DriverLog:
    """The driver's Ray session output, kept in ``<experiment>/driver.log``.

    Entered before Ray starts, it points fd 1/2 at a temporary file, because the experiment
    directory must not exist before its manifest (a refused run leaves nothing behind);
    ``move_into`` then carries what was written so far into the experiment's ``driver.log``
    and writes there from then on. On remote storage the log stays local while the sweep runs
    and is uploaded as ``driver-<time>.log`` at the end. ``path`` is where it is now.
    """

    def __init__(self, header: str):
        descriptor, name = tempfile.mkstemp(prefix="ninsweep-driver-", suffix=".log")
        os.close(descriptor)
        self.path = name
        self.header = header
        self._temporary: Optional[Path] = Path(name)
        self._remote: Optional[str] = None
        self._redirect: Optional[contextlib.AbstractContextManager] = None

    def __enter__(self) -> "DriverLog":
        self._redirect = output_to_file(self.path, header=self.header, on_lost=WATCH.report)
        self._redirect.__enter__()
        return self

    def move_into(self, experiment: str) -> None:
        if self._temporary is None:
            return
        if is_uri(experiment):
            self._remote = experiment
            return
        target = Path(experiment, DRIVER_LOG)
        self._redirect.__exit__(None, None, None)
        try:
            with open(target, "ab") as log, open(self._temporary, "rb") as early:
                log.write(early.read())
        except OSError as err:  # the storage is full already: the log loses its start
            WATCH.report(target, reason(err))
        self._temporary.unlink(missing_ok=True)
        self._temporary = None
        self.path = str(target)
        self._redirect = output_to_file(self.path, on_lost=WATCH.report)
        self._redirect.__enter__()

    def __exit__(self, *exc_info) -> None:
        self._redirect.__exit__(None, None, None)
        if self._remote is None and self._temporary is not None:
            # Stopped before the experiment existed (bad input, no cluster): keep the log
            # only if Ray wrote something into it.
            with contextlib.suppress(OSError):
                if self._temporary.read_text(errors="replace").count("\n") <= 1:
                    self._temporary.unlink()
                else:
                    LOG.warning("Ray's output before the failure is in %s", self._temporary)
            return
        if self._remote is not None and self._temporary is not None:
            try:
                target = join(self._remote, f"driver-{time.strftime('%Y%m%d-%H%M%S')}.log")
                fs, path = filesystem(target)
                with fs.open_output_stream(path) as stream:
                    stream.write(self._temporary.read_bytes())
                self._temporary.unlink(missing_ok=True)
                self.path = target
            except Exception as err:  # the sweep's outcome matters more than its log's upload
                LOG.warning("could not upload the driver log %s to %s: %s", self._temporary,
                            self._remote, first_line(err, 200))


def with_trial_log(trainable, experiment: str):
    """``trainable`` with its process output sent to ``<experiment>/<trial>/trial.log``.

    Runs inside the trial's worker: ``log_to_driver=False`` keeps worker output off the
    driver's console, and this keeps it in the experiment instead of Ray's session folder. On
    remote storage (s3://, gs://) the log goes to the trial's working directory, which Tune
    uploads into the trial directory with its artifacts.
    """
    remote = is_uri(experiment)

    @functools.wraps(trainable)
    def run_with_log(config):
        name = config[TRIAL_KEY]["name"]
        target = Path(TRIAL_LOG) if remote else Path(experiment, name, TRIAL_LOG)
        with output_to_file(target, header=f"trial {name}, pid {os.getpid()}"):
            return trainable(config)

    return run_with_log
