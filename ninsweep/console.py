"""What reaches the user's terminal: ninsweep's own lines, and nothing of Ray's.

Two pieces, used by the CLI, the sweep driver and the trial workers (the text itself,
durations and tables, is formatted by ``ninsweep.fmt``):

- ``Console``: where our lines go. Timestamped progress lines (dropped by ``--quiet``), errors
  (always), and plain text blocks such as the final tables (always). On a terminal it is a
  ``rich`` console, so a live progress bar can stay below the lines; elsewhere it writes plain
  text and never an escape sequence.
- ``output_to_file``: points the process's stdout and stderr file descriptors at a log file
  for a while. The driver wraps its whole Ray session in it (Ray's warnings, Tune's banners
  and the C++ core's messages all write to fd 1/2), and each trial wraps its run in it (its
  prints, Ray's worker logging, library warnings), so the log files in the experiment hold
  all of that and the console holds only our lines.

Diagnostics that are not part of the user interface go through ``logging.getLogger("ninsweep")``
(``LOG``), so a library user can route them; the CLI sends them to the console's stderr.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, TextIO

from .fmt import clock, first_line
from .storage import is_uri

LOG = logging.getLogger("ninsweep")

DRIVER_LOG = "driver.log"  # in the experiment directory: the Ray session of each run/resume
TRIAL_LOG = "trial.log"  # in each trial directory: the trial's own output and Ray's worker logs


def is_terminal(stream: TextIO) -> bool:
    """An interactive terminal that takes escape sequences (not ``TERM=dumb``). ``NO_COLOR``
    keeps the bar but drops colours."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def _own_copy(stream: TextIO) -> TextIO:
    """A stream on a duplicate of ``stream``'s file descriptor, so that it keeps reaching the
    terminal while ``output_to_file`` points fd 1/2 elsewhere. Streams without a descriptor
    (a test's StringIO, pytest's capture) are used as they are."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return stream
    stream.flush()
    return os.fdopen(os.dup(descriptor), "w", buffering=1,
                     encoding=getattr(stream, "encoding", None) or "utf-8", errors="replace")


class Console:
    """ninsweep's own output. ``quiet`` keeps errors and text blocks, drops progress lines."""

    def __init__(self, out: Optional[TextIO] = None, err: Optional[TextIO] = None,
                 quiet: bool = False):
        self.out = _own_copy(out if out is not None else sys.stdout)
        self.err = _own_copy(err if err is not None else sys.stderr)
        self.quiet = quiet
        self.terminal = is_terminal(self.out)
        self.rich = None
        if self.terminal:
            from rich.console import Console as RichConsole

            self.rich = RichConsole(file=self.out, highlight=False, markup=False,
                                    soft_wrap=True, no_color="NO_COLOR" in os.environ)

    def line(self, message: str) -> None:
        """A timestamped progress line (not under ``--quiet``)."""
        if not self.quiet:
            self._write(f"[{time.strftime('%H:%M:%S')}] {message}")

    def text(self, text: str = "") -> None:
        """A block printed as it is: the final tables, the closing summary."""
        self._write(text)

    def error(self, message: str) -> None:
        """A problem the user must see, even under ``--quiet``."""
        if self.rich is not None and is_terminal(self.err):
            # Both on the terminal: through rich, so a live progress bar stays whole.
            self.rich.print(message)
            return
        print(message, file=self.err, flush=True)

    def _write(self, text: str) -> None:
        if self.rich is not None:
            # Through rich, so that lines land above a live progress bar instead of through it.
            self.rich.print(text)
        else:
            print(text, file=self.out, flush=True)


