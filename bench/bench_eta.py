"""How good is the sweep's ETA? Runs ``ninsweep run SPACE`` and compares each ETA it printed
with the time the sweep really took from that line on.

The goal (issue 10): the first ETA within 2x of the truth on the smoke sweep. Prints, per
round, the first ETA, the truth, their ratio, and the median ratio over all ETA lines.

    bash bench/netns.sh python bench/bench_eta.py [--space smoke] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import ROOT, machine, require_loopback_namespace, table  # noqa: E402

LINE = re.compile(r"^\[(\d\d:\d\d:\d\d)\] .*ETA (?:(\d+):)?(\d+):(\d\d)$")


def _clock(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%H:%M:%S")


def eta_ratios(output: str) -> list[tuple[float, float]]:
    """(ETA printed, seconds the sweep still took) for every ETA line of ``output``."""
    stamped = [line for line in output.splitlines() if re.match(r"^\[\d\d:\d\d:\d\d\] ", line)]
    end = _clock(stamped[-1][1:9])
    pairs = []
    for line in stamped:
        match = LINE.match(line)
        if match:
            hours, minutes, seconds = (int(g or 0) for g in match.groups()[1:])
            truth = (end - _clock(match.group(1))).total_seconds() % 86400
            pairs.append((hours * 3600 + minutes * 60 + seconds, truth))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="smoke")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    require_loopback_namespace("python bench/bench_eta.py")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ninsweep-bench-eta-") as scratch:
        for round_index in range(args.rounds):
            result = subprocess.run(
                [sys.executable, "-m", "ninsweep", "run", args.space, "--storage",
                 str(Path(scratch) / "results"), "--name", f"round-{round_index}"],
                cwd=ROOT, capture_output=True, text=True, timeout=1800)
            if result.returncode != 0:
                sys.exit(result.stdout[-2000:] + result.stderr[-2000:])
            pairs = eta_ratios(result.stdout)
            first_eta, first_truth = pairs[0]
            ratios = [eta / truth for eta, truth in pairs if truth >= 1]
            rows.append((round_index + 1, first_eta, first_truth,
                         first_eta / max(first_truth, 1), statistics.median(ratios)))
    print(f"ETA of `ninsweep run {args.space}` on {machine()['cpu']} ({machine()['cores']} cores)")
    print(table(["round", "first ETA s", "truth s", "ratio", "median ratio (all lines)"], rows,
                ["", ".0f", ".0f", ".2f", ".2f"]))
    print("goal: first-ETA ratio between 0.5 and 2")


if __name__ == "__main__":
    main()
