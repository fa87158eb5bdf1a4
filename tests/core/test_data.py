"""Data sources, the uint8 cache and DeviceLoader's batched augmentation. No Ray, no network."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar
from PIL import Image

from ninsweep.config import DataConfig
from ninsweep.core.data import DeviceLoader, cache_path, load_data
from ninsweep.datasets import resolve_cache_dir, resolve_data_root
from ninsweep.errors import DataError
from ninsweep.registry import SOURCES, resolve

REPO = Path(__file__).resolve().parents[2]
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@pytest.fixture(autouse=True)
def private_default_dirs(tmp_path, monkeypatch):
    """Defaults point into tmp_path: no test reads or writes ~/.cache."""
    monkeypatch.setenv("NINSWEEP_DATA_DIR", str(tmp_path / "default-data"))
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "default-cache"))


def synthetic(tmp_path: Path, **overrides) -> DataConfig:
    settings = dict(source="synthetic", cache_dir=str(tmp_path / "cache"),
                    synthetic_train_size=400, synthetic_test_size=100, synthetic_image_size=16)
    settings.update(overrides)
    cfg = DataConfig(**settings)
    cfg.validate()
    return cfg


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """The reference normalisation, in float64, independent of the implementation."""
    mean = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return (images.double() - mean) / std


# ----------------------------------------------------------------------------- directories

def test_default_dirs_are_resolved_at_call_time(tmp_path, monkeypatch):
    monkeypatch.delenv("NINSWEEP_DATA_DIR")
    monkeypatch.delenv("NINSWEEP_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_root(DataConfig()) == tmp_path / ".cache" / "ninsweep" / "data"
    assert resolve_cache_dir(DataConfig()) == tmp_path / ".cache" / "ninsweep" / "cache"

    monkeypatch.setenv("NINSWEEP_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "c"))
    assert resolve_data_root(DataConfig()) == tmp_path / "d"
    assert resolve_cache_dir(DataConfig()) == tmp_path / "c"

    monkeypatch.chdir(tmp_path)
    explicit = DataConfig(root="here", cache_dir="~/there")
    assert resolve_data_root(explicit) == tmp_path / "here"
    assert resolve_cache_dir(explicit) == tmp_path / "there"


def test_cache_name_depends_on_content_settings_only(tmp_path):
    base = synthetic(tmp_path)
    assert cache_path(base) == cache_path(synthetic(tmp_path, train_subset=10, augment=False))
    assert cache_path(base) != cache_path(synthetic(tmp_path, synthetic_seed=1))
    assert cache_path(base) != cache_path(synthetic(tmp_path, synthetic_train_size=401))
    folder_a = DataConfig(source="imagefolder", root=str(tmp_path / "a"), cache_dir=str(tmp_path))
    folder_b = DataConfig(source="imagefolder", root=str(tmp_path / "b"), cache_dir=str(tmp_path))
    assert cache_path(folder_a) != cache_path(folder_b)
    assert cache_path(base).name.startswith("synthetic-")


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_per_seed(tmp_path):
    first = load_data(synthetic(tmp_path / "one"))
    again = load_data(synthetic(tmp_path / "two"))  # separate cache: really generated twice
    other = load_data(synthetic(tmp_path / "three", synthetic_seed=1))

    assert first.train_images.shape == (400, 3, 16, 16) and first.train_images.dtype == torch.uint8
    assert first.test_images.shape == (100, 3, 16, 16)
    assert first.train_labels.dtype == torch.int64 and first.classes == tuple(
        f"class{k}" for k in range(10))
    assert set(first.train_labels.tolist()) == set(range(10))
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert first.mean == again.mean and first.std == again.std
    assert not torch.equal(first.train_images, other.train_images)
    assert not torch.equal(first.test_images, other.test_images)


def test_synthetic_noise_sets_the_pixel_noise_and_nothing_else(tmp_path):
    """Same labels and templates, less noise: each image is closer to its class's mean (the
    smoke space's 15 against the default 45), and the cache is another file."""
    loud = load_data(synthetic(tmp_path / "a"))
    quiet = load_data(synthetic(tmp_path / "b", synthetic_noise=15))
    assert cache_path(synthetic(tmp_path)) != cache_path(synthetic(tmp_path, synthetic_noise=15))
    assert cache_path(synthetic(tmp_path)) == cache_path(synthetic(tmp_path, synthetic_noise=45))
    assert torch.equal(loud.train_labels, quiet.train_labels)

    def spread(images):  # the pixels' SD about their class mean
        x = images.train_images.float()
        means = torch.stack([x[images.train_labels == k].mean(0) for k in range(10)])
        return (x - means[images.train_labels]).std().item()

    assert spread(quiet) < 0.7 * spread(loud)  # 31 against 51: brightness and shifts remain