@contextlib.contextmanager
def output_to_file(path: os.PathLike | str, header: Optional[str] = None) -> Iterator[Path]:
    """Point this process's stdout and stderr descriptors (and so every Python stream, logging
    handler and C++ logger writing to them) at ``path``, appending, until the block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = [os.dup(1), os.dup(2)]
    try:
        if header:
            os.write(target, f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {header}\n".encode())
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield path
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, target):
            os.close(descriptor)


class DriverLog:
    """The driver's Ray session output, kept in ``<experiment>/driver.log``.

    Entered before Ray starts, it points fd 1/2 at a temporary file, because the experiment
    directory must not exist before its manifest (a refused run leaves nothing behind);
    ``move_into`` then carries what was written so far into the experiment's ``driver.log``
    and writes there from then on. On remote storage the log stays local while the sweep runs
    and is uploaded as ``driver-<time>.log`` at the end. ``path`` is where it is now.
    """

    def __init__(self, header: str):
        import tempfile

        descriptor, name = tempfile.mkstemp(prefix="ninsweep-driver-", suffix=".log")
        os.close(descriptor)
        self.path = name
        self.header = header
        self._temporary: Optional[Path] = Path(name)
        self._remote: Optional[str] = None
        self._redirect: Optional[contextlib.AbstractContextManager] = None

    def __enter__(self) -> "DriverLog":
        self._redirect = output_to_file(self.path, header=self.header)
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
        with open(target, "ab") as log, open(self._temporary, "rb") as early:
            log.write(early.read())
        self._temporary.unlink(missing_ok=True)
        self._temporary = None
        self.path = str(target)
        self._redirect = output_to_file(self.path)
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
                from .storage import filesystem, join

                target = join(self._remote, f"driver-{time.strftime('%Y%m%d-%H%M%S')}.log")
                fs, path = filesystem(target)
                with fs.open_output_stream(path) as stream:
                    stream.write(self._temporary.read_bytes())
                self._temporary.unlink(missing_ok=True)
                self.path = target
            except Exception as err:  # the sweep's outcome matters more than its log's upload
                LOG.warning("could not upload the driver log %s to %s: %s", self._temporary,
                            self._remote, first_line(err, 200))


class StepProgress:
    """Progress within an epoch, for ``ninsweep train`` (a ``Trainer`` step callback): a bar
    on a terminal, taken down when the epoch's training steps end; elsewhere a plain line
    every ``every_s`` seconds."""

    def __init__(self, console: Console, epoch_of, every_s: float = 30.0):
        self.console = console
        self.epoch_of = epoch_of  # () -> the epoch being trained, 1-based
        self.every_s = every_s
        self._bar = None
        self._task = None
        self._epoch_started = 0.0
        self._last_line = 0.0

    def __call__(self, step: int, steps: int) -> None:
        now = time.monotonic()
        if step == 1:
            self._epoch_started = self._last_line = now
            if self.console.rich is not None:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)

                self._bar = Progress(TextColumn(f"epoch {self.epoch_of()}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("steps"),
                                     TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=self.console.rich, transient=True)
                self._task = self._bar.add_task("epoch", total=steps)
                self._bar.start()
        if self._bar is not None:
            self._bar.update(self._task, completed=step)
        elif now - self._last_line >= self.every_s and step < steps:
            self._last_line = now
            self.console.line(f"epoch {self.epoch_of()}: step {step}/{steps} "
                              f"({100 * step / steps:.0f}%), {clock(now - self._epoch_started)}")
        if step == steps:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def route_logging(stream: TextIO, level: int = logging.WARNING) -> None:
    """Send ninsweep's diagnostics (``LOG``) at ``level`` and above to ``stream``.

    Only the CLI calls this: a library user configures logging as they like.
    """
    for handler in [h for h in LOG.handlers if getattr(h, "_ninsweep_console", False)]:
        LOG.removeHandler(handler)  # the newest console wins (run/resume make their own)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("ninsweep: %(levelname)s: %(message)s"))
    handler._ninsweep_console = True  # type: ignore[attr-defined]
    LOG.addHandler(handler)
    LOG.setLevel(level)
    LOG.propagate = False


def with_trial_log(trainable, experiment: str):
    """``trainable`` with its process output sent to ``<experiment>/<trial>/trial.log``.

    Runs inside the trial's worker: ``log_to_driver=False`` keeps worker output off the
    driver's console, and this keeps it in the experiment instead of Ray's session folder. On
    remote storage (s3://, gs://) the log goes to the trial's working directory, which Tune
    uploads into the trial directory with its artifacts.
    """
    import functools

    from .space import TRIAL_KEY

    remote = is_uri(experiment)

    @functools.wraps(trainable)
    def run_with_log(config):
        name = config[TRIAL_KEY]["name"]
        target = Path(TRIAL_LOG) if remote else Path(experiment, name, TRIAL_LOG)
        with output_to_file(target, header=f"trial {name}, pid {os.getpid()}"):
            return trainable(config)

    return run_with_log
