"""bench/bench_search.py runs, on 8 trials, and writes the figures it promises.

No timing thresholds: the goal (ninsweep >= 0.9x plain Ray Tune's trials per minute) is a
ratio the benchmark prints (docs/performance.md).
"""

import json
import math
import subprocess
import sys

import pytest
from ray_support import BENCH, ROOT, needs_netns


@needs_netns
@pytest.mark.ray
def test_search_benchmark_runs_both_sides_and_prints_the_ratio(tmp_path):
    out = tmp_path / "search.json"
    done = subprocess.run([sys.executable, str(BENCH / "bench_search.py"), "--trials", "8",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "plain Ray Tune (baseline)" in done.stdout and "ninsweep run" in done.stdout
    assert "goal >= 0.9x" in done.stdout
    result = json.loads(out.read_text())
    for side in ("ninsweep", "plain"):
        figures = result[side]
        assert figures["trials"] == figures["finished"] == 8, side
        for key in ("wall_s", "trials_per_min", "driver_cpu_ms_per_trial",
                    "children_cpu_ms_per_trial", "epoch_time_ms_per_trial"):
            assert isinstance(figures[key], float) and figures[key] > 0, (side, key)
        # The driver's own CPU time is part of what RUSAGE_CHILDREN saw around it.
        assert figures["driver_cpu_ms_per_trial"] <= figures["children_cpu_ms_per_trial"]
    assert [r["errors"] for r in result["rounds"]["plain"]] == [0]
    assert math.isclose(result["ratio"], result["ninsweep"]["trials_per_min"]
                        / result["plain"]["trials_per_min"])