def test_synthetic_test_split_does_not_depend_on_train_size(tmp_path):
    small = load_data(synthetic(tmp_path / "a", synthetic_train_size=100))
    large = load_data(synthetic(tmp_path / "b", synthetic_train_size=300))
    assert torch.equal(small.test_images, large.test_images)


def test_synthetic_is_learnable_but_not_trivial(tmp_path):
    images = load_data(synthetic(tmp_path, synthetic_train_size=2000, synthetic_test_size=500))
    train = images.train_images.float().flatten(1)
    test = images.test_images.float().flatten(1)
    class_means = torch.stack([train[images.train_labels == k].mean(0) for k in range(10)])
    predicted = torch.cdist(test, class_means).argmin(1)
    accuracy = (predicted == images.test_labels).float().mean().item()
    assert accuracy > 0.5, accuracy  # a linear model already beats chance by far
    # ... but no single pixel gives the class away: noise dominates each pixel.
    one_pixel = images.train_images[:, :, 8, 8].float()
    spread_within = torch.stack([one_pixel[images.train_labels == k].std(0) for k in range(10)])
    assert spread_within.min() > 25


# ----------------------------------------------------------------------------- cache

def test_mean_std_are_those_of_the_full_training_split(tmp_path):
    full = load_data(synthetic(tmp_path))
    subset = load_data(synthetic(tmp_path, train_subset=37, test_subset=5))
    pixels = full.train_images.double()
    expected_mean = pixels.mean(dim=(0, 2, 3))
    expected_std = pixels.std(dim=(0, 2, 3), unbiased=False)
    for got in (full, subset):
        assert torch.allclose(torch.tensor(got.mean, dtype=torch.float64), expected_mean, atol=1e-9)
        assert torch.allclose(torch.tensor(got.std, dtype=torch.float64), expected_std, atol=1e-9)
    assert torch.equal(subset.train_images, full.train_images[:37])
    assert torch.equal(subset.train_labels, full.train_labels[:37])
    assert torch.equal(subset.test_images, full.test_images[:5])


def test_subset_larger_than_the_split_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"train_subset=401: .*only 400 images"):
        load_data(synthetic(tmp_path, train_subset=401))
    with pytest.raises(DataError, match=r"test_subset=101: .*only 100 images"):
        load_data(synthetic(tmp_path, test_subset=101))
    assert len(load_data(synthetic(tmp_path, train_subset=400)).train_labels) == 400


def test_cache_hit_is_fast_and_identical(tmp_path):
    cfg = synthetic(tmp_path)
    built_log: list[str] = []
    built = load_data(cfg, log=built_log.append)
    assert any("decoding" in line for line in built_log)
    assert cache_path(cfg).is_file()
    assert not list(cache_path(cfg).parent.glob("*.tmp")), "temp file left behind"

    hit_log: list[str] = []
    started = time.perf_counter()
    hit = load_data(cfg, log=hit_log.append)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert not any("decoding" in line for line in hit_log) and "loaded" in hit_log[0]
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(built, name), getattr(hit, name)), name
    assert (built.classes, built.mean, built.std) == (hit.classes, hit.mean, hit.std)


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_content(path: Path) -> None:
    record = torch.load(path, weights_only=True)
    record["train_labels"] = record["train_labels"].to(torch.int32)
    torch.save(record, path)


