"""Experiments on storage: a local path, or a URI that pyarrow understands (s3://, gs://).

Every storage question that touches a file system is answered here (how a location is
written, ``is_uri`` and ``join``, is ``ninsweep.locations``'s): whether a local path is on
storage every node of a cluster shares (``check_storage_for_cluster``, from the mounts in
/proc/mounts), the few file operations ninsweep does around what Ray Tune writes (the
manifest, the lock, existence checks), and the state files of a trial's checkpoints
(``list_states``: the trainable resumes from them, ``status`` reports them).
``fetch_experiment`` copies a remote experiment's results so the analysis, which reads a
local directory, works on it too.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow.fs

from ninsweep.atomic import write_atomic
from ninsweep.errors import NinsweepError
from ninsweep.experiment_dir import (
    CHECKPOINT_DIR_PREFIX,
    CHECKPOINT_FILE,
    EXTENSION_RE,
    LOCK_FILE,
    MANIFEST_FILE,
    state_file_epoch,
)
from ninsweep.fmt import first_line, reason
from ninsweep.locations import is_uri, join, local_path
from ninsweep.waits import storage_timeout

SHARED_STORAGE_ENV = "NINSWEEP_SHARED_STORAGE"  # 1: every node mounts --storage from shared storage
# Filesystem types whose files every node of a cluster sees (checked in /proc/mounts).
SHARED_FS_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "glusterfs",
    "beegfs", "fuse", "fuseblk",
})
# FUSE filesystems that are node-local although their type starts with "fuse.".
LOCAL_FUSE_TYPES = frozenset({
    "fuse.fuse-overlayfs", "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "fuse.snapfuse",
    "fuse.appimagefuse", "fuse.squashfuse", "fuse.encfs", "fuse.gocryptfs", "fuse.bindfs",
    "fuse.vmhgfs-fuse", "fuse.xdg-document-portal",
})
_TRUE = {"1", "true", "yes", "on"}


# -- running out of space ------------------------------------------------------------------

OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How the errors read once they are text (a trial's error.txt, a Ray task's traceback).
_OUT_OF_SPACE_TEXT = re.compile(r"\[Errno (28|122)\]|No space left on device|Disk quota exceeded",
                                re.IGNORECASE)


def is_out_of_space(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from, is a full disk or an exceeded quota
    (pyarrow's and Ray's wrappers keep the errno, or at least its words)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in OUT_OF_SPACE_ERRNOS:
            return True
        if _OUT_OF_SPACE_TEXT.search(str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False


def says_out_of_space(text: str) -> bool:
    """Whether an error's text (the last line of a trial's error.txt) is a full disk."""
    return bool(_OUT_OF_SPACE_TEXT.search(text or ""))


def free_bytes(location: str) -> Optional[int]:
    """The bytes free for this user where ``location`` (or its nearest existing parent) lives;
    None on remote storage or when it cannot be asked."""
    if is_uri(location):
        return None
    path = Path(local_path(location))
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _reason(err: BaseException) -> str:
    """The first line of a storage library's error, cut short: cloud SDKs write paragraphs."""
    return first_line(err, 240)


def filesystem(location: str):
    if is_uri(location):
        try:
            scheme, _, rest = location.partition("://")
            if scheme in ("gs", "gcs") and "?" not in rest:
                # pyarrow's GCS client retries transient errors for 15 minutes by default
                # (an unreachable endpoint looks transient): bound it. S3's client already
                # gives up after a few seconds (AWS SDK connect/request timeouts, 3 tries).
                limit = datetime.timedelta(seconds=max(1.0, storage_timeout()))
                return pyarrow.fs.GcsFileSystem(retry_time_limit=limit), rest
            return pyarrow.fs.FileSystem.from_uri(location)
        except (ValueError, OSError) as err:  # unknown scheme, no credentials, ...
            raise NinsweepError(f"{location}: cannot open ({_reason(err)})") from None
    return pyarrow.fs.LocalFileSystem(), location


