"""A trial's checkpoints on storage: the newest one that loads, and local staging directories.

Tune writes each checkpoint the trainable reports into ``<trial dir>/checkpoint_NNNNNN/`` and
remembers, in its experiment snapshot, the ones it has registered. A driver killed between a
checkpoint's upload and the next snapshot leaves newer checkpoints on storage than Tune knows
of, so resuming from Tune's registered checkpoint retrains epochs. The trainable therefore
looks at storage itself (``storage.list_states``, then :func:`load_newest`): every state file
of every ``checkpoint_*`` directory, newest epoch first, falling back past damaged ones.

The state file is named after its epoch (``state-epoch-00004.pt``). Tune's checkpoint counter
comes from its snapshot too, so after a resume it may write into a ``checkpoint_*`` directory
that already holds an older state: distinct names mean nothing on storage is ever overwritten,
and the newest epoch is known from a listing, without loading anything.

No Ray here; ``ninsweep status`` reads the same listing (``storage.newest_checkpointed_epoch``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from pyarrow.fs import FileSelector

from ninsweep.core.checkpoint import load_checkpoint
from ninsweep.errors import CheckpointError, NinsweepError
from ninsweep.experiment_dir import CHECKPOINT_FILE, state_file_epoch
from ninsweep.fmt import reason
from ninsweep.locations import is_uri
from ninsweep.storage import StoredState, filesystem, list_states

STAGING_PREFIX = "ninsweep-ckpt-"
_STAGING_LOCK = ".in-use"
# A staging directory without its lock file is another process's, just being created; only
# one this old is left over from a process killed in that instant.
_UNLOCKED_STAGING_AGE_S = 3600.0


@dataclass
class Restored:
    state: Optional[dict[str, Any]]  # None: nothing loadable
    source: Optional[StoredState]
    skipped: list[tuple[StoredState, str]]  # (damaged state, why)

    def describe(self, trial_name: str) -> str:
        """The one line a trial prints about where it continues from."""
        skipped = "; ".join(f"{s.label}: {why}" for s, why in self.skipped)
        if self.state is None:
            note = f" (no checkpoint loads: skipped {skipped})" if skipped else ""
            return f"{trial_name}: starting at epoch 1{note}"
        note = f" (skipped damaged {skipped})" if skipped else ""
        return f"{trial_name}: resumed after epoch {self.state['epoch']} from {self.source.label}{note}"


def load_newest(trial_dir: Optional[str], states: list[StoredState],
                apply: Callable[[dict[str, Any]], None],
                load: Callable[[str], dict[str, Any]], staging: Path) -> Restored:
    """Apply the newest of ``states`` (from :func:`list_states`) that loads and fits,
    trying older ones after it.

    ``load(local_path)`` reads a state file (``train.load_checkpoint``) and ``apply(state)``
    hands it to the trainer; both raise ``CheckpointError`` for a damaged or unfitting file.
    Files of a remote ``trial_dir`` are copied into ``staging`` first; None means the paths
    are local.
    """
    skipped = []
    for stored in states:
        try:
            local = _local_copy(trial_dir, stored, staging)
            state = load(local)
            apply(state)
        except CheckpointError as err:
            # The message starts with the (local) path; the label names the file already.
            why = str(err).removeprefix(f"{local}: ")
            skipped.append((stored, why if len(why) <= 100 else why[:97] + "..."))
            continue
        except OSError as err:  # deleted while we looked, a storage hiccup
            skipped.append((stored, f"cannot read ({reason(err)})"))
            continue
        return Restored(state, stored, skipped)
    return Restored(None, None, skipped)


def restore_newest(trainer: Any, trial_dir: Optional[str], staging: Path, name: str,
                   rebuild: Callable[[], Any], registered: Any = None,
                   notes: Optional[list[str]] = None) -> Any:
    """``trainer`` continued from the newest state that loads; one line printed when any exists.

    The states are those on storage under ``trial_dir``; Tune's ``registered`` checkpoint (a
    ``ray.tune.Checkpoint``: only its ``as_directory()`` is used) is the fallback when storage
    cannot be listed or lists none (it is one of the listed ones otherwise). When states exist
    and none loads, a state that failed half-way through ``load_state_dict`` may have changed
    the model: the run starts again from ``rebuild()``. A fall-back past damaged states also
    goes into ``notes``, for the console (``sweep.progress``).
    """
    if trial_dir is not None:
        try:
            states = list_states(trial_dir)
        except (OSError, NinsweepError) as err:
            print(f"{name}: cannot list its checkpoints ({err}); trying Tune's latest")
        else:
            if states:
                return _continue(trainer, trial_dir, states, staging, name, rebuild, notes)
    if registered is None:
        return trainer
    with registered.as_directory() as directory:
        states = [StoredState(Path(directory).name, str(path), state_file_epoch(path.name))
                  for path in Path(directory).iterdir()
                  if state_file_epoch(path.name) is not None or path.name == CHECKPOINT_FILE]
        states.sort(key=lambda s: s.epoch or 0, reverse=True)
        return _continue(trainer, None, states, staging, name, rebuild, notes)


def _continue(trainer: Any, trial_dir: Optional[str], states: list[StoredState], staging: Path,
              name: str, rebuild: Callable[[], Any], notes: Optional[list[str]]) -> Any:
    if not states:
        return trainer
    restored = load_newest(trial_dir, states, trainer.load_state_dict, load_checkpoint, staging)
    print(restored.describe(name), flush=True)
    if restored.skipped and notes is not None:
        notes.append(restored.describe(name))
    return trainer if restored.state is not None else rebuild()


def _local_copy(trial_dir: Optional[str], stored: StoredState, staging: Path) -> str:
    if trial_dir is None or not is_uri(trial_dir):
        return stored.path
    fs, _ = filesystem(trial_dir)
    target = staging / stored.path.rsplit("/", 1)[-1]
    with fs.open_input_stream(stored.path) as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)
    return str(target)


def remove_partial_state(trial_dir: str, epoch: int, complete_size: int) -> list[str]:
    """Delete the copies of ``epoch``'s state under ``trial_dir`` that a failed upload left
    shorter or longer than the ``complete_size`` bytes staged locally (a full disk cuts them
    short), and their checkpoint directory when nothing else is in it; return what went.

    A resume would otherwise try the cut-off copy first and fall back past it with a warning.
    A copy of the full size is left alone: the upload got that far, and loading checks it.
    """
    removed = []
    try:
        fs, _ = filesystem(trial_dir)
        for stored in list_states(trial_dir):
            if stored.epoch != epoch or stored.size == complete_size:
                continue
            fs.delete_file(stored.path)
            removed.append(stored.label)
            directory = stored.path.rsplit("/", 1)[0]
            if not fs.get_file_info(FileSelector(directory, allow_not_found=True)):
                fs.delete_dir(directory)
    except OSError:
        pass  # nothing more to do here: load_newest still skips a copy that does not load
    return removed


# -- staging directories in the local temp dir ---------------------------------------------

@contextlib.contextmanager
def staging_directory() -> Iterator[Path]:
    """A private temp directory, removed on exit, and by :func:`remove_stale_staging` in a
    later process when this one is killed (SIGKILL skips every ``finally``).

    The directory holds a lock file this process keeps locked; a lock that can be taken
    belongs to a dead process (the kernel drops the locks of a killed one), in any PID
    namespace that shares the temp dir.
    """
    path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    lock = open(path / _STAGING_LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        content = path / "content"  # apart from the lock: Tune uploads a whole directory
        content.mkdir()
        yield content
    finally:
        lock.close()
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_staging(temp_dir: Optional[str] = None) -> list[Path]:
    """Remove the staging directories of killed processes; return what was removed."""
    removed = []
    root = Path(temp_dir or tempfile.gettempdir())
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(STAGING_PREFIX)]
    except OSError:
        return removed
    for path in candidates:
        try:
            if _is_abandoned(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue  # another user's, or gone meanwhile
    return removed


def _is_abandoned(path: Path) -> bool:
    if not path.is_dir() or path.stat().st_uid != os.getuid():
        return False
    lock_path = path / _STAGING_LOCK
    if not lock_path.exists():
        return time.time() - path.stat().st_mtime > _UNLOCKED_STAGING_AGE_S
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its process is alive
        return True