def _missing_key(path: Path) -> None:
    record = torch.load(path, weights_only=True)
    del record["std"]
    torch.save(record, path)


@pytest.mark.parametrize("damage", [_garbage, _truncated, _wrong_content, _missing_key])
def test_a_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, damage):
    cfg = synthetic(tmp_path)
    original = load_data(cfg)
    damage(cache_path(cfg))
    log: list[str] = []
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = load_data(cfg, log=log.append)
    assert any("decoding" in line for line in log)
    assert torch.equal(rebuilt.train_images, original.train_images)
    assert torch.equal(rebuilt.test_labels, original.test_labels)
    assert load_data(cfg).train_labels.dtype == torch.int64  # the file on disk is sound again


_RACE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import ninsweep.core.data as data
    from ninsweep.config import DataConfig

    work, me = Path(sys.argv[1]), sys.argv[2]
    real_decoder = data._generate_synthetic

    def slow_counted_decoder(cfg, scan, log):
        with open(work / "decodes", "a") as counter:
            counter.write(me + "\\n")
        time.sleep(1.0)  # hold the lock while the other process arrives
        return real_decoder(cfg, scan, log)

    data._generate_synthetic = slow_counted_decoder  # SOURCES names it; looked up per load
    (work / f"ready-{me}").touch()
    while len(list(work.glob("ready-*"))) < 2:  # start both loads together
        time.sleep(0.005)
    cfg = DataConfig(source="synthetic", cache_dir=str(work / "cache"),
                     synthetic_train_size=300, synthetic_test_size=50)
    log = []
    images = data.load_data(cfg, log=log.append)
    role = "built" if any("decoding" in line for line in log) else (
        "waited" if any("waiting" in line for line in log) else "late")
    print(role, int(images.train_images.double().sum()), int(images.test_labels.sum()))
