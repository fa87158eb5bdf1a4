"""A storage that fills up while a sweep runs: noticed, stopped, and said in one line.

Whatever write finds no space tells ``WATCH``: a trial whose checkpoint does not fit
(``errors.StorageFull``, raised by the trainable after it deleted what was cut short), the
driver's log (``sweep.logs.LogPump``). The progress callback then stops the sweep the way
Ctrl-C does (Tune's own SIGINT handler: it saves what it can and ends its trials), so no
finished epoch is lost: each lives in a checkpoint that was written whole, and a resume
replays into ``result.json`` what Tune's last snapshot missed. ``storage_full_line`` is the
line the command ends with: where, how much is free, about how much the rest needs.

Tune's own files (``result.json``, the experiment snapshots) are written on the driver's
local disk and copied to storage in the background; a copy the disk cut short is repaired or
set aside by ``resume`` (``runner.set_aside_unreadable_snapshots``, ``cut_short_lines``).
"""

from __future__ import annotations

import os
import re
import signal
import threading
from dataclasses import dataclass
from typing import Optional

from ninsweep.experiment_dir import PROGRESS_FILE, RESULT_FILE
from ninsweep.fmt import size_text
from ninsweep.locations import is_uri, join, local_path
from ninsweep.space.schema import SweepSpec
from ninsweep.storage import free_bytes, list_states, says_out_of_space

_STORAGE_FULL_PREFIX = re.compile(r"^(ninsweep\.errors\.)?StorageFull: (\[Errno \d+\] )?")


@dataclass(frozen=True)
class Shortage:
    where: str  # the file or directory whose write found no space
    detail: str  # the error, in a line


class SpaceWatch:
    """The first write of this process that found no space; thread-safe (the log pump
    reports from its own thread)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.shortage: Optional[Shortage] = None
        self._stopping = False

    def report(self, where: str, detail: object) -> None:
        # A trial's StorageFull reads "ninsweep.errors.StorageFull: [Errno 28] <what>".
        detail = _STORAGE_FULL_PREFIX.sub("", " ".join(str(detail).split()))
        with self._lock:
            if self.shortage is None:
                self.shortage = Shortage(str(where), detail)

    def report_text(self, where: str, text: str) -> bool:
        """Report ``text`` (a trial's error line) if it is a full disk; say whether it was."""
        if not says_out_of_space(text):
            return False
        self.report(where, text)
        return True

    def stop_sweep(self) -> None:
        """End the running Tune loop as Ctrl-C does, once (called on the driver's main
        thread, from a Tune callback)."""
        if self.shortage is None or self._stopping:
            return
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            self._stopping = True
            handler(signal.SIGINT, None)

    def reset(self) -> None:
        with self._lock:
            self.shortage = None
            self._stopping = False


WATCH = SpaceWatch()


def storage_full_line(experiment: str, spec: SweepSpec, running: int = 1) -> str:
    """The line a sweep stopped by a full storage ends with (``WATCH`` has its shortage)."""
    shortage = WATCH.shortage
    where = shortage.where if shortage else experiment
    root = local_path(experiment).rstrip("/")
    inside = not is_uri(experiment) and (local_path(where) + "/").startswith(root + "/")
    storage = os.path.dirname(local_path(experiment).rstrip("/")) if inside else where
    free = free_bytes(storage)
    # The estimate is of the experiment's checkpoints; a temp or cache directory's need is
    # the file that did not fit.
    need = space_needed(experiment, spec, running) if inside else None
    text = f"{storage}: no space left on device"
    if shortage is not None:
        text += f" ({shortage.detail})"
    space = [f"{size_text(free)} free"] if free is not None else []
    if need is not None:
        count, size = need
        space.append(f"the rest of the sweep needs about {size_text(count * size)} more "
                     f"({count} checkpoints of {size_text(size)})")
    if space:
        text += f"; {', '.join(space)}"
    return (f"{text}; the sweep stopped, every finished epoch kept: free space, then "
            f"continue with: ninsweep resume {experiment}")


def space_needed(experiment: str, spec: SweepSpec, running: int = 1) -> Optional[tuple[int, int]]:
    """(checkpoints still to be stored, bytes each) for the trials of ``spec`` to end as
    configured, from the state files on storage; None when no state file tells the size.

    A trial keeps ``checkpoint.keep`` of its checkpoints (all when unset); it writes one every
    ``checkpoint.every`` epochs and at its last. Tune writes a new checkpoint before it
    deletes the oldest, so each trial running at once needs one more at its peak.
    """
    sizes, missing = [], 0
    for trial in spec.trials:
        try:
            states = list_states(join(experiment, trial.name))
        except OSError:
            states = []
        sizes.extend(s.size for s in states if s.size)
        train = trial.config.train
        newest = max((s.epoch or 0 for s in states), default=0)
        if newest >= train.epochs:
            continue  # ended: what it keeps is on storage
        every = spec.checkpoint.every
        written = train.epochs // every + (train.epochs % every != 0)
        kept = min(written, spec.checkpoint.keep) if spec.checkpoint.keep else written
        missing += max(0, kept - len(states))
    if not sizes:
        return None
    if missing:
        missing += max(1, running)
    return missing, max(sizes)


def cut_short_lines(trial_dir: str) -> list[str]:
    """Cut the last, unfinished line off a trial's ``result.json`` and ``progress.csv``
    (a copy to storage that the disk cut short); return the names of the files repaired.

    Tune appends to both after a resume: the next record would run on from the cut-off one.
    Whole lines are kept; an epoch whose line went is replayed from its checkpoint.
    """
    repaired = []
    if is_uri(trial_dir):
        return repaired
    for name in (RESULT_FILE, PROGRESS_FILE):
        path = os.path.join(local_path(trial_dir), name)
        try:
            with open(path, "rb+") as stream:
                data = stream.read()
                if not data or data.endswith(b"\n"):
                    continue
                stream.truncate(data.rfind(b"\n") + 1)
            repaired.append(name)
        except OSError:
            continue
    return repaired
