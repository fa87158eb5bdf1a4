"""What reaches the user's terminal: ninsweep's own lines, and nothing of Ray's.

``Console`` is where our lines go, for the CLI and the sweep driver: timestamped progress
lines (dropped by ``--quiet``), errors (always), and plain text blocks such as the final tables
(always). On a terminal it is a ``rich`` console, so a live progress bar can stay below the
lines; elsewhere it writes plain text and never an escape sequence. ``epoch_line`` is the one
way an epoch's numbers are written; ``StepProgress`` shows progress within an epoch of
``ninsweep train``. The text itself (durations, tables) is ``ninsweep.fmt``'s; Ray's output
goes to the experiment's log files (``sweep.logs``).

Diagnostics that are not part of the user interface go through ``logging.getLogger("ninsweep")``
(``LOG``), so a library user can route them; the CLI sends them to the console's stderr.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
import warnings
from typing import Any, Mapping, Optional, TextIO

from ninsweep.errors import NinsweepWarning
from ninsweep.fmt import clock
from ninsweep.metrics import (
    EPOCH,
    EPOCH_TIME_S,
    IMAGES_PER_S,
    LR,
    REPLAYED,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
)

LOG = logging.getLogger("ninsweep")


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
            # rich costs ~0.1 s to import, 40% of `run --dry-run`: only on a terminal.
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


def epoch_line(result: Mapping[str, Any], epochs: Any, width: int = 0) -> str:
    """One epoch's numbers, as ``train`` and a sweep's progress both print them:
    ``epoch 3/10  train loss 1.2345 acc  55.10%  test loss ... acc ...  lr 0.1  12.3 s
    210 img/s``; a number the record lacks reads ``-``. ``width`` pads the epoch (``train``
    aligns its lines; a sweep's interleave trials and are not padded)."""

    def number(key: str, spec: str, scale: float = 1.0) -> str:
        value = result.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "-"
        return format(scale * value, spec)

    line = (f"epoch {result.get(EPOCH, 0):>{width}}/{epochs}  "
            f"train loss {number(TRAIN_LOSS, '.4f')} acc {number(TRAIN_ACC, '6.2f', 100)}%  "
            f"test loss {number(TEST_LOSS, '.4f')} acc {number(TEST_ACC, '6.2f', 100)}%  "
            f"lr {number(LR, '.4g')}  {number(EPOCH_TIME_S, '6.1f')} s  "
            f"{number(IMAGES_PER_S, '6.0f')} img/s")
    return line + ("  (from its checkpoint)" if result.get(REPLAYED) else "")


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
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )

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
    # ninsweep's own warnings (a damaged file read around) as one line of ours, not Python's
    # "file:line: UserWarning: ..." with a line of ninsweep's source; others as Python's.
    shown = getattr(warnings.showwarning, "_ninsweep_default", warnings.showwarning)

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, NinsweepWarning):
            LOG.warning("%s", message)
        else:
            shown(message, category, filename, lineno, file, line)

    show._ninsweep_default = shown  # type: ignore[attr-defined]
    warnings.showwarning = show