""")


def test_every_source_names_a_decoder():
    assert set(SOURCES) == {"cifar10", "imagefolder", "synthetic", "factory"}
    assert all(callable(resolve(path)) for path in SOURCES.values())


def test_two_processes_racing_build_the_cache_once(tmp_path):
    python_path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=python_path)
    racers = [subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path), name], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for name in ("a", "b")]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        results.append(out.split())
    assert len((tmp_path / "decodes").read_text().split()) == 1, "the source was decoded twice"
    assert sorted(result[0] for result in results) == ["built", "waited"]
    assert results[0][1:] == results[1][1:]  # both see the same data


# ----------------------------------------------------------------------------- imagefolder

def make_image_folder(root: Path, classes=("frog", "cat", "dog"), counts=(6, 3), size=(8, 8),
                      suffix_of=None) -> dict[bytes, int]:
    """Random images at root/{train,test}/<class>/NNN<suffix>; returns HWC bytes -> label.

    Labels follow the sorted class names, as the loader must assign them.
    """
    rng = np.random.default_rng(0)
    label_of = {name: label for label, name in enumerate(sorted(classes))}
    written = {}
    for split, count in zip(("train", "test"), counts):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            suffix = (suffix_of or {}).get(name, ".png")
            for index in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:03d}{suffix}")
                written[pixels.tobytes()] = label_of[name]
    return written


def folder_config(root: Path, tmp_path: Path, **overrides) -> DataConfig:
    return DataConfig(source="imagefolder", root=str(root), cache_dir=str(tmp_path / "cache"),
                      **overrides)


def test_imagefolder_decodes_every_image_with_sorted_class_labels(tmp_path):
    root = tmp_path / "images"
    written = make_image_folder(root, suffix_of={"frog": ".png", "cat": ".bmp", "dog": ".png"})
    (root / "train" / "cat" / "README.txt").write_text("not an image")  # ignored
    images = load_data(folder_config(root, tmp_path))

    assert images.classes == ("cat", "dog", "frog")
    assert images.train_images.shape == (18, 3, 8, 8) and images.test_images.shape == (9, 3, 8, 8)
    for split in ("train", "test"):
        for image, label in zip(getattr(images, f"{split}_images"),
                                getattr(images, f"{split}_labels")):
            key = image.permute(1, 2, 0).contiguous().numpy().tobytes()
            assert written.get(key) == int(label)  # lossless formats: exact pixels, right label
    # The fixed permutation mixes the classes: a prefix is not one class.
    assert len(set(images.train_labels[:6].tolist())) >= 2
    rebuilt = load_data(folder_config(root, tmp_path / "again"))  # a second, separate cache
    assert torch.equal(images.train_labels, rebuilt.train_labels)


def test_imagefolder_reads_jpeg_and_converts_to_rgb(tmp_path):
    root = tmp_path / "images"
    for split in ("train", "test"):
        for name, colour in (("red", (200, 20, 20)), ("grey", (128, 128, 128))):
            folder = root / split / name
            folder.mkdir(parents=True)
            Image.new("RGB", (12, 10), colour).save(folder / "a.jpg", quality=95)
            Image.new("L", (12, 10), 128).save(folder / "b.jpeg")  # greyscale -> 3 channels
    images = load_data(folder_config(root, tmp_path))
    assert images.train_images.shape == (4, 3, 10, 12)
    red = images.train_images[images.train_labels == images.classes.index("red")].float()
    assert red.shape[0] == 2 and red.max() > 150  # the red image's red channel survived


def test_imagefolder_cache_notices_added_images(tmp_path):
    root = tmp_path / "images"
    make_image_folder(root)
    assert len(load_data(folder_config(root, tmp_path)).train_labels) == 18
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "cat" / "new.png")
    log: list[str] = []
    assert len(load_data(folder_config(root, tmp_path), log=log.append).train_labels) == 19
    assert any("out of date" in line for line in log)


def _no_train(root: Path) -> Path:
    shutil.rmtree(root / "train")
    return root


def _no_test(root: Path) -> Path:
    shutil.rmtree(root / "test")
    return root


def _no_class_folders(root: Path) -> Path:
    shutil.rmtree(root / "train")
    (root / "train").mkdir()
    return root / "train"


def _empty_class(root: Path) -> Path:
    for image in (root / "train" / "dog").iterdir():
        image.unlink()
    (root / "train" / "dog" / "notes.txt").write_text("no images here")
    return root / "train" / "dog"


def _different_classes(root: Path) -> Path:
    (root / "test" / "frog").rename(root / "test" / "toad")
    return root


def _undecodable(root: Path) -> Path:
    bad = root / "train" / "dog" / "001.png"
    bad.write_bytes(b"this is not a PNG at all")
    return bad


def _odd_size(root: Path) -> Path:
    odd = root / "test" / "cat" / "002.png"
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(odd)
    return odd


@pytest.mark.parametrize("breaker, problem", [
    (_no_train, "missing the train/ folder"),
    (_no_test, "missing the test/ folder"),
    (_no_class_folders, "no class folders"),
    (_empty_class, "class folder has no images"),
    (_different_classes, r"different class folders \(only in train: frog; only in test: toad\)"),
    (_undecodable, "cannot decode image"),
    (_odd_size, "image is 9x8, expected 8x8"),
])
def test_imagefolder_errors_name_the_path_and_problem(tmp_path, breaker, problem):
    root = tmp_path / "images"
    make_image_folder(root)
    culprit = breaker(root)
    with pytest.raises(DataError, match=problem) as raised:
        load_data(folder_config(root, tmp_path))
    message = str(raised.value)
    assert str(culprit) in message and "\n" not in message


def test_imagefolder_missing_or_non_directory_root(tmp_path):
    with pytest.raises(DataError, match="does not exist") as raised:
        load_data(folder_config(tmp_path / "nowhere", tmp_path))
    assert str(tmp_path / "nowhere") in str(raised.value)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        load_data(folder_config(a_file, tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_imagefolder_unreadable_root(tmp_path):
    root = tmp_path / "images"
    make_image_folder(root)
    root.chmod(0)
    try:
        with pytest.raises(DataError, match="cannot read directory"):
            load_data(folder_config(root, tmp_path))
    finally:
        root.chmod(0o755)


# ----------------------------------------------------------------------------- cifar10

def write_fake_cifar10(root: Path, per_batch: int = 8, test_count: int = 6) -> np.ndarray:
    """The pickled python format of cifar-10-batches-py with random content; returns train rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []

    def batch(name: str, count: int) -> None:
        pixels = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as stream:
            pickle.dump({"data": pixels, "labels": rng.integers(0, 10, count).tolist()}, stream)
        rows.append(pixels)

    for index in range(1, 6):
        batch(f"data_batch_{index}", per_batch)
    batch("test_batch", test_count)
    with open(folder / "batches.meta", "wb") as stream:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, stream)
    return np.concatenate(rows[:5])


