"""What is known of a data source without decoding it: where it lives, how large it is.

The data roots (``data.root``, ``$NINSWEEP_DATA_DIR``; the cache under ``$NINSWEEP_CACHE_DIR``),
CIFAR-10's fixed split sizes, the synthetic source's class count, and an image folder's
listing (``scan_imagefolder``: the layout checked, nothing decoded). ``core.data`` decodes the
sources; preflight (``sweep.preflight``) checks every trial against these facts before Ray
starts, without importing torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ninsweep.config import DataConfig
from ninsweep.errors import DataError
from ninsweep.fmt import reason

# torchvision's CIFAR-10: fixed by its md5-checked archive.
CIFAR10_SPLITS = (50_000, 10_000)
CIFAR10_CLASSES = 10
CIFAR10_IMAGE_SIZE = 32
SYNTHETIC_NUM_CLASSES = 10


# What imagefolder treats as an image; other files (README, .DS_Store) are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm",
                    ".tif", ".tiff")


def known_image_size(data: DataConfig) -> Optional[int]:
    """The side of a source's square images when known without decoding, else None (an
    image folder's or a data factory's images are known once decoded)."""
    if data.source == "cifar10":
        return CIFAR10_IMAGE_SIZE
    if data.source == "synthetic":
        return data.synthetic_image_size
    return None


def resolve_data_root(cfg: DataConfig) -> Path:
    """``cfg.root``, else ``$NINSWEEP_DATA_DIR``, else ``~/.cache/ninsweep/data`` (absolute)."""
    return _resolve_dir(cfg.root, "NINSWEEP_DATA_DIR", "data")


def resolve_cache_dir(cfg: DataConfig) -> Path:
    """``cfg.cache_dir``, else ``$NINSWEEP_CACHE_DIR``, else ``~/.cache/ninsweep/cache``."""
    return _resolve_dir(cfg.cache_dir, "NINSWEEP_CACHE_DIR", "cache")


def _resolve_dir(configured: Optional[str], env_var: str, default_leaf: str) -> Path:
    # Read the environment at call time, not import time: tests and Ray workers set it late.
    chosen = configured or os.environ.get(env_var) or Path("~/.cache/ninsweep") / default_leaf
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class FolderScan:
    root: Path
    classes: tuple[str, ...]
    # split -> per class (sorted by name) -> image file paths (sorted). Plain strings:
    # pathlib is ~20x slower to build and sort 60,000 of them, and this runs on every load.
    files: dict[str, list[list[str]]]
    fingerprint: str


def scan_imagefolder(root: Path) -> FolderScan:
    """List root/{train,test}/<class>/* and check the layout, without decoding anything."""
    if not root.exists():
        raise DataError(f"{root}: data directory does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: data root is not a directory")
    top_level = {entry.name: entry for entry in list_dir(root)}
    files: dict[str, list[list[str]]] = {}
    classes_of: dict[str, list[str]] = {}
    fingerprint_parts = []
    for split in ("train", "test"):
        split_dir = root / split
        if split not in top_level or not top_level[split].is_dir():
            raise DataError(f"{root}: missing the {split}/ folder "
                            f"(expected {split}/<class>/<image> files)")
        class_dirs = sorted((entry for entry in list_dir(split_dir)
                             if entry.is_dir() and not entry.name.startswith(".")),
                            key=lambda e: e.name)
        if not class_dirs:
            raise DataError(f"{split_dir}: no class folders")
        classes_of[split] = [entry.name for entry in class_dirs]
        files[split] = []
        for class_dir in class_dirs:
            images = sorted(entry.path for entry in list_dir(Path(class_dir.path))
                            if entry.name.lower().endswith(IMAGE_EXTENSIONS)
                            and not entry.name.startswith(".") and entry.is_file())
            if not images:
                raise DataError(f"{class_dir.path}: class folder has no images "
                                f"({', '.join(IMAGE_EXTENSIONS)})")
            files[split].append(images)
            stat = class_dir.stat()
            # The folder's mtime moves when images are added, removed or renamed in it.
            fingerprint_parts.append([split, class_dir.name, len(images), stat.st_mtime_ns])
    if classes_of["train"] != classes_of["test"]:
        only_train = sorted(set(classes_of["train"]) - set(classes_of["test"]))
        only_test = sorted(set(classes_of["test"]) - set(classes_of["train"]))
        raise DataError(f"{root}: train/ and test/ have different class folders "
                        f"(only in train: {', '.join(only_train) or '-'}; "
                        f"only in test: {', '.join(only_test) or '-'})")
    fingerprint = hashlib.sha256(json.dumps(fingerprint_parts).encode()).hexdigest()
    return FolderScan(root, tuple(classes_of["train"]), files, fingerprint)


def list_dir(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as err:
        raise DataError(f"{directory}: cannot read directory ({reason(err)})") from None
