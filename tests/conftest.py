"""Fixtures shared by several test modules, and the marker rules of the suite."""

import shutil
import zipfile
from pathlib import Path

import pytest
from ray_support import needs_netns


def _starts_ray(item) -> bool:
    """Marked `ray`, or guarded by ray_support.needs_netns (every test that starts Ray must
    be: Ray may run only inside tests/run.sh's loopback-only namespace)."""
    if item.get_closest_marker("ray") is not None:
        return True
    return any(mark.kwargs.get("reason") == needs_netns.kwargs["reason"]
               for mark in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config, items):
    """`ray` and the netns guard go together: a test carrying either gets both, so
    `-m "not ray"` deselects every test that starts Ray and none can start it outside the
    namespace. Every Ray test is also `slow` (Ray alone takes 5-20 s to start on 2 cores),
    which keeps `-m "not slow"` a loop of well under two minutes."""
    for item in items:
        if _starts_ray(item):
            if item.get_closest_marker("ray") is None:
                item.add_marker(pytest.mark.ray)
            if not any(mark.kwargs.get("reason") == needs_netns.kwargs["reason"]
                       for mark in item.iter_markers("skipif")):
                item.add_marker(needs_netns)
            if item.get_closest_marker("slow") is None:
                item.add_marker(pytest.mark.slow)


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