@pytest.fixture
def trust_fake_cifar10(monkeypatch):
    """torchvision checks real md5 sums; let the fake files pass as long as they exist."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda path, md5=None: os.path.isfile(path))


def test_cifar10_loads_the_python_batches(tmp_path, trust_fake_cifar10):
    root = tmp_path / "cifar"
    train_rows = write_fake_cifar10(root)
    images = load_data(DataConfig(root=str(root), cache_dir=str(tmp_path / "cache")))
    assert images.classes == CIFAR10_CLASSES
    assert images.train_images.shape == (40, 3, 32, 32)
    assert images.test_images.shape == (6, 3, 32, 32)
    # Rows are R plane, G plane, B plane: the cache is NCHW in the batches' order.
    assert torch.equal(images.train_images, torch.from_numpy(train_rows).view(40, 3, 32, 32))
    assert (root / "cifar-10.download.lock").exists()


def test_cifar10_downloads_under_a_lock_when_absent(tmp_path, trust_fake_cifar10, monkeypatch):
    root = tmp_path / "fresh" / "cifar"  # not there yet: created
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        assert Path(str(root) + "/cifar-10.download.lock").exists()
        calls.append((url, Path(download_root), md5))
        write_fake_cifar10(Path(download_root))

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fake_download)
    monkeypatch.setenv("NINSWEEP_DATA_DIR", str(root))
    images = load_data(DataConfig(cache_dir=str(tmp_path / "cache")))
    assert len(images.train_labels) == 40
    assert calls == [(torchvision.datasets.CIFAR10.url, root, torchvision.datasets.CIFAR10.tgz_md5)]


def test_cifar10_download_failure_is_a_data_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    root = tmp_path / "cifar"
    with pytest.raises(DataError, match="cannot download or verify CIFAR-10") as raised:
        load_data(DataConfig(root=str(root), cache_dir=str(tmp_path / "cache")))
    assert str(root) in str(raised.value)
    file_root = tmp_path / "a-file"
    file_root.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        load_data(DataConfig(root=str(file_root), cache_dir=str(tmp_path / "cache")))


# ----------------------------------------------------------------------------- DeviceLoader

MEAN, STD = (120.0, 115.0, 100.0), (60.0, 55.0, 65.0)


def random_split(count: int = 300, size: int = 16, seed: int = 0):
    """Noise images (every crop window distinct) labelled with their own index."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(count)


def loader(images, labels, **overrides) -> DeviceLoader:
    settings = dict(batch_size=64, device="cpu", mean=MEAN, std=STD, train=True)
    settings.update(overrides)
    return DeviceLoader(images, labels, **settings)


