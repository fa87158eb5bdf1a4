"""Images in, uint8 tensors out: the sources, the on-disk cache and the device-side loader.

Every source (``cifar10``, ``imagefolder``, ``synthetic``) is decoded once into a single
cache file of uint8 NCHW images, int64 labels, class names and the per-channel mean/std of
the full training split (0..255 scale). Later runs, and every other process on the machine,
memory-map that file in milliseconds. Subsets are taken after loading, so one cache serves
every ``train_subset`` / ``test_subset``.

``DeviceLoader`` keeps a whole split on the training device as uint8 and produces normalised,
augmented float32 batches with a handful of batched tensor ops (after
KellerJordan/cifar10-airbench): no per-image Python, no DataLoader workers. All randomness
comes from a CPU ``torch.Generator`` the caller owns, so an epoch is reproduced exactly from
the generator's state, on any device.

No Ray here: this module runs alone in a test or a notebook.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock, Timeout
from PIL import Image

from ninsweep.atomic import write_atomic
from ninsweep.config import DataConfig
from ninsweep.datasets import (
    SYNTHETIC_NUM_CLASSES,
    FolderScan,
    resolve_cache_dir,
    resolve_data_root,
    scan_imagefolder,
)
from ninsweep.errors import CacheRebuiltWarning, DataError
from ninsweep.fmt import first_line, reason
from ninsweep.registry import SOURCES, resolve
from ninsweep.user_code import import_user_module, load_callable

Log = Callable[[str], None]

# Bump when the cache layout or any decoder's output changes: the version is part of the
# cache file name, so old files are simply never read again.
CACHE_FORMAT = 2

# imagefolder lists images class by class; this fixed permutation, applied when the cache is
# built, mixes the classes so that "the first N images" (train_subset=N) holds roughly N/10
# of each class. Fixed forever: changing it changes every subset (bump CACHE_FORMAT).
IMAGEFOLDER_PERMUTATION_SEED = 20170301

_CACHE_KEYS = frozenset({"format", "source", "fingerprint", "classes", "mean", "std",
                         "train_images", "train_labels", "test_images", "test_labels"})


@dataclass(frozen=True)
class ImageData:
    """Both splits of a dataset as CPU tensors, with the training split's colour statistics.

    Full splits are memory-mapped from the cache file (privately: in-place writes never reach
    the file); subsets are copies.
    """

    train_images: torch.Tensor  # uint8 [N, 3, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]  # 0..255 scale, of the full training split
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.train_images.shape[2], self.train_images.shape[3])


# ---------------------------------------------------------------------------------- paths

def cache_path(cfg: DataConfig) -> Path:
    """The cache file for ``cfg``: named by source plus a hash of what determines its content."""
    if cfg.source == "synthetic":
        identity: dict[str, Any] = {
            "train_size": cfg.synthetic_train_size, "test_size": cfg.synthetic_test_size,
            "image_size": cfg.synthetic_image_size, "seed": cfg.synthetic_seed,
            "noise": cfg.synthetic_noise}
    elif cfg.source == "imagefolder":
        identity = {"root": str(resolve_data_root(cfg))}
    elif cfg.source == "factory":
        # The call and the code that answers it: editing the module builds a new cache.
        identity = {"factory": cfg.factory, "kwargs": cfg.factory_kwargs,
                    "code": _module_digest(cfg.factory)}
    else:
        # CIFAR-10's content is pinned by torchvision's md5 sums, wherever it was downloaded.
        identity = {}
    text = json.dumps({"format": CACHE_FORMAT, "source": cfg.source, **identity}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return resolve_cache_dir(cfg) / f"{cfg.source}-v{CACHE_FORMAT}-{digest}.pt"


# ---------------------------------------------------------------------------------- loading

def load_data(cfg: DataConfig, log: Optional[Log] = None) -> ImageData:
    """Both splits of ``cfg``'s source, decoded once into the cache, then subset.

    ``train_subset`` / ``test_subset`` keep the first N images of a split (for imagefolder,
    first after its fixed class-mixing permutation; for cifar10, the canonical order, which
    is already mixed) and raise ``DataError`` when a split has fewer. ``mean`` / ``std`` are
    always those of the full training split.
    """
    log = log or _ignore
    path = cache_path(cfg)
    scan = None
    fingerprint = ""
    if cfg.source == "imagefolder":
        # Scanned on every load (no decoding; ~40 ms for CIFAR-10's 60,000 files): it checks
        # the layout and notices images added or removed since the cache was built.
        scan = scan_imagefolder(resolve_data_root(cfg))
        fingerprint = scan.fingerprint

    started = time.perf_counter()
    record, _ = _read_cache(path, fingerprint)
    if record is None:
        record = _build_cache(cfg, path, fingerprint, scan, log)
    else:
        log(f"data: loaded {path} in {time.perf_counter() - started:.2f} s")

    where = _describe_source(cfg)
    train_images, train_labels = _first(record["train_images"], record["train_labels"],
                                        cfg.train_subset, "train", where)
    test_images, test_labels = _first(record["test_images"], record["test_labels"],
                                      cfg.test_subset, "test", where)
    return ImageData(
        train_images=train_images, train_labels=train_labels,
        test_images=test_images, test_labels=test_labels,
        classes=tuple(record["classes"]),
        mean=tuple(float(v) for v in record["mean"]),
        std=tuple(float(v) for v in record["std"]),
    )


def _ignore(message: str) -> None:
    pass


def hold_out_validation(data: ImageData, val_size: int
                        ) -> tuple[ImageData, Optional[tuple[torch.Tensor, torch.Tensor]]]:
    """Split the last ``val_size`` training images off as a validation set.

    Returns the data with the shorter training split and (images, labels) of the held-out
    part, or None for ``val_size`` 0. The same images for every trial of a sweep (the split
    order is fixed), so configs are chosen on the same validation set. ``mean`` / ``std``
    stay those of the full training split, as for subsets.
    """
    if not val_size:
        return data, None
    count = len(data.train_labels)
    if val_size >= count:
        raise DataError(f"data.val_size={val_size}: the training split has only {count} images "
                        f"(some must be left to train on)")
    keep = count - val_size
    # Copies: neither part keeps the other alive, nor the whole memory-mapped split.
    held_out = (data.train_images[keep:].clone(), data.train_labels[keep:].clone())
    train = dataclasses.replace(data, train_images=data.train_images[:keep].clone(),
                                train_labels=data.train_labels[:keep].clone())
    return train, held_out


def _describe_source(cfg: DataConfig) -> str:
    if cfg.source == "factory":
        return f"data factory {cfg.factory}"
    if cfg.source == "synthetic":
        return (f"synthetic data (synthetic_train_size={cfg.synthetic_train_size}, "
                f"synthetic_test_size={cfg.synthetic_test_size})")
    return f"{cfg.source} at {resolve_data_root(cfg)}"


def _first(images: torch.Tensor, labels: torch.Tensor, count: Optional[int], split: str,
           where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if count is None:
        return images, labels
    if count > len(images):
        raise DataError(f"data.{split}_subset={count}: the {split} split of {where} "
                        f"has only {len(images)} images")
    # A copy, so a small subset does not keep the whole memory-mapped split alive.
    return images[:count].clone(), labels[:count].clone()


@dataclass(frozen=True)
class _CacheMiss:
    reason: str
    corrupt: bool  # True: the file is damaged (warn); False: absent or out of date (normal)


def _read_cache(path: Path, fingerprint: str) -> tuple[Optional[dict], Optional[_CacheMiss]]:
    """The cache record at ``path`` if it is complete and current, else why not."""
    if not path.exists():
        return None, _CacheMiss("absent", corrupt=False)
    try:
        # mmap: the file's pages are shared with every process reading it and only the parts
        # used are read; safe because caches are replaced by rename, never rewritten in place.
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # any failure to parse means a damaged file; never trust it
        return None, _CacheMiss(f"cannot be loaded: {first_line(err)}", corrupt=True)
    problem = _record_problem(record)
    if problem:
        return None, _CacheMiss(problem, corrupt=True)
    if record["fingerprint"] != fingerprint:
        return None, _CacheMiss("the image folder changed since it was built", corrupt=False)
    return record, None


def _record_problem(record: Any) -> Optional[str]:
    """What is wrong with a loaded cache record, or None when it is sound."""
    if not isinstance(record, dict) or set(record) != _CACHE_KEYS:
        return "missing or unexpected keys"
    if record["format"] != CACHE_FORMAT:
        return f"format {record['format']!r}, expected {CACHE_FORMAT}"
    classes = record["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "bad class names"
    for stat in ("mean", "std"):
        values = record[stat]
        if (not isinstance(values, list) or len(values) != 3
                or not all(isinstance(v, float) and math.isfinite(v) for v in values)):
            return f"bad {stat}"
    image_shape = None
    for split in ("train", "test"):
        images, labels = record[f"{split}_images"], record[f"{split}_labels"]
        if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
            return f"{split} split is not tensors"
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            return (f"{split} images are {images.dtype} {tuple(images.shape)}, "
                    "expected uint8 [N,3,H,W]")
        if labels.dtype != torch.int64 or labels.shape != (images.shape[0],) or len(labels) == 0:
            return f"{split} labels are {labels.dtype} {tuple(labels.shape)}, expected int64 [N]"
        if image_shape is not None and images.shape[1:] != image_shape:
            return "train and test images differ in size"
        image_shape = images.shape[1:]
        if int(labels.min()) < 0 or int(labels.max()) >= len(classes):
            return f"{split} labels out of range"
    return None


def _build_cache(cfg: DataConfig, path: Path, fingerprint: str, scan: Optional[FolderScan],
                 log: Log) -> dict:
    """Decode the source and write the cache, once per machine however many processes ask."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{path.parent}: cannot create the cache directory "
                        f"({reason(err)})") from None
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"data: another process is building {path}; waiting for it")
        lock.acquire()
    except OSError as err:
        raise DataError(f"{path}.lock: cannot create the cache lock ({reason(err)})") from None
    try:
        # Whoever held the lock before us may have just built it.
        record, miss = _read_cache(path, fingerprint)
        if record is not None:
            log(f"data: loaded {path}, built by another process")
            return record
        if miss.corrupt:
            message = f"data cache {path} {miss.reason}; rebuilding it"
            warnings.warn(message, CacheRebuiltWarning, stacklevel=3)
            log(f"data: {message}")
        elif path.exists():
            log(f"data: cache {path} is out of date ({miss.reason}); rebuilding it")

        started = time.perf_counter()
        log(f"data: decoding {_describe_source(cfg)} into {path}")
        decoded = resolve(SOURCES[cfg.source])(cfg, scan, log)
        mean, std = channel_stats(decoded.train_images)
        record = {
            "format": CACHE_FORMAT, "source": cfg.source, "fingerprint": fingerprint,
            "classes": list(decoded.classes), "mean": mean, "std": std,
            # Stored channels_last (NHWC in memory, still shaped [N,3,H,W]): the layout
            # DeviceLoader uses, so on CPU it trains straight from the memory-mapped file and
            # trials on one node share its pages instead of each holding a private copy.
            "train_images": decoded.train_images.contiguous(memory_format=torch.channels_last),
            "train_labels": decoded.train_labels.to(torch.int64).contiguous(),
            "test_images": decoded.test_images.contiguous(memory_format=torch.channels_last),
            "test_labels": decoded.test_labels.to(torch.int64).contiguous(),
        }
        problem = _record_problem(record)
        if problem:  # a decoder bug, not user input
            raise AssertionError(f"decoded {cfg.source} data is malformed: {problem}")
        _write_atomically(record, path)
        log(f"data: decoded {len(record['train_labels'])} + {len(record['test_labels'])} images "
            f"in {time.perf_counter() - started:.1f} s")
        return record
    finally:
        lock.release()


