"""Fixtures shared by several test modules."""

import shutil
import zipfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cifar10_jpeg_root(tmp_path_factory):
    """The real CIFAR-10 as an image folder (train/<class>/*.jpg, test/<class>/*.jpg).

    Unzipped from ../shared/data/cifar10-jpeg.zip once per session (60,000 files: ~5 s on an
    idle 2-core machine, much longer on a busy one) and deleted afterwards; skips when the
    archive is absent. Tests that decode it should share the cache directory
    ``cifar10_jpeg_root.parent / "cifar10-jpeg-cache"``, so the decode also happens once.
    """
    archive = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    root = tmp_path_factory.mktemp("cifar10-jpeg")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(root)
    yield root
    # Not left to pytest's retention of old temp dirs: 60,000 files per kept run add up.
    shutil.rmtree(root, ignore_errors=True)