def experiment_exists(experiment: str) -> bool:
    if not is_uri(experiment):
        path = Path(experiment)
        return path.exists() and (not path.is_dir() or any(
            entry.name != LOCK_FILE for entry in path.iterdir()))
    fs, path = filesystem(experiment)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def write_text(location: str, text: str, *, exclusive: bool = False) -> None:
    """Write a small text file of an experiment, local (atomically; ``exclusive``: never
    over an existing one) or remote (one object, whole or absent). Raises ``OSError``
    (``FileExistsError`` for an existing local file with ``exclusive``)."""
    if is_uri(location):
        fs, path = filesystem(location)
        with fs.open_output_stream(path) as stream:
            stream.write(text.encode())
        return
    write_atomic(location, text, exclusive=exclusive)


def write_manifest(experiment: str, manifest: dict[str, Any]) -> None:
    """Write ``ninsweep.json`` once; an existing one is never replaced.

    A write that fails (disk full, read-only, quota) leaves no partial manifest and raises a
    one-line ``NinsweepError``.
    """
    text = json.dumps(manifest, indent=2, sort_keys=True)
    target = join(experiment, MANIFEST_FILE)
    try:
        if not is_uri(experiment):
            Path(experiment).mkdir(parents=True, exist_ok=True)
        write_text(target, text, exclusive=True)  # never overwrite
    except FileExistsError:
        raise NinsweepError(f"{target} already exists: another run made this experiment; "
                            "choose another --name") from None
    except OSError as err:
        reason_text = _reason(err) if is_uri(experiment) else reason(err)
        raise NinsweepError(f"{target}: cannot write the manifest ({reason_text})") from None