def find_windows(x: torch.Tensor, ids: torch.Tensor, images: torch.Tensor, pad: int):
    """For each output image: the unique (dy, dx, flipped) window of its zero-padded source."""
    height, width = images.shape[2:]
    padded = F.pad(normalise(images[ids], MEAN, STD), (pad, pad, pad, pad))
    windows = padded.unfold(2, height, 1).unfold(3, width, 1)  # [B, C, dy, dx, H, W]
    output = x.double()[:, :, None, None]
    distance = torch.stack([(windows - output).abs().amax(dim=(1, 4, 5)),
                            (windows.flip(-1) - output).abs().amax(dim=(1, 4, 5))], dim=-1)
    matches = (distance < 1e-4).flatten(1)  # [B, dy * dx * flipped]
    assert (matches.sum(dim=1) == 1).all(), "not exactly one window of the padded image"
    code = matches.to(torch.uint8).argmax(dim=1)
    span = 2 * pad + 1
    return torch.stack([code // (2 * span), (code // 2) % span, code % 2], dim=1)


def test_augmented_batches_are_exact_windows_covering_every_offset(tmp_path):
    images, labels = random_split()
    train = loader(images, labels, crop_padding=4, flip_probability=0.5)
    generator = torch.Generator().manual_seed(0)
    windows = []
    for _ in range(3):
        seen = []
        for x, y in train.epoch(generator):
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16)
            windows.append(find_windows(x, y, images, pad=4))
            seen.append(y)
        assert torch.equal(torch.cat(seen).sort().values, labels)  # each image once an epoch
    windows = torch.cat(windows)
    offsets = set(map(tuple, windows[:, :2].tolist()))
    assert offsets == {(dy, dx) for dy in range(9) for dx in range(9)}
    assert abs(windows[:, :2].double().mean().item() - 4.0) < 0.3
    flip_rate = windows[:, 2].double().mean().item()
    assert abs(flip_rate - 0.5) < 4 * (0.25 / len(windows)) ** 0.5  # 4 sigma


@pytest.mark.parametrize("flip_probability", [0.0, 1.0])
def test_no_padding_gives_the_normalised_image_or_its_exact_mirror(flip_probability):
    images, labels = random_split(count=100)
    train = loader(images, labels, crop_padding=0, flip_probability=flip_probability)
    for x, y in train.epoch(torch.Generator().manual_seed(3)):
        expected = normalise(images[y], MEAN, STD)
        if flip_probability == 1.0:
            expected = expected.flip(3)
        assert torch.allclose(x.double(), expected, atol=1e-5)


def test_evaluation_is_in_order_unaugmented_and_ignores_the_generator():
    images, labels = random_split(count=150)
    evaluation = loader(images, labels, train=False, batch_size=64)
    batches = list(evaluation.epoch(None))
    assert [len(y) for _, y in batches] == [64, 64, 22]
    x = torch.cat([x for x, _ in batches])
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    assert torch.allclose(x.double(), normalise(images, MEAN, STD), atol=1e-5)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    list(evaluation.epoch(generator))
    assert torch.equal(generator.get_state(), state)


def test_shuffled_without_augmentation():
    images, labels = random_split(count=100)
    train = loader(images, labels, augment=False)
    x, y = next(iter(train.epoch(torch.Generator().manual_seed(0))))
    assert not torch.equal(y, labels[:64])
    assert torch.allclose(x.double(), normalise(images[y], MEAN, STD), atol=1e-5)


def test_lengths_and_the_last_partial_batch():
    tiny = torch.zeros(50000, 3, 1, 1, dtype=torch.uint8)
    assert len(DeviceLoader(tiny, torch.zeros(50000, dtype=torch.int64), batch_size=128,
                            device="cpu", mean=MEAN, std=STD, train=True)) == 391
    images, labels = random_split(count=1000, size=8)
    for train in (True, False):
        batches = loader(images, labels, batch_size=128, train=train)
        sizes = [len(y) for _, y in batches.epoch(torch.Generator())]
        assert len(batches) == len(sizes) == 8 and sizes == [128] * 7 + [104]
        assert batches.num_images == 1000


def test_same_generator_state_gives_identical_epochs():
    images, labels = random_split(count=200)
    train = loader(images, labels)
    generator = torch.Generator().manual_seed(11)
    first = list(train.epoch(generator))
    saved = generator.get_state()  # what a checkpoint between epochs stores
    second = list(train.epoch(generator))
    resumed = torch.Generator()
    resumed.set_state(saved)
    replay = list(train.epoch(resumed))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(second, replay))
    assert not torch.equal(first[0][1], second[0][1])
    # Every draw happens at the epoch() call, so stopping early leaves the same state.
    assert torch.equal(generator.get_state(), resumed.get_state())
    early = torch.Generator()
    early.set_state(saved)
    next(iter(train.epoch(early)))
    assert torch.equal(early.get_state(), generator.get_state())


