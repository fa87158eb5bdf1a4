"""Atomic writes of local files: a reader sees the old file or the whole new one, never half.

Every local file ninsweep writes as a whole (checkpoints, the data cache, the manifest, the
CSVs and the report) goes through ``write_atomic``: the content goes to a temporary file in
the target's directory (same filesystem, so the rename is atomic), is flushed and fsynced,
then renamed over the target. Whatever fails on the way (a full disk, a read-only mount, a
writer that raises) leaves the old file as it was and no temporary file behind, and the error
goes up as it was raised, for the caller to word. Remote storage (s3://, gs://) is written
through ``storage.filesystem``'s output streams, which publish an object only when closed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

from ninsweep.errors import NinsweepError
from ninsweep.fmt import reason

Content = Union[bytes, str, Callable[[BinaryIO], object]]


def write_atomic(path: os.PathLike | str, content: Content, *, exclusive: bool = False,
                 mode: int = 0o644, sync: bool = True) -> Path:
    """Write ``content`` to ``path`` atomically; return the path.

    ``content``: bytes, text (UTF-8), or a function that writes into the open binary stream
    it is given (``lambda stream: torch.save(state, stream)``). ``exclusive``: never replace
    an existing file (``FileExistsError`` instead; the new file appears by a hard link, which
    fails when the name is taken). ``mode``: the file's permissions (a temporary file starts
    private). ``sync``: fsync before the rename, so a crash of the machine cannot leave an
    empty file under the name (off only for caches that are fetched again). Raises what the
    write raised (``OSError``, or the writer's own error).
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            if callable(content):
                recording = _RecordedWrites(stream)
                try:
                    content(recording)
                except Exception as err:
                    if recording.error is None or isinstance(err, OSError):
                        raise
                    raise recording.error from err
            else:
                stream.write(content.encode("utf-8") if isinstance(content, str) else content)
            stream.flush()
            if sync:
                os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        if exclusive:
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)  # gone after a replace; the spare name after a link or a failure
    return path


class _RecordedWrites:
    """The stream a writer function writes to, remembering the ``OSError`` a write raised:
    ``torch.save`` turns a full disk into ``RuntimeError: ... unexpected pos`` that names no
    cause, and the caller must be able to say "No space left on device"."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._stream.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def write_output(path: os.PathLike | str, content: Content) -> Path:
    """``write_atomic`` for a command's output file (``export``, ``report``): a failed write
    is a one-line ``NinsweepError`` naming the file."""
    try:
        return write_atomic(path, content)
    except OSError as err:  # disk full, quota, read-only: the old file is intact
        raise NinsweepError(f"{path}: cannot write: {reason(err)}") from None
