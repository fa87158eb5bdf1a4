"""How a location is written: a local path, or a URI (``s3://``, ``gs://``; ``file://`` is a
local path). Pure string rules, no file system and no pyarrow, so a command that only names a
location (``submit``, the dry run) loads nothing more; ``ninsweep.storage`` does the I/O."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

DEFAULT_STORAGE = "~/ninsweep-results"
STORAGE_ENV = "NINSWEEP_STORAGE"  # where experiments live when --storage is not given
_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FILE_PREFIX = "file://"


def uri_scheme(location: str) -> Optional[str]:
    """The URI scheme of ``location`` in lower case (``s3``), or None for a local path,
    ``file://`` included."""
    match = _URI_RE.match(location)
    if not match or match.group(1).lower() == "file":
        return None
    return match.group(1).lower()


def is_uri(location: str) -> bool:
    """A remote location (s3://, gs://, ...), read and written through pyarrow."""
    return uri_scheme(location) is not None


def local_path(location: str) -> str:
    """A local location without its ``file://`` prefix, if it has one."""
    if location[:len(_FILE_PREFIX)].lower() == _FILE_PREFIX:
        return location[len(_FILE_PREFIX):]
    return location


def resolve_storage(storage: Optional[str]) -> str:
    """An absolute local path or a URI; Ray Tune needs one of the two."""
    storage = storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    if is_uri(storage):
        return storage.rstrip("/")
    return str(Path(local_path(storage)).expanduser().resolve())


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))