def test_memory_format_and_argument_checks():
    images, labels = random_split(count=10, size=8)
    x, _ = next(iter(loader(images, labels, channels_last=True).epoch(torch.Generator())))
    assert x.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(iter(loader(images, labels, channels_last=False).epoch(torch.Generator())))
    assert x.is_contiguous()
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        loader(images, labels).epoch(None)
    with pytest.raises(ValueError, match="uint8"):
        loader(images.float(), labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu_batches():
    images, labels = random_split(count=300)
    on_cpu = list(loader(images, labels).epoch(torch.Generator().manual_seed(2)))
    on_gpu = list(loader(images, labels, device="cuda").epoch(torch.Generator().manual_seed(2)))
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(on_cpu, on_gpu):
        assert x_gpu.device.type == "cuda"
        assert torch.equal(y_cpu, y_gpu.cpu())
        assert torch.allclose(x_cpu, x_gpu.cpu(), atol=1e-6)


# ----------------------------------------------------------------------------- real CIFAR-10

# ~10 s on an idle 2-core machine (unzip ~5 s, decode 60,000 JPEGs ~5 s), over 60 s when busy.
@pytest.mark.slow
def test_real_cifar10_jpeg_folder(cifar10_jpeg_root):
    cfg = DataConfig(source="imagefolder", root=str(cifar10_jpeg_root),
                     cache_dir=str(cifar10_jpeg_root.parent / "cifar10-jpeg-cache"))
    started = time.perf_counter()
    images = load_data(cfg)
    load_seconds = time.perf_counter() - started
    assert images.classes == CIFAR10_CLASSES
    assert images.train_images.shape == (50000, 3, 32, 32)
    assert images.test_images.shape == (10000, 3, 32, 32)
    assert torch.equal(torch.bincount(images.train_labels), torch.full((10,), 5000))
    # JPEG moves the statistics a little from the reference's PNG-exact numbers.
    reference_mean, reference_std = (125.307, 122.950, 113.865), (62.9932, 62.0887, 66.7048)
    assert all(abs(a - b) < 1.0 for a, b in zip(images.mean, reference_mean))
    assert all(abs(a - b) < 1.0 for a, b in zip(images.std, reference_std))
    # The fixed permutation keeps a 1000-image prefix roughly balanced.
    prefix_counts = torch.bincount(images.train_labels[:1000], minlength=10)
    assert prefix_counts.min() >= 60 and prefix_counts.max() <= 140

    started = time.perf_counter()
    again = load_data(DataConfig(**{**cfg.__dict__, "train_subset": 1000}))
    assert time.perf_counter() - started < 1.0
    assert torch.equal(again.train_labels, images.train_labels[:1000])
    print(f"first load (decode unless another test did) {load_seconds:.1f} s")


def test_cpu_training_reads_the_cached_split_in_place(tmp_path):
    """The cache is stored channels_last, DeviceLoader's layout: on CPU no private copy."""
    cfg = synthetic(tmp_path)
    load_data(cfg)  # build
    data = load_data(cfg)  # memory-mapped from the cache file
    assert data.train_images.is_contiguous(memory_format=torch.channels_last)
    loader = DeviceLoader(data.train_images, data.train_labels, batch_size=32, device="cpu",
                          mean=data.mean, std=data.std, train=True)
    assert loader._images.data_ptr() == data.train_images.data_ptr()