@contextlib.contextmanager
def experiment_lock(experiment: str, create: bool = True) -> Iterator[None]:
    """Hold ``<experiment>/.ninsweep.lock`` while a run or resume writes the experiment.

    Two runs of one name at the same moment: the first takes the lock, the second is
    refused in one line (no waiting). ``flock`` locks die with their process, so a killed
    run never leaves a stale lock. ``create``: make the experiment directory (a new run);
    without it a missing directory is left to the caller's own error. Also the first write
    to ``--storage``: a storage that is a file, read-only or full fails here, before Ray
    starts. URIs (s3://, gs://) have no lock.
    """
    if is_uri(experiment) or (not create and not Path(experiment).is_dir()):
        yield
        return
    directory = Path(experiment)
    for parent in (directory, *directory.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NinsweepError(f"{parent}: is a file, not a directory (check --storage "
                                    "and --name)")
            break
    made = not directory.exists()
    lock_path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise NinsweepError(f"{directory}: cannot write the experiment here "
                            f"({reason(err)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Another process may have removed the file between our open and our lock.
            held = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except (BlockingIOError, FileNotFoundError):
            held = False
        if not held:
            raise NinsweepError(f"{experiment}: another ninsweep run or resume is writing this "
                                "experiment right now; wait for it, or choose another --name")
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
            if made:  # refused before anything was written: leave no empty directory
                with contextlib.suppress(OSError):
                    directory.rmdir()
    finally:
        os.close(fd)


def read_manifest(experiment: str) -> dict[str, Any]:
    target = join(experiment, MANIFEST_FILE)
    try:
        if is_uri(experiment):
            fs, path = filesystem(target)
            with fs.open_input_stream(path) as stream:
                text = stream.read().decode("utf-8")
        else:
            text = Path(target).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NinsweepError(f"{experiment}: not a ninsweep experiment (no {MANIFEST_FILE})") from None
    except NotADirectoryError:
        raise NinsweepError(f"{experiment}: not a directory (expected an experiment directory)") from None
    except UnicodeDecodeError as err:
        raise NinsweepError(f"{target}: corrupt manifest (not UTF-8 text: {err.reason} at "
                            f"byte {err.start})") from None
    except OSError as err:
        raise NinsweepError(f"{target}: cannot read ({reason(err)})") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise NinsweepError(f"{target}: corrupt manifest "
                            f"({err if isinstance(err, ValueError) else 'nested too deeply'})") from None


def read_extensions(experiment: str) -> list[dict[str, Any]]:
    """``ninsweep extend``'s files of an experiment, oldest first (``[]``: never extended)."""
    found = []
    for name in file_names(experiment):
        match = EXTENSION_RE.fullmatch(name)
        if match:
            found.append((int(match.group(1)), name))
    out = []
    for _, name in sorted(found):
        data = read_bytes(join(experiment, name))
        try:
            record = json.loads(data or b"")
        except ValueError as err:
            raise NinsweepError(f"{join(experiment, name)}: not valid JSON ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("trials"), list):
            raise NinsweepError(f"{join(experiment, name)}: expected an object with a trials list")
        out.append(record)
    return out


def read_bytes(location: str) -> Optional[bytes]:
    """A file's bytes, local or remote; None when there is no such file."""
    try:
        if is_uri(location):
            fs, path = filesystem(location)
            with fs.open_input_stream(path) as stream:
                return stream.read()
        return Path(location).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise NinsweepError(f"{location}: cannot read ({reason(err)})") from None


def fetch_experiment(uri: str, destination: Optional[os.PathLike | str] = None) -> Path:
    """Copy a remote experiment's results (not its checkpoints) into a local directory.

    The default destination is ``$NINSWEEP_CACHE_DIR`` (or ``~/.cache/ninsweep``)
    ``/experiments/<the URI as a name>``; files there are refreshed on every call.
    """
    if destination is None:
        cache = os.environ.get("NINSWEEP_CACHE_DIR") or "~/.cache/ninsweep/cache"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", uri).strip("-")
        destination = Path(cache).expanduser() / "experiments" / slug
    destination = Path(destination)
    remote, root = filesystem(uri)
    root = root.rstrip("/")
    try:
        entries = remote.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        raise NinsweepError(f"{uri}: no such experiment") from None
    except OSError as err:
        raise NinsweepError(f"{uri}: cannot list ({_reason(err)})") from None
    for entry in entries:
        relative = entry.path[len(root):].lstrip("/")
        # Checkpoints are large and the analysis never reads them.
        if entry.type != pyarrow.fs.FileType.File or any(
                part.startswith(CHECKPOINT_DIR_PREFIX) for part in relative.split("/")):
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with remote.open_input_stream(entry.path) as source:
            data = source.read()
        write_atomic(target, data, sync=False)  # a cache: fetched again if lost
    return destination


def path_exists(location: str) -> bool:
    """Whether a file or directory exists at a path or URI."""
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def file_names(directory: str) -> list[str]:
    """The names of the files (not directories) directly in ``directory``, sorted; none when
    it does not exist. Raises ``NinsweepError`` when storage cannot be listed."""
    fs, root = filesystem(directory)
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(root.rstrip("/"), allow_not_found=True))
    except NotADirectoryError:
        return []
    except OSError as err:
        raise NinsweepError(f"{directory}: cannot list ({reason(err)})") from None
    return sorted(e.path.rstrip("/").rsplit("/", 1)[-1] for e in entries
                  if e.type == pyarrow.fs.FileType.File)


def move(source: str, target: str) -> None:
    """Rename a file on the same storage (a path or URI); nothing is copied or deleted."""
    fs, source_path = filesystem(source)
    try:
        fs.move(source_path, filesystem(target)[1])
    except OSError as err:
        raise NinsweepError(f"{source}: cannot rename to {target} ({reason(err)})") from None


def make_dirs(location: str) -> None:
    """Create a directory (and its parents) at a path or URI."""
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)


# -- the state files of a trial's checkpoints ------------------------------------------


@dataclass(frozen=True)
class StoredState:
    """One state file on storage. ``epoch`` comes from its name (None: a legacy file)."""

    checkpoint_dir: str  # e.g. checkpoint_000003
    path: str  # as the storage filesystem names it
    epoch: Optional[int]
    size: Optional[int] = None  # bytes, as listed

    @property
    def label(self) -> str:
        return f"{self.checkpoint_dir}/{self.path.rsplit('/', 1)[-1]}"


def list_states(trial_dir: str) -> list[StoredState]:
    """Every state file in ``trial_dir``'s checkpoint directories, newest epoch first.

    Legacy files (epoch unknown until loaded) come last, the highest directory first. A
    trial directory that does not exist has none. Raises ``OSError`` when storage cannot
    be listed.
    """
    fs, root = filesystem(trial_dir)
    root = root.rstrip("/")
    try:
        children = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except NotADirectoryError:
        return []
    states = []
    for child in children:
        name = child.path.rstrip("/").rsplit("/", 1)[-1]
        if child.type != pyarrow.fs.FileType.Directory or not name.startswith(CHECKPOINT_DIR_PREFIX):
            continue
        for entry in fs.get_file_info(pyarrow.fs.FileSelector(child.path, allow_not_found=True)):
            file_name = entry.path.rsplit("/", 1)[-1]
            if entry.type != pyarrow.fs.FileType.File:
                continue
            epoch = state_file_epoch(file_name)
            if epoch is not None:
                states.append(StoredState(name, entry.path, epoch, entry.size))
            elif file_name == CHECKPOINT_FILE:
                states.append(StoredState(name, entry.path, None, entry.size))
    return sorted(states, key=lambda s: (s.epoch is not None, s.epoch or 0, s.checkpoint_dir),
                  reverse=True)


def newest_checkpointed_epoch(trial_dir: os.PathLike | str) -> Optional[int]:
    """The highest epoch a state file on storage is named after (not loaded: a hint for
    ``status``); None when there is none or storage cannot be listed."""
    try:
        epochs = [s.epoch for s in list_states(str(trial_dir)) if s.epoch is not None]
    except (OSError, NinsweepError):
        return None
    return max(epochs, default=None)


# -- shared storage for multi-node runs -------------------------------------------------


def _unescape_mount_field(text: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as \040, \011, \012, \134.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _read_mounts(mounts_file: str) -> list[tuple[str, str, str]]:
    """``(mount point, fs type, source)`` per line of ``mounts_file``, in file order."""
    try:
        text = Path(mounts_file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append((_unescape_mount_field(fields[1]), fields[2],
                           _unescape_mount_field(fields[0])))
    return mounts


def mount_of(path: str, mounts_file: str = "/proc/mounts") -> Optional[tuple[str, str, str]]:
    """The mount ``(point, fs type, source)`` that holds ``path`` (which need not exist yet)."""
    # Symlinks resolved as far as the path exists; a new experiment dir need not exist yet.
    resolved = os.path.realpath(Path(path).expanduser())
    best = None
    for point, fstype, source in _read_mounts(mounts_file):
        inside = resolved == point or point == "/" or resolved.startswith(point.rstrip("/") + "/")
        # The longest mount point wins; among equals the last line (mounted on top) wins.
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fstype, source)
    return best


def is_shared_fs_type(fstype: str) -> bool:
    fstype = fstype.lower()
    if fstype in SHARED_FS_TYPES:
        return True
    return fstype.startswith("fuse.") and fstype not in LOCAL_FUSE_TYPES


def check_storage_for_cluster(storage: Optional[str], multi_node: bool, *,
                              shared: Optional[bool] = None,
                              mounts_file: str = "/proc/mounts") -> Optional[str]:
    """Refuse node-local storage for a run whose trials may land on several nodes.

    Accepted for a multi-node run: a URI with a scheme other than ``file`` (``s3://``,
    ``gs://``, ``abfs://``, ...); a local path when ``shared`` is true or the environment
    variable ``NINSWEEP_SHARED_STORAGE`` is 1/true/yes; a local path on a network
    filesystem according to ``mounts_file`` (nfs, nfs4, cifs, lustre, gpfs, ceph, fuse
    mounts such as s3fs or gcsfuse, ...). A single-node run accepts anything. ``None`` (the
    default local directory) is node-local. Call it on the node that runs the sweep driver:
    /proc/mounts is that machine's. Returns ``storage``; raises ``NinsweepError``.
    """
    if not multi_node:
        return storage
    if storage is None:
        raise NinsweepError(
            "this Ray cluster has several nodes and no --storage was given: the default "
            "results directory is node-local; pass --storage s3://BUCKET/PREFIX or a path "
            "on shared storage (e.g. /mnt/ninsweep/experiments on NFS/EFS)")
    if is_uri(storage):
        return storage
    if shared is None:
        shared = os.environ.get(SHARED_STORAGE_ENV, "").strip().lower() in _TRUE
    if shared:
        return storage
    mount = mount_of(local_path(storage), mounts_file)
    if mount is not None and is_shared_fs_type(mount[1]):
        return storage
    where = (f"on {mount[1]} mount {mount[0]}" if mount is not None
             else "on an unknown filesystem")
    raise NinsweepError(
        f"--storage {storage} is {where}, local to one node, but this Ray cluster has "
        "several nodes: trials restarted on another node would lose their checkpoints; "
        "use s3://... / gs://... or a path on NFS/EFS, or set "
        f"{SHARED_STORAGE_ENV}=1 if every node mounts this path from shared storage")
