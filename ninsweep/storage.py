"""Where experiments live: a local path, or a URI that pyarrow understands (s3://, gs://).

Ray Tune writes the experiment itself; this module holds the few file operations ninsweep does
around it (the manifest, existence checks) and fetches a remote experiment's results so the
analysis, which reads a local directory, works on it too.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from .errors import NinsweepError

MANIFEST_FILE = "ninsweep.json"
DEFAULT_STORAGE = "~/ninsweep-results"


def is_uri(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def resolve_storage(storage: Optional[str]) -> str:
    """An absolute local path or a URI; Ray Tune needs one of the two."""
    storage = storage or os.environ.get("NINSWEEP_STORAGE") or DEFAULT_STORAGE
    if is_uri(storage):
        return storage.rstrip("/")
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    return str(Path(storage).expanduser().resolve())


def filesystem(location: str):
    import pyarrow.fs  # Ray's own dependency; only needed here for URIs

    if is_uri(location):
        try:
            return pyarrow.fs.FileSystem.from_uri(location)
        except (ValueError, OSError) as err:  # unknown scheme, no credentials, ...
            raise NinsweepError(f"{location}: cannot open ({str(err).splitlines()[0]})") from None
    return pyarrow.fs.LocalFileSystem(), location


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def experiment_exists(experiment: str) -> bool:
    if not is_uri(experiment):
        path = Path(experiment)
        return path.exists() and (not path.is_dir() or any(path.iterdir()))
    import pyarrow.fs

    fs, path = filesystem(experiment)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def write_manifest(experiment: str, manifest: dict[str, Any]) -> None:
    """Write ``ninsweep.json`` once; an existing one is never replaced."""
    text = json.dumps(manifest, indent=2, sort_keys=True)
    target = join(experiment, MANIFEST_FILE)
    if is_uri(experiment):
        fs, path = filesystem(target)
        with fs.open_output_stream(path) as stream:
            stream.write(text.encode())
        return
    directory = Path(experiment)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    temporary.write_text(text)
    try:
        os.link(temporary, target)  # fails if the target exists: never overwrite
    finally:
        temporary.unlink(missing_ok=True)


def read_manifest(experiment: str) -> dict[str, Any]:
    target = join(experiment, MANIFEST_FILE)
    try:
        if is_uri(experiment):
            fs, path = filesystem(target)
            with fs.open_input_stream(path) as stream:
                text = stream.read().decode()
        else:
            text = Path(target).read_text()
    except FileNotFoundError:
        raise NinsweepError(f"{experiment}: not a ninsweep experiment (no {MANIFEST_FILE})") from None
    except OSError as err:
        raise NinsweepError(f"{target}: cannot read ({err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise NinsweepError(f"{target}: corrupt manifest ({err})") from None


def fetch_experiment(uri: str, destination: Optional[os.PathLike | str] = None) -> Path:
    """Copy a remote experiment's results (not its checkpoints) into a local directory.

    The default destination is ``$NINSWEEP_CACHE_DIR`` (or ``~/.cache/ninsweep``)
    ``/experiments/<the URI as a name>``; files there are refreshed on every call.
    """
    import pyarrow.fs

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
        raise NinsweepError(f"{uri}: cannot list ({str(err).splitlines()[0]})") from None
    for entry in entries:
        relative = entry.path[len(root):].lstrip("/")
        # Checkpoints are large and the analysis never reads them.
        if entry.type != pyarrow.fs.FileType.File or any(
                part.startswith("checkpoint_") for part in relative.split("/")):
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with remote.open_input_stream(entry.path) as source:
            data = source.read()
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    return destination


def path_exists(location: str) -> bool:
    """Whether a file or directory exists at a path or URI."""
    import pyarrow.fs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def make_dirs(location: str) -> None:
    """Create a directory (and its parents) at a path or URI."""
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)