def _write_atomically(record: dict, path: Path) -> None:
    """Readers see the old file or the complete new one, never a partial write."""
    try:
        write_atomic(path, lambda stream: torch.save(record, stream))  # 0644: shared cache
    except OSError as err:
        raise DataError(f"{path}: cannot write the data cache ({reason(err)})") from None


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 [N,C,H,W] images, on the 0..255 scale."""
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        # A histogram of the 256 levels gives exact moments, 5x faster than summing in int64.
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(variance.sqrt()))
    return means, stds


# ---------------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class _Decoded:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]


def _decode_cifar10(cfg: DataConfig, scan: None, log: Log) -> _Decoded:
    """torchvision's CIFAR-10 (md5-verified), downloaded under a lock in the shared root."""
    from torchvision.datasets import CIFAR10  # ~1 s to import: a cache hit never pays it

    root = resolve_data_root(cfg)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: data root is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{root}: cannot create the data root ({reason(err)})") from None

    def read(download: bool) -> tuple[Any, Any]:
        try:
            return (CIFAR10(str(root), train=True, download=download),
                    CIFAR10(str(root), train=False, download=download))
        except (OSError, RuntimeError, ValueError) as err:  # network, disk, md5 mismatch
            action = "download or verify" if download else "find a verified copy of"
            raise DataError(f"{root}: cannot {action} CIFAR-10 ({first_line(err)})") from None

    if os.access(root, os.W_OK):
        # Serialises downloads by every process using this root, whatever their cache dirs.
        with FileLock(str(root / "cifar-10.download.lock")):
            log(f"data: checking CIFAR-10 in {root} (downloading if absent)")
            train, test = read(download=True)
    else:
        # A read-only shared copy: nobody can write here, so there is nothing to race with.
        train, test = read(download=False)

    def to_tensors(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        return images, torch.tensor(split.targets, dtype=torch.int64)

    train_images, train_labels = to_tensors(train)
    test_images, test_labels = to_tensors(test)
    return _Decoded(train_images, train_labels, test_images, test_labels, tuple(train.classes))


def _decode_imagefolder(cfg: DataConfig, scan: Optional[FolderScan], log: Log) -> _Decoded:
    """Decode every image of both splits; labels follow the sorted class-folder names."""
    if scan is None:
        scan = scan_imagefolder(resolve_data_root(cfg))
    splits = {}
    size: Optional[tuple[int, int]] = None
    for split in ("train", "test"):
        paths = [path for class_files in scan.files[split] for path in class_files]
        labels = torch.tensor([label for label, class_files in enumerate(scan.files[split])
                               for _ in class_files], dtype=torch.int64)
        images = None
        for index, path in enumerate(paths):
            image = _decode_image(Path(path))
            if images is None:
                size = size or (image.shape[1], image.shape[2])
                images = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
            if (image.shape[1], image.shape[2]) != size:
                raise DataError(f"{path}: image is {image.shape[1]}x{image.shape[2]}, expected "
                                f"{size[0]}x{size[1]} like the others (resize the folder first)")
            images[index] = image
        # Mix the classes (see IMAGEFOLDER_PERMUTATION_SEED) so any prefix is near-balanced.
        fixed = torch.Generator().manual_seed(IMAGEFOLDER_PERMUTATION_SEED)
        order = torch.randperm(len(paths), generator=fixed)
        splits[split] = (images[order], labels[order])
    return _Decoded(*splits["train"], *splits["test"], scan.classes)


def _decode_image(path: Path) -> torch.Tensor:
    """One image file as uint8 [3,H,W] RGB; ``DataError`` naming the file if it will not decode.

    PIL, not torchvision.io: torchvision 0.29 deprecates its decoders, and PIL reads every
    common format (greyscale, palette and RGBA images are converted to RGB).
    """
    try:
        with Image.open(path) as opened:
            pixels = np.array(opened.convert("RGB"))  # a writable copy, as torch wants
    except Exception as err:  # unidentified, truncated, decompression bomb: all the file's fault
        raise DataError(f"{path}: cannot decode image ({first_line(err)})") from None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _generate_synthetic(cfg: DataConfig, scan: None, log: Log) -> _Decoded:
    """Learnable fake images, a pure function of the synthetic_* settings.

    Each class owns a smooth random colour template (a 4x4 grid of colours, upsampled); an
    image is its class's template shifted by up to size/8 px, with random contrast,
    brightness and strong pixel noise. A small CNN separates the classes within a few epochs,
    but not instantly: single pixels are far too noisy to tell classes apart.
    """
    size = cfg.synthetic_image_size
    shift = max(1, size // 8)
    template_gen = _seeded_generator(cfg.synthetic_seed, "templates")
    coarse = torch.rand(SYNTHETIC_NUM_CLASSES, 3, 4, 4, generator=template_gen) * 2 - 1
    templates = F.interpolate(coarse, size=(size + 2 * shift,) * 2, mode="bilinear",
                              align_corners=False)
    templates = templates.permute(0, 2, 3, 1).contiguous()  # [K, S+2m, S+2m, 3]
    classes = tuple(f"class{k}" for k in range(SYNTHETIC_NUM_CLASSES))

    def split(count: int, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        # Its own stream per split: the test set does not change with the train size.
        gen = _seeded_generator(cfg.synthetic_seed, stream)
        labels = torch.randint(0, SYNTHETIC_NUM_CLASSES, (count,), generator=gen)
        images = torch.empty((count, 3, size, size), dtype=torch.uint8)
        pixel_range = torch.arange(size)
        for start in range(0, count, 4096):  # bounded memory for large synthetic sets
            chunk_labels = labels[start:start + 4096]
            n = len(chunk_labels)
            dy, dx = torch.randint(0, 2 * shift + 1, (2, n), generator=gen)
            rows = (dy[:, None] + pixel_range)[:, :, None]
            cols = (dx[:, None] + pixel_range)[:, None, :]
            window = templates[chunk_labels[:, None, None], rows, cols]  # [n, S, S, 3]
            contrast = 40 + 50 * torch.rand(n, 1, 1, 1, generator=gen)
            brightness = 128 + 25 * torch.randn(n, 1, 1, 1, generator=gen)
            noise = cfg.synthetic_noise * torch.randn(n, size, size, 3, generator=gen)
            pixels = (window * contrast + brightness + noise).round_().clamp_(0, 255)
            images[start:start + n] = pixels.to(torch.uint8).permute(0, 3, 1, 2)
        return images, labels

    train_images, train_labels = split(cfg.synthetic_train_size, "train")
    test_images, test_labels = split(cfg.synthetic_test_size, "test")
    return _Decoded(train_images, train_labels, test_images, test_labels, classes)


def _seeded_generator(seed: int, stream: str) -> torch.Generator:
    """An independent CPU generator per (seed, stream), valid for any integer seed."""
    digest = hashlib.sha256(f"ninsweep.data/{seed}/{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _module_digest(path: str) -> str:
    """A hash of the source file of ``module:function``'s module ("" when it has none)."""
    module = import_user_module("data.factory", path)
    origin = getattr(module, "__file__", None)
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:16] if origin else ""


def _load_factory(cfg: DataConfig, scan: None, log: Log) -> _Decoded:
    """Your own data: ``data.factory`` (``module:function``) called with ``factory_kwargs``.

    It returns ``(train, test)`` -- each a pair ``(images, labels)`` of tensors or a
    torchvision-style dataset (``ds[i] == (image, label)``, PIL image or tensor, optional
    ``.classes``) -- or a mapping with ``train`` and ``test`` (and optionally ``classes``).
    Images become the cache's uint8 [N, 3, H, W]: NHWC is transposed, floats in [0, 1] are
    scaled to 0..255, one channel is repeated to three.
    """
    function = load_callable("data.factory", cfg.factory)
    try:
        result = function(**cfg.factory_kwargs)
    except DataError:
        raise
    except Exception as err:  # the user's code: say what it raised, in one line
        raise DataError(f"data.factory: {cfg.factory} raised {type(err).__name__}: "
                        f"{first_line(err)}") from None
    classes = None
    if isinstance(result, dict):
        classes = result.get("classes")
        result = (result.get("train"), result.get("test"))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise DataError(f"data.factory: {cfg.factory} returned {type(result).__name__}; "
                        "expected (train, test) or {train, test}")
    splits = [_split_tensors(part, name, cfg.factory) for part, name in zip(result, ("train", "test"))]
    (train_images, train_labels, train_classes), (test_images, test_labels, _) = splits
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(f"data.factory: {cfg.factory}: train images {tuple(train_images.shape[1:])} "
                        f"and test images {tuple(test_images.shape[1:])} differ in shape")
    count = int(max(train_labels.max(), test_labels.max())) + 1
    classes = tuple(str(c) for c in (classes or train_classes or range(count)))
    if len(classes) < count or int(min(train_labels.min(), test_labels.min())) < 0:
        raise DataError(f"data.factory: {cfg.factory}: labels must lie in 0..{len(classes) - 1}")
    log(f"data: {cfg.factory} gave {len(train_labels)} + {len(test_labels)} images of "
        f"{len(classes)} classes")
    return _Decoded(train_images, train_labels, test_images, test_labels, classes)


def _split_tensors(part: Any, split: str, path: str
                   ) -> tuple[torch.Tensor, torch.Tensor, Optional[tuple[str, ...]]]:
    """(uint8 [N, 3, H, W] images, int64 labels, class names or None) of one split."""
    where = f"data.factory: {path}: {split} split"
    if isinstance(part, (tuple, list)) and len(part) == 2 and torch.is_tensor(part[0]):
        images, labels = part
        classes = None
    elif hasattr(part, "__getitem__") and hasattr(part, "__len__"):
        items = [part[i] for i in range(len(part))]  # torchvision-style: (image, label)
        if not items:
            raise DataError(f"{where} is empty")
        images = torch.stack([torch.as_tensor(np.array(image)) for image, _ in items])
        labels = torch.tensor([int(label) for _, label in items])
        classes = tuple(part.classes) if getattr(part, "classes", None) else None
    else:
        raise DataError(f"{where}: expected (images, labels) tensors or a dataset, got "
                        f"{type(part).__name__}")
    labels = torch.as_tensor(labels).to(torch.int64).flatten()
    if images.dim() == 3:
        images = images[:, None]  # [N, H, W]: one channel
    if images.dim() != 4 or len(images) != len(labels) or not len(labels):
        raise DataError(f"{where}: expected N images [N, C, H, W] and N labels, got "
                        f"{tuple(images.shape)} and {tuple(labels.shape)}")
    if images.shape[1] not in (1, 3) and images.shape[-1] in (1, 3):
        images = images.permute(0, 3, 1, 2)  # NHWC, as numpy and PIL give them
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise DataError(f"{where}: images need 1 or 3 channels, got shape {tuple(images.shape)}")
    if images.is_floating_point():
        images = (images.float() * 255).round().clamp(0, 255)  # [0, 1] floats, ToTensor's
    return images.to(torch.uint8).contiguous(), labels, classes


# ---------------------------------------------------------------------------------- batches

class DeviceLoader:
    """The whole split lives on ``device`` as uint8 (copied once); each batch is normalised,
    augmented and returned as float32 [B,3,H,W] (channels_last memory format if
    ``channels_last=True``).

    Augmentation (``train=True`` and ``augment=True``), as in the reference: normalise with
    mean/std, pad ``crop_padding`` px with zeros (zero *after* normalisation), crop a random
    HxW window (offsets uniform in [0, 2*pad] on each axis), then mirror left-right with
    probability ``flip_probability``. ``train=False`` gives the split in order, unaugmented.
    """

    def __init__(self, images_uint8: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 device: torch.device | str, mean: tuple[float, ...], std: tuple[float, ...],
                 train: bool, crop_padding: int = 4, flip_probability: float = 0.5,
                 augment: bool = True, channels_last: bool = True) -> None:
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
            raise ValueError(f"images must be uint8 [N,C,H,W], got {images_uint8.dtype} "
                             f"{tuple(images_uint8.shape)}")
        channels = images_uint8.shape[1]
        if labels.shape != (images_uint8.shape[0],) or len(labels) == 0:
            raise ValueError(f"labels {tuple(labels.shape)} do not match images "
                             f"{tuple(images_uint8.shape)}")
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(f"need {channels} means and {channels} positive stds")
        if batch_size <= 0 or crop_padding < 0 or not 0.0 <= flip_probability <= 1.0:
            raise ValueError("batch_size must be > 0, crop_padding >= 0, "
                             "flip_probability in [0, 1]")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.augment = augment
        self.crop_padding = crop_padding
        self.flip_probability = flip_probability
        self.channels_last = channels_last
        # Stored NHWC: a crop gathers whole pixels, and a batch comes out already in
        # channels_last order (a permute, no copy).
        self._images = images_uint8.to(self.device).permute(0, 2, 3, 1).contiguous()
        self._labels = labels.to(device=self.device, dtype=torch.int64)
        height, width = self._images.shape[1:3]
        # (p - mean) / std = p * inv_std + shift, with the per-channel constants tiled over a
        # whole pixel row (W*C values): broadcasting a 3-vector over the innermost dimension
        # does not vectorise and costs ~5x more on CPU.
        inv_std = 1.0 / torch.tensor(std, dtype=torch.float32, device=self.device)
        shift = -torch.tensor(mean, dtype=torch.float32, device=self.device) * inv_std
        self._inv_std_row = inv_std.repeat(width)
        self._shift_row = shift.repeat(width)
        self._rows = torch.arange(height, device=self.device)
        self._cols = torch.arange(width, device=self.device)
        self._cols_mirrored = self._cols.flip(0)

    @property
    def num_images(self) -> int:
        return self._images.shape[0]

    def __len__(self) -> int:
        """Batches per epoch; the last one may be partial (50000 / 128 -> 391)."""
        return -(-self.num_images // self.batch_size)

    def epoch(self, generator: Optional[torch.Generator]
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the split as (x float32 [B,C,H,W], y int64 [B]) on the device.

        ``train=True``: every random number of the epoch (order, crop offsets, flips, in
        that order) is drawn from ``generator`` here, at the call, so the generator's state
        before this call reproduces the epoch exactly; its state after the call is the one to
        checkpoint. ``train=False``: fixed order, no augmentation, ``generator`` unused.
        """
        if not self.train:
            return self._in_order()
        if generator is None or generator.device.type != "cpu":
            raise ValueError("a training epoch needs a CPU torch.Generator "
                             "(the caller's, so its state can be checkpointed)")
        count = self.num_images
        order = torch.randperm(count, generator=generator)
        if not self.augment:
            return self._shuffled(order.to(self.device))
        offsets = torch.randint(0, 2 * self.crop_padding + 1, (2, count), generator=generator)
        flips = torch.rand(count, generator=generator) < self.flip_probability
        # One host-to-device copy per epoch, not per batch.
        return self._augmented(order.to(self.device), offsets.to(self.device),
                               flips.to(self.device))

    def _in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.num_images, self.batch_size):
            stop = start + self.batch_size
            yield self._finish(self._normalise(self._images[start:stop])), self._labels[start:stop]

    def _shuffled(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in order.split(self.batch_size):
            yield self._finish(self._normalise(self._images[index])), self._labels[index]

    def _augmented(self, order: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index, dy, dx, flip in zip(order.split(self.batch_size),
                                       offsets[0].split(self.batch_size),
                                       offsets[1].split(self.batch_size),
                                       flips.split(self.batch_size)):
            yield self._finish(self._crop_flip_normalise(index, dy, dx, flip)), self._labels[index]

    def _crop_flip_normalise(self, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                             flip: torch.Tensor) -> torch.Tensor:
        """Normalised, zero-padded, cropped and mirrored images ``index``, as NHWC float32.

        Never materialises the padded batch: output pixel (i, j) of image b reads source
        pixel (dy_b - pad + i, dx_b - pad + j') with j' = j, or W-1-j when b is mirrored
        (crop, then mirror the crop); a source position outside the image is padding, which
        is zero after normalisation.
        """
        count, height, width, channels = self._images.shape
        batch, pad = len(index), self.crop_padding
        rows = dy[:, None] - pad + self._rows  # [B, H]
        cols = dx[:, None] - pad + torch.where(flip[:, None], self._cols_mirrored, self._cols)
        # One index_select of whole pixels over the split seen as [N*H*W, C]: about 4x
        # faster on CPU than advanced indexing with three broadcast index tensors.
        pixel_index = ((index[:, None, None] * height + rows.clamp(0, height - 1)[:, :, None])
                       * width + cols.clamp(0, width - 1)[:, None, :])
        pixels = self._images.view(count * height * width, channels).index_select(
            0, pixel_index.reshape(-1)).view(batch, height, width, channels)
        if pad == 0:
            return self._normalise(pixels)
        # Padding columns get scale 0 and offset 0 (so exactly 0.0), padding rows a 0 factor.
        column_inside = ((cols >= 0) & (cols < width)).repeat_interleave(channels, dim=1)
        column_inside = column_inside.to(torch.float32)[:, None, :]  # [B, 1, W*C]
        pixel_rows = pixels.view(batch, height, width * channels).to(torch.float32)
        normalised = torch.addcmul(self._shift_row * column_inside, pixel_rows,
                                   self._inv_std_row * column_inside)
        row_inside = ((rows >= 0) & (rows < height))[:, :, None]  # [B, H, 1]
        return normalised.mul_(row_inside).view(batch, height, width, channels)

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> float32 NHWC (p - mean) / std."""
        batch, height, width, channels = pixels.shape
        pixel_rows = pixels.reshape(batch, height, width * channels).to(torch.float32)
        return torch.addcmul(self._shift_row, pixel_rows, self._inv_std_row).view(pixels.shape)

    def _finish(self, nhwc: torch.Tensor) -> torch.Tensor:
        nchw = nhwc.permute(0, 3, 1, 2)  # already channels_last in memory
        return nchw if self.channels_last else nchw.contiguous()
