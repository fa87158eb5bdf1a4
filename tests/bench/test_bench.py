"""The benchmarks in bench/ run, on tiny sizes, and write the figures they promise.

No timing thresholds: speed goals are ratios the benchmarks print (docs/performance.md).
bench/gpu_grid.py is tested on CPU here so that the script sent to the GPU machine has run
before any device time is spent.
"""

import json
import subprocess
import sys

import pytest
from ray_support import BENCH, ROOT, load_bench, needs_netns

from ninsweep.config import ModelConfig
from ninsweep.space import load_space


def run_bench(*args, timeout=300, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


# -- gpu_grid -------------------------------------------------------------------------------

# bench/gpu_grid.py's run on CPU at tiny sizes (every figure of its JSON) is part (a) of
# run_gpu.sh --tiny in tests/test_gpu_rehearsal.py, in the GPU machine's environment.


def test_gpu_grid_runs_the_trials_of_lab4_yaml_in_order():
    grid = load_bench("gpu_grid")
    spec = load_space(ROOT / "search_spaces" / "lab4.yaml")
    cells = [(t.config.model.activation, t.config.model.batchnorm, t.config.model.init)
             for t in spec.trials]
    assert cells == grid.GRID
    # The whole model, pool2: avg included, not just the grid values.
    assert [t.config.model for t in spec.trials] == [grid.model_config(i)
                                                     for i in range(len(grid.GRID))]
    seeds = load_space(ROOT / "search_spaces" / "lab4-3seeds.yaml")
    assert len(seeds.trials) == grid.PROJECTED_SPACES["lab4-3seeds"] * len(grid.GRID)
    assert spec.trials[0].config.train.epochs == grid.GRID_EPOCHS


def test_gpu_grid_counts_the_reference_flop():
    grid = load_bench("gpu_grid")
    relu = grid.forward_flop(ModelConfig(), 32)
    maxout = grid.forward_flop(ModelConfig(activation="maxout", batchnorm=True, init="he"), 32)
    assert relu == pytest.approx(0.445e9, rel=0.01)  # docs/lab4-reference.md
    assert maxout == pytest.approx(2 * relu, rel=0.02)
    # The whole grid: about 1.1e17 FLOP in the reference's count (training only).
    total = sum(grid.grid_trial_flop({grid.trial_name(*cell): grid.forward_flop(
        grid.model_config(i), 32) for i, cell in enumerate(grid.GRID)}))
    assert 1.1e17 < total < 1.4e17


def test_gpu_grid_schedule_projection():
    grid = load_bench("gpu_grid")
    # One slot: the sum over the rate.
    assert grid.schedule_seconds([2.0, 4.0], 1, {1: 2.0}) == pytest.approx(3.0)
    # Two slots sharing an aggregate of 2: both at 1 until the short one ends at t=1, then
    # the long one alone at the one-model rate 1.
    assert grid.schedule_seconds([1.0, 3.0], 2, {1: 1.0, 2: 2.0}) == pytest.approx(3.0)
    # Interpolated aggregate between measured packings, flat beyond them.
    assert grid.interpolate({1: 1.0, 4: 4.0}, 2) == pytest.approx(2.0)
    assert grid.interpolate({1: 1.0, 4: 4.0}, 8) == pytest.approx(4.0)


def test_gpu_grid_projects_both_lab4_spaces():
    grid = load_bench("gpu_grid")
    forward = {grid.trial_name(*cell): 1.0 for cell in grid.GRID}
    one = grid.schedule_seconds(grid.grid_trial_flop(forward), 4, {1: 1.0, 4: 4.0})
    three = grid.schedule_seconds(grid.grid_trial_flop(forward, seeds=3), 4, {1: 1.0, 4: 4.0})
    assert len(grid.grid_trial_flop(forward, seeds=3)) == 30
    assert 2.5 * one < three <= 3 * one  # fuller slots: a little better than 3x


def test_gpu_grid_rejects_bad_data_flags(tmp_path):
    done = subprocess.run([sys.executable, BENCH / "gpu_grid.py", "--device", "cpu", "--data",
                           "jpeg-zip", tmp_path / "missing.zip"], capture_output=True, text=True)
    assert done.returncode == 2 and "no such file" in done.stderr


# -- CPU benchmarks -------------------------------------------------------------------------

def test_train_loop_benchmark_prints_the_ratio(tmp_path):
    out = tmp_path / "loop.json"
    done = run_bench(BENCH / "bench_train_loop.py", "--train-size", 128, "--test-size", 32,
                     "--image-size", 16, "--rounds", 2, "--threads", 1, "--json", out)
    assert "plain PyTorch loop" in done.stdout and "ninsweep Trainer" in done.stdout
    result = json.loads(out.read_text())
    assert positive(result["ratio"]["trainer"]) and result["ratio"]["plain"] == 1.0
    assert len(result["samples"]["trainer"]) == 2


def test_space_benchmark_prints_the_ratio_and_per_size_rows():
    done = run_bench(BENCH / "bench_space.py", "--sizes", "80,160")
    assert "speed-up x" in done.stdout
    assert [line.split()[0] for line in done.stdout.splitlines()[1:3]] == ["80", "160"]


@pytest.mark.slow
def test_checkpoint_benchmark_reports_size_time_and_memory(tmp_path):
    out = tmp_path / "ckpt.json"
    # The smallest sizes the Trainer takes (train-size: one batch of 128); the test checks
    # the figures' plumbing, not their values.
    run_bench(BENCH / "bench_checkpoint.py", "--train-size", 128, "--repeats", 2,
              "--memory-repeats", 1, "--memory-train-size", 128, "--memory-test-size", 32,
              "--steps", 1, "--threads", 1, "--json", out)
    result = json.loads(out.read_text())
    ckpt = result["checkpoint"]
    # Weights, optimizer momentum and the rest: about twice the weights.
    assert ckpt["checkpoint_mb"] > 1.5 * ckpt["weights_mb"] > 0
    assert positive(ckpt["checkpoint_save_s"]) and positive(ckpt["cifar_epoch_s"])
    for kind in ("baseline", "trainer"):
        assert positive(result["memory"][kind]["peak_rss_mb"])
        assert positive(result["memory"][kind]["anonymous_mb"])


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
def test_sweep_and_ray_trial_benchmarks_run_in_the_namespace(tmp_path):
    import yaml

    out = tmp_path / "sweep.json"
    # The two-trial space of the resume tests, not the ten-trial smoke space, 1 of its 5
    # epochs and two batches of images: the benchmark's plumbing (ninsweep run, the no-Ray
    # pool, the ideal) is the same at a small part of the suite's time.
    space = yaml.safe_load((ROOT / "tests" / "spaces" / "resume.yaml").read_text())
    space["train"].update(epochs=1, lr_milestones=[1])
    space["data"].update(synthetic_train_size=128, synthetic_test_size=32)
    space_file = tmp_path / "resume-2-epochs.yaml"
    space_file.write_text(yaml.safe_dump(space))
    run_bench(BENCH / "bench_sweep.py", "--space", space_file, "--rounds", 1,
              "--no-compare-reuse", "--json", out, timeout=600)
    result = json.loads(out.read_text())
    for key in ("ideal_s", "ninsweep_run_s", "no_ray_s", "first_trial_s"):
        assert positive(result[key]), key
    assert result["parallelism"] >= 1

    out = tmp_path / "loop.json"
    run_bench(BENCH / "bench_train_loop.py", "--ray", "--train-size", 128, "--test-size", 32,
              "--image-size", 16, "--rounds", 1, "--threads", 1, "--json", out, timeout=600)
    assert positive(json.loads(out.read_text())["ratio"]["ray"])


def test_analysis_benchmark_times_export_and_status_against_the_bare_read(tmp_path):
    out = tmp_path / "analysis.json"
    done = run_bench(BENCH / "bench_analysis.py", "--trials", 80, "--epochs", 3, "--repeats", 1,
                     "--workdir", tmp_path, "--json", out)
    assert "bare loop" in done.stdout and "export" in done.stdout
    result = json.loads(out.read_text())
    assert result["ratio"]["bare loop"] == 1.0
    for command in ("export", "status"):
        assert positive(result["median_s"][command]) and positive(result["ratio"][command])
    assert result["effects_rows"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("bench-analysis-")]  # cleaned up


# -- the device check: bench/run_gpu.sh ----------------------------------------------------

def test_fidelity_probe_scales_the_reference_lr_steps():
    probe = load_bench("fidelity_probe")
    assert probe.scaled_milestones(164) == [81, 122]
    assert probe.scaled_milestones(40) == [20, 30]
    assert probe.scaled_milestones(2) == [1, 1]
    # Epochs in all: the first, plus as many as fit in the time left, capped.
    assert probe.plan_epochs(first_epoch_s=4.0, seconds_left=41.0, max_epochs=164) == 11
    assert probe.plan_epochs(4.0, 41.0, max_epochs=5) == 5
    assert probe.plan_epochs(4.0, -3.0, max_epochs=164) == 1


def test_device_check_summary_reports_failed_and_missing_parts_without_numbers(tmp_path):
    summary = load_bench("gpu_check_summary")
    (tmp_path / "status.txt").write_text("eager 124\ncompile 1\nfidelity skipped: no zip\n")
    (tmp_path / "grid_compile.json").write_text(json.dumps(
        {"format": 1, "error": "RuntimeError: worker 0: expected 'ready'\nInvalidBackend: x"}))
    summary.main([str(tmp_path)])
    result = json.loads((tmp_path / "device_check.json").read_text())
    assert result["parts"] == {"eager": "timed out (killed by its time limit)",
                               "compile": "failed (exit 1): InvalidBackend: x",
                               "fidelity": "skipped: no zip"}
    assert result["eager"] is None and result["compile"] is None and result["fidelity"] is None
    text = (tmp_path / "summary.md").read_text()
    assert "no throughput was measured, so nothing is projected" in text
    assert "TFLOP" not in text.split("## (a)", 1)[1].split("## (b)", 1)[0].replace(
        "TFLOP/s |", "")  # no table rows were invented


# bench/run_gpu.sh --tiny itself runs in the GPU machine's rehearsal environment:
# tests/test_gpu_rehearsal.py.
