"""The device check rehearsed in an environment that is the GPU machine's (issue 18).

bench/rehearsal_env.py builds a venv with only what bench/gpu-box/packages.txt says the GPU
machine has (offline, from this machine's package mirror; cached, keyed by that list), and
bench/run_gpu.sh --tiny runs in it as it would there: installing the cp311 twins of the
wheels the check carries (bench/carry_wheels.py, from the download cache; Ray repacked by
bench/repack_ray.py) before any part. An import that neither the machine nor the carried
wheels satisfy fails these tests, as it would fail the first minute on the machine.

Cost: building the environment once (about 1-2 minutes on 2 cores, then cached) and
repacking the cp311 Ray wheel once (cached); then job check (the parts of issue 14, tiny)
and job sweep (part (d): two `ninsweep run smoke` through Ray, so inside tests/run.sh's
namespace). The wheels come from ~/.cache/ninsweep/wheels: `bash bench/prepare_gpu_check.sh
--rehearsal` fills it (PyPI); without it these tests skip and say so.
"""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from ray_support import BENCH, ROOT, load_bench, needs_netns

sys.path.insert(0, str(BENCH))

import carry_wheels  # noqa: E402
import payload_plan  # noqa: E402
import rehearsal_env  # noqa: E402
import repack_ray  # noqa: E402

sys.path.remove(str(BENCH))


# -- the environment and the carried wheels, built once --------------------------------------

