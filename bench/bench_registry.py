"""What reading the registries costs the commands that never build a model.

``status``, ``export`` and ``run --dry-run`` check names and label configs from
``ninsweep/registry.py``, which imports no torch. Each command runs in a fresh process
(a small fake experiment for status/export, search_spaces/lab4.yaml for the dry run).

Baseline, in the same run: the same command in a process that imports torch first, which is
what every one of them paid while the registries lived next to the torch code (layers,
model, data). Runs alternate, and each figure is the median of --repeats.

    python bench/bench_registry.py               # ~2 min on 2 cores

Measured on the 2-core CPU machine, shared by five sessions (import torch alone took 3-4 s
there, ~1.4 s idle): names + labels 1.31 s vs 5.40 s (4.1x), status 1.30 vs 4.68 (3.6x),
export 1.03 vs 3.55 (3.5x), run lab4 --dry-run 2.99 vs 6.77 (2.3x; the rest is Ray Tune's
import, which the dry run still pays).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from analysis_fixtures import lab4_trials, make_experiment  # noqa: E402
from benchutil import ROOT, median  # noqa: E402

NAMES_AND_LABELS = ("import ninsweep.config as c, ninsweep.analysis as a; c._registry_names(); "
                    "a.config_label('elu', True, 'he')")


def seconds(code: str, torch_first: bool) -> float:
    prefix = "import torch; " if torch_first else ""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", prefix + code], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def command(*args: str) -> str:
    return f"import runpy, sys; sys.argv = {['ninsweep', *args]!r}; " \
           "runpy.run_module('ninsweep', run_name='__main__')"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exp = make_experiment(Path(tmp), lab4_trials({"ReLU": [90, 91], "ELU+BN+WI": [91, 92]}))
        cases = {
            "names + labels": NAMES_AND_LABELS,
            "status": command("status", str(exp)),
            "export": command("export", str(exp), "-o", str(Path(tmp) / "out.csv"), "--force"),
            "run lab4 --dry-run": command("run", "lab4", "--dry-run"),
        }
        print(f"{'':20} {'registry (s)':>13} {'+ torch (s)':>12} {'ratio':>6}")
        for name, code in cases.items():
            ours, base = [], []
            for _ in range(args.repeats):
                ours.append(seconds(code, torch_first=False))
                base.append(seconds(code, torch_first=True))
            print(f"{name:20} {median(ours):13.2f} {median(base):12.2f} "
                  f"{median(base) / median(ours):5.1f}x")


if __name__ == "__main__":
    main()