@pytest.fixture(scope="session")
def rehearsal_python() -> Path:
    done = subprocess.run([sys.executable, str(BENCH / "rehearsal_env.py")], capture_output=True,
                          text=True, timeout=1800, env=rehearsal_env.clean_env())
    if done.returncode != 0 and "no local package source" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def carried_cp311() -> Path:
    """The cp311 wheels of bench/gpu-box/carry.txt as a job would carry them (WHEELS/cp311/
    GROUP/*.whl), built from the download cache into a cache folder keyed by the carry list
    and the repacking script."""
    key = hashlib.sha256((BENCH / "gpu-box" / "carry.txt").read_bytes()
                         + (BENCH / "repack_ray.py").read_bytes()).hexdigest()[:16]
    carry = rehearsal_env.cache_root() / f"carry-{key}"
    wheels = carry / "wheels"
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    if not (wheels / tag / "SHA256SUMS").is_file():
        cache = carry_wheels.default_cache() / tag
        missing = []
        for group in carry_wheels.read_carry_list().values():
            for requirement in group:
                try:
                    carry_wheels.wheel_for(requirement, cache)
                except FileNotFoundError:
                    missing.append(requirement)
        if missing:
            pytest.skip(f"not in the wheel cache {cache}: {', '.join(missing)}; run "
                        "bash bench/prepare_gpu_check.sh --rehearsal (needs PyPI)")
        done = subprocess.run([sys.executable, str(BENCH / "carry_wheels.py"), "--python",
                               f"{sys.version_info[0]}.{sys.version_info[1]}", "--carry",
                               str(carry)], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return wheels


def tiny_jpeg_archive(path: Path, size=16, train=6, test=3) -> Path:
    """A .tar.gz like cifar10-jpeg.tar.gz (cifar10/{train,test}/<class>/*.jpg), tiny."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        for split, count in (("train", train), ("test", test)):
            for label in range(10):
                for index in range(count):
                    pixels = rng.integers(0, 60, (size, size, 3)) + 19 * label
                    buffer = io.BytesIO()
                    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG")
                    info = tarfile.TarInfo(f"cifar10/{split}/c{label}/{index:04d}.jpg")
                    info.size = buffer.tell()
                    buffer.seek(0)
                    archive.addfile(info, buffer)
    return path


def check_env(tmp_path: Path, python: Path, wheels: Path, **extra) -> dict:
    """run_gpu.sh's environment for a rehearsal: the rehearsal python, nothing of our venv."""
    env = rehearsal_env.clean_env()
    env.update(OUT=str(tmp_path / "out"), PYTHON=str(python), CARRY_WHEELS=str(wheels),
               CARRY_SITE=str(tmp_path / "site"), NINSWEEP_CACHE_DIR=str(tmp_path / "cache"),
               NINSWEEP_STORAGE=str(tmp_path / "runs"), CHECK_WORK_DIR=str(tmp_path / "work"),
               RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def run_check(env: dict, *args, timeout=1700) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(BENCH / "run_gpu.sh"), "--tiny", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


# -- the environment is the machine's ---------------------------------------------------------

@pytest.mark.slow
def test_the_rehearsal_env_has_what_the_gpu_machine_has_and_lacks_what_it_lacks(
        rehearsal_python):
    packages = rehearsal_env.read_packages()
    found = rehearsal_env.importable(rehearsal_python, [*packages.lack.values(), "torch",
                                                        "yaml", "PIL", "pandas", "aiohttp"])
    assert not [module for module in packages.lack.values() if found[module]]
    assert found["torch"] and found["yaml"] and found["PIL"] and found["pandas"]
    assert found["aiohttp"]
    done = subprocess.run([str(rehearsal_python), "-c", "import sys; print('\\n'.join(sys.path))"],
                          capture_output=True, text=True, env=rehearsal_env.clean_env(), check=True)
    assert not [p for p in done.stdout.splitlines() if "/.venv/" in p or "/work/" in p]


def test_the_machine_list_is_read_and_keys_the_cache():
    packages = rehearsal_env.read_packages()
    assert packages.python == "3.12.3" and packages.versions_there["torch"] == "2.11.0"
    assert {"pydantic", "pydantic-core", "annotated-types", "typing-inspection", "ray",
            "tensorboardX", "jsonschema"} <= set(packages.lack)
    # Every package the check carries is one the machine lacks (or shadows, as
    # typing_extensions), never one the list says it has.
    carried = {r.split("==")[0] for g in carry_wheels.read_carry_list().values() for r in g}
    assert not carried & set(packages.have)
    assert {"pydantic", "pydantic-core", "annotated-types", "typing-inspection",
            "ray"} <= carried
    assert len(rehearsal_env.env_key()) == 16


def test_a_bad_machine_list_line_is_one_error(tmp_path):
    path = tmp_path / "packages.txt"
    path.write_text("python 3.12.3\nhave torch\nwant pydantic\n")
    with pytest.raises(ValueError, match=r"packages.txt:3: cannot read 'want pydantic'"):
        rehearsal_env.read_packages(path)


# -- the check in it -------------------------------------------------------------------------

@pytest.mark.slow
def test_the_check_stops_before_any_part_when_an_import_is_missing(tmp_path, rehearsal_python):
    # No carried wheels: the machine has no pydantic, so ninsweep.config cannot import. The
    # check must say so in one line before any part, not fail every part a minute later.
    (tmp_path / "empty").mkdir()
    done = run_check(check_env(tmp_path, rehearsal_python, tmp_path / "empty"), "--job", "check",
                     timeout=300)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "carry_install: import pydantic: ModuleNotFoundError" in done.stdout
    assert "stopped before any part" in done.stdout
    assert (tmp_path / "out" / "status.txt").read_text() == "install 3\n"


@pytest.mark.slow
def test_device_check_job_check_runs_in_the_rehearsal_env_and_survives_a_failing_compile(
        tmp_path, rehearsal_python, carried_cp311):
    # bench/run_gpu.sh --tiny --job check as on the machine: the carried wheels first, then
    # parts (a)-(c) on CPU at tiny sizes, the probe on a .tar.gz like the real one. The
    # compile part gets a backend that does not exist, so it fails the way a broken
    # torch.compile would: the check must report that and still run the probe and summary.
    env = check_env(tmp_path, rehearsal_python, carried_cp311,
                    CIFAR_ARCHIVE=str(tiny_jpeg_archive(tmp_path / "tiny.tar.gz")),
                    COMPILE_BACKEND="no_such_backend",
                    # Generous budgets: on 2 shared cores a part can take minutes; the
                    # budgets' own logic is what --tiny's defaults and the GPU run exercise.
                    GPU_CHECK_BUDGET_S="1500", GRID_EAGER_S="400", GRID_COMPILE_S="300")
    done = run_check(env, "--job", "check")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    versions = (out / "versions.txt").read_text()
    assert "imports of check: ok" in versions
    assert f"pydantic           2.14.4         carried: {tmp_path / 'site'}" in versions
    assert "torch" in versions and "the machine's" in versions

    result = json.loads((out / "device_check.json").read_text())
    assert set(result["parts"]) == {"eager", "compile", "fidelity"}
    assert result["parts"]["eager"] == "ok" and result["parts"]["fidelity"] == "ok"
    assert result["parts"]["compile"].startswith("failed (exit 1)")
    assert "no_such_backend" in result["parts"]["compile"]

    # Part (a)'s own JSON: every figure it promises (was tests/test_bench.py's run of it).
    grid = json.loads((out / "grid_eager.json").read_text())
    assert grid["device"]["type"] == "cpu" and grid["peak"]["measured_tflops"] > 0
    assert grid["peak"]["datasheet_tflops"] is None  # no datasheet peak on CPU
    flop = grid["flop"]
    assert len(flop["forward_per_image"]) == 10 and flop["grid_total"] > 0
    for table in ("forward_per_image", "forward_per_image_cifar",
                  "counted_forward_backward_per_image"):
        assert all(v > 0 for v in flop[table].values()), table
    assert [p["models"] for p in grid["packings"]] == [1, 2]
    for packing in grid["packings"]:
        assert len(packing["per_model"]) == packing["models"]
        for key in ("aggregate_images_per_s", "aggregate_tflops", "mfu_measured_peak",
                    "projected_grid_minutes", "projected_grid_minutes_flat",
                    "projected_grid_minutes_by_images"):
            assert packing[key] > 0, key
        for model in packing["per_model"]:
            for key in ("images_per_s", "train_images_per_s", "tflops", "wall_s", "epochs"):
                assert model[key] > 0, key
    assert [m["trial"] for m in grid["packings"][1]["per_model"]] == [
        "relu-nobn-keras", "relu-nobn-he"]
    assert grid["best"]["models"] in (1, 2) and grid["best"]["projected_grid_minutes"] > 0
    assert grid["checkpoint"]["size_mb"] > 0 and grid["checkpoint"]["save_s"] > 0
    assert grid["workers"]["steps_per_epoch"] == 1 and grid["workers"]["data_on_device_mb"] > 0
    assert "best packing" in (out / "grid_eager.log").read_text()

    eager = result["eager"]
    assert [row["models"] for row in eager["rows"]] == [1, 2]
    for row in eager["rows"]:
        assert row["aggregate_images_per_s"] > 0 and row["mfu_measured_peak"] > 0
        assert set(row["projected_minutes"]) == {"lab4", "lab4-3seeds"}
    assert eager["trial_start_s"] > 0

    fidelity = result["fidelity"]
    assert set(fidelity["models"]) == {"ELU+BN+WI", "ReLU"}
    epochs = fidelity["plan"]["epochs"]
    assert 1 <= epochs <= 3
    for model in fidelity["models"].values():
        assert [r["epoch"] for r in model["history"]] == list(range(1, epochs + 1))
        assert all(0 <= r["test_acc"] <= 1 for r in model["history"])

    text = (out / "summary.md").read_text()
    for heading in ("## (a) Throughput", "## (b) Fidelity probe", "## (c) Projected wall time"):
        assert heading in text
    assert "## (d)" not in text  # job sweep's part
    assert "**torch.compile:** no measurement (failed" in text


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
def test_device_check_job_sweep_runs_ninsweep_through_the_carried_ray(
        tmp_path, rehearsal_python, carried_cp311):
    # Part (d) as on the machine, on CPU: Ray from the repacked cp311 wheel, installed into
    # an empty target; `ninsweep run` of 2 of smoke's trials (the suite's time: each run
    # starts its own Ray) for 1 epoch on images from a .tar.gz (as the real run reads
    # cifar10-jpeg.tar.gz), both at once (1 CPU each), then 1 at a time (2 CPUs each);
    # every figure read back from the experiments.
    import yaml

    space = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    space["grid"] = [{"activation": ["relu", "elu"], "batchnorm": [True], "init": ["he"]}]
    space["seeds"] = [0]  # smoke's two seeds would make it 4 trials
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(space))
    archive = tiny_jpeg_archive(tmp_path / "tiny.tar.gz", train=8, test=3)  # batch 64 fits
    # A generous budget (the packed run may use 40% of it): on 2 cores shared with other
    # suites, starting and stopping Ray alone has taken over a minute.
    env = check_env(tmp_path, rehearsal_python, carried_cp311, CIFAR_ARCHIVE=str(archive),
                    RAY_SWEEP_SPACE=str(tmp_path / "two.yaml"), RAY_SWEEP_S="1200")
    done = run_check(env, "--job", "sweep")
    out = tmp_path / "out"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    versions = (out / "versions.txt").read_text()
    assert "imports of check, sweep: ok" in versions
    assert f"ray                2.60.0         carried: {tmp_path / 'site'}" in versions
    assert not list((tmp_path / "site").rglob("ray_dist.jar"))  # the repacked wheel

    result = json.loads((out / "ray_sweep.json").read_text())
    assert result["data"]["source"] == str(archive)
    assert set(result["runs"]) == {"packed", "single"}
    for key, run in result["runs"].items():
        assert run["exit"] == 0 and not run["cut"], key
        assert run["trials_trained"] == 2, key
        assert run["train_images"] == 2 * 80, key  # every image of the archive, once
        assert [t["trial"] for t in run["trials"]] == ["elu-bn-he-s0", "relu-bn-he-s0"], key
        assert run["aggregate_images_per_s"] > 0 and run["projected_lab4_minutes"] > 0
        for trial in run["trials"]:
            assert trial["epochs"] == 1 and trial["error"] is None
            assert trial["gpu_ids"] == "[]" and trial["device"] == "cpu"
            assert trial["bf16"] is False and trial["peak_gpu_mem_mb"] is None
            assert trial["device_line"].startswith("cpu (")
            assert trial["median_images_per_s"] > 0 and trial["start_s"] >= 0
    assert result["packed_vs_single"] > 0
    assert result["device"]["bf16_peak_tflops"] is None  # no MFU on CPU

    summary = json.loads((out / "device_check.json").read_text())
    assert summary["parts"] == {"ray": "ok"}
    text = (out / "summary.md").read_text()
    assert "## (d) The mission's path" in text and "## (a)" not in text
    assert "packed / one at a time, aggregate images/s" in text


# -- the Ray wheel, repacked ------------------------------------------------------------------

def downloaded_ray(tag: str) -> Path:
    cache = carry_wheels.default_cache() / tag
    requirement = next(r for g in carry_wheels.read_carry_list().values() for r in g
                       if r.startswith("ray=="))
    try:
        return carry_wheels.wheel_for(requirement, cache)
    except FileNotFoundError:
        pytest.skip(f"no {requirement} wheel for {tag} in {cache}: run bash "
                    "bench/prepare_gpu_check.sh --rehearsal (needs PyPI)")


def test_the_cp311_and_cp312_ray_wheels_repack_to_the_same_file_list():
    # Reads the two downloaded wheels' listings (no repacking: the repacked one is checked
    # against its source below): what is kept of each, ABI tags aside, is the same list.
    kept = {}
    for tag in ("cp311", "cp312"):
        names = repack_ray.file_list(downloaded_ray(tag), normalise=True)
        kept[tag] = [n for n in names if repack_ray.kept(n)]
        assert any(n.startswith("ray/jars/") for n in names)  # what is dropped was there
    assert kept["cp311"] == kept["cp312"]
    assert not [n for n in kept["cp311"] if n.startswith(repack_ray.DROPPED)]
    assert "ray/dashboard/agent.py" in kept["cp311"]  # the node agent's Python stays


@pytest.mark.slow
def test_the_repacked_wheel_is_its_source_less_the_dropped_files(carried_cp311):
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    source = downloaded_ray(tag)
    repacked = carried_cp311 / tag / "ray" / source.name
    assert repack_ray.file_list(repacked) == [n for n in repack_ray.file_list(source)
                                              if repack_ray.kept(n)]
    with zipfile.ZipFile(repacked) as wheel:
        record = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
        listed = {line.split(",", 1)[0] for line in wheel.read(record).decode().splitlines()}
        assert listed == set(wheel.namelist())  # pip checks RECORD against the archive
    sums = (carried_cp311 / tag / "SHA256SUMS").read_text()
    assert f"{repack_ray.sha256(repacked)} ray/{source.name}" in sums


def test_repacking_is_deterministic_and_keeps_modes(tmp_path):
    wheel = tmp_path / "src" / "ray-9.9.9-cp311-cp311-manylinux2014_x86_64.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as out:
        for name in ("ray/__init__.py", "ray/jars/ray_dist.jar",
                     "ray/dashboard/client/build/index.html", "ray/dashboard/agent.py"):
            out.writestr(name, "x")
        binary = zipfile.ZipInfo("ray/core/src/ray/raylet/raylet")
        binary.external_attr = 0o100755 << 16
        out.writestr(binary, "\x7fELF")
        out.writestr("ray-9.9.9.dist-info/RECORD", "ray/__init__.py,sha256=a,1\n"
                     "ray/jars/ray_dist.jar,sha256=b,1\nray/dashboard/agent.py,sha256=c,1\n"
                     "ray/core/src/ray/raylet/raylet,sha256=d,4\nray-9.9.9.dist-info/RECORD,,\n")
    first = repack_ray.repack(wheel, tmp_path / "a")
    second = repack_ray.repack(wheel, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert repack_ray.file_list(first) == ["ray-9.9.9.dist-info/RECORD", "ray/__init__.py",
                                           "ray/core/src/ray/raylet/raylet",
                                           "ray/dashboard/agent.py"]
    with zipfile.ZipFile(first) as repacked:
        assert repacked.getinfo("ray/core/src/ray/raylet/raylet").external_attr >> 16 == 0o100755
        assert "ray_dist.jar" not in repacked.read("ray-9.9.9.dist-info/RECORD").decode()
    assert repack_ray.main([str(tmp_path / "missing.whl"), str(tmp_path)]) == 2


# -- the payload plan ------------------------------------------------------------------------

def git_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / ".carry" / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("/.carry/\n")
    (root / "code.py").write_text("print(1)\n")
    subprocess.run(["git", "-C", str(root), "add", ".gitignore", "code.py"], check=True)
    (root / "notes.txt").write_text("untracked\n")
    return root


def test_the_payload_plan_counts_tree_untracked_and_carried_and_refuses_over_64_mib(tmp_path):
    root = git_tree(tmp_path)
    with open(root / ".carry" / "data" / "big.bin", "wb") as handle:
        handle.truncate(60 * 2**20)  # sparse: counts as sent, costs no disk
    (root / ".carry" / "other").mkdir()
    (root / ".carry" / "other" / "unsent.bin").write_bytes(b"x" * 2**20)  # not carried
    jobs = {"one": {"command": "c", "timeout_s": 1, "carry": [".carry/data"], "parts": "p"}}
    result = payload_plan.plan("one", root, jobs)
    assert result["ok"] and result["total_bytes"] == (60 * 2**20 + len("print(1)\n")
                                                      + len("/.carry/\n") + len("untracked\n"))
    assert result["parts"]["untracked, not ignored"]["files"] == 1
    assert result["parts"]["carried"]["largest"][0] == [".carry/data/big.bin", 60 * 2**20]

    with open(root / ".carry" / "data" / "big.bin", "wb") as handle:
        handle.truncate(64 * 2**20)
    result = payload_plan.plan("one", root, jobs)
    assert not result["ok"] and "REFUSED: over the limit" in payload_plan.describe(result)

    jobs["one"]["carry"].append(".carry/absent")
    (root / ".carry" / "data" / "big.bin").unlink()
    result = payload_plan.plan("one", root, jobs)
    assert not result["ok"] and result["missing_carry"] == [".carry/absent"]


def test_the_payload_plan_of_the_real_jobs_runs_and_rejects_an_unknown_job():
    done = subprocess.run([sys.executable, str(BENCH / "payload_plan.py"), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr  # 1: .carry not prepared on this machine
    results = json.loads(done.stdout)
    assert [r["job"] for r in results] == ["check", "sweep"]
    for result in results:
        assert result["parts"]["tracked tree"]["bytes"] < 4 * 2**20  # the repo stays small
    done = subprocess.run([sys.executable, str(BENCH / "payload_plan.py"), "nope"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1


# -- part (d)'s reading of an experiment, as a GPU run writes it ------------------------------

def fake_trial(experiment: Path, name: str, device: str, ids: str, records: list[dict]) -> None:
    trial = experiment / name
    trial.mkdir(parents=True)
    config = {"model": {"activation": "relu"}, "train": {"amp": True},
              "data": {"source": "synthetic", "synthetic_train_size": 500,
                       "synthetic_test_size": 100, "synthetic_image_size": 32,
                       "train_subset": None, "test_subset": None, "val_size": 0}}
    (trial / "params.json").write_text(json.dumps({"trial": {"name": name, "config": config}}))
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    (trial / "trial.log").write_text(
        f"{name}: Ray granted GPU ids {ids}; training on {device}\n"
        f"{name}: device cuda:0 (NVIDIA H200, 139.8 GiB, compute capability 9.0); torch 2.11\n")


def test_part_d_reads_gpu_ids_device_bf16_memory_and_start_from_an_experiment(tmp_path):
    sweep = load_bench("gpu_ray_sweep")
    experiment = tmp_path / "packed"
    for index in range(4):  # 4 trials at 0.25 GPU, side by side from t=100 to t=110
        fake_trial(experiment, f"t{index}", "cuda", "['0']", [
            {"epoch": 1, "images_per_s": 1000.0, "epoch_time_s": 4.0, "time_this_iter_s": 6.5,
             "time_total_s": 6.5, "timestamp": 106.5, "peak_gpu_mem_mb": 900.0},
            {"epoch": 2, "images_per_s": 1200.0, "epoch_time_s": 4.0, "time_this_iter_s": 4.0,
             "time_total_s": 10.5, "timestamp": 110.5, "peak_gpu_mem_mb": 950.0}])
    run = sweep.run_summary(experiment, {"name": "packed"}, lambda model, size: 4.45e8, 989.4)
    assert run["trials_trained"] == 4 and run["trial_epochs"] == 8
    trial = run["trials"][0]
    assert trial["gpu_ids"] == "['0']" and trial["device"] == "cuda" and trial["bf16"] is True
    assert trial["device_line"].startswith("cuda:0 (NVIDIA H200")
    assert trial["start_s"] == pytest.approx(2.5) and trial["peak_gpu_mem_mb"] == 950.0
    assert trial["median_images_per_s"] == 1200.0
    # 4 trials x 2 epochs x 500 images over the 8 s from the first epoch's start to the end
    assert run["span_s"] == pytest.approx(8.0)
    assert run["aggregate_images_per_s"] == pytest.approx(4000 / 8.0)
    assert run["mfu"] == pytest.approx(8 * 1600 * 4.45e8 / 8.0 / 1e12 / 989.4)
    assert run["projected_lab4_minutes"] == pytest.approx(1640 / (8 / 8.0) / 60)

    # The summary of job sweep: part (d)'s tables, a refused run's one line, the goals.
    out = tmp_path / "out"
    out.mkdir()
    refused = sweep.run_summary(tmp_path / "absent", {
        "name": "single", "gpus_per_trial": 1, "cpus_per_trial": 2, "exit": 2, "cut": False,
        "wall_s": 30.0, "error": "ninsweep: error: lab4: no GPUs"}, None, 989.4)
    run.update(gpus_per_trial=0.25, cpus_per_trial=2, exit=0, cut=False, wall_s=20.0)
    (out / "ray_sweep.json").write_text(json.dumps({
        "format": 1, "settings": {"epochs": 2}, "device": {"name": "NVIDIA H200", "torch": "2.11"},
        "data": {"source": "cifar10-jpeg.tar.gz", "ready_s": 12.0},
        "runs": {"packed": run, "single": refused}}))
    (out / "status.txt").write_text("install 0\nray 1\n")
    load_bench("gpu_check_summary").main([str(out)])
    assert json.loads((out / "device_check.json").read_text())["parts"] == {"ray": "exit 1"}
    text = (out / "summary.md").read_text()
    assert "| packed | t0 | ['0'] | cuda | on | 2 | 1,200 | 950 | 2.50 |" in text
    assert "- single: ninsweep: error: lab4: no GPUs" in text
    assert "## (a)" not in text and "(goal >= 2x)" in text


def test_the_tarball_and_the_zip_unpack_to_the_same_image_folder(tmp_path):
    grid = load_bench("gpu_grid")
    tiny_jpeg_archive(tmp_path / "tiny.tar.gz", train=1, test=1)
    with tarfile.open(tmp_path / "tiny.tar.gz") as archive, zipfile.ZipFile(
            tmp_path / "tiny.zip", "w") as out:
        for member in archive.getmembers():
            out.writestr(member.name, archive.extractfile(member).read())
    roots = [grid.unpack_images(tmp_path / name, tmp_path / name.replace(".", "-"))
             for name in ("tiny.tar.gz", "tiny.zip")]
    listings = [sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg")) for root in roots]
    assert listings[0] == listings[1] and len(listings[0]) == 20
    assert all(root.name == "cifar10" for root in roots)
    # Unpacked once: a second call (job sweep after job check's probe) keeps the files.
    image = next(roots[0].rglob("*.jpg"))
    image.write_bytes(b"left by the first job")
    assert grid.unpack_images(tmp_path / "tiny.tar.gz", tmp_path / "tiny-tar-gz") == roots[0]
    assert image.read_bytes() == b"left by the first job"
    # Another archive in the same place replaces them.
    grid.unpack_images(tmp_path / "tiny.zip", tmp_path / "tiny-tar-gz")
    assert image.read_bytes() != b"left by the first job"


