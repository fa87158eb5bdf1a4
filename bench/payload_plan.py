"""What one device job would send, in MiB against the 64 MiB a job may carry; refuses over it.

A job sends the tracked tree, the untracked files git does not ignore, and the ignored paths
named in its carry list (../shared/docs/gpu-box.md). The device check is two jobs (the
images and Ray together pass 64 MiB; docs/performance.md has the plan); this prints, for
each job asked for, the three parts with their largest files, the total and the margin,
and the device tool's call (command, carry, timeout_s). Exit 1 when a job is over the
limit or a carried path is missing (the tool would remove it there): fix that before any
job is sent.

    python bench/payload_plan.py              # both jobs, in the order they are sent
    python bench/payload_plan.py check        # one
    python bench/payload_plan.py --json       # the same as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20
MIB = 2**20

# The device check's jobs, in the order they are sent (docs/performance.md, the time plan).
JOBS = {
    "check": {"command": "bash bench/run_gpu.sh --job check", "timeout_s": 420,
              "carry": [".carry/wheels/cp312/base", ".carry/data"],
              "parts": "(a) grid eager + compile, (b) fidelity probe, (c) projections"},
    "sweep": {"command": "bash bench/run_gpu.sh --job sweep", "timeout_s": 300,
              "carry": [".carry/wheels/cp312/base", ".carry/wheels/cp312/ray"],
              "parts": "(d) ninsweep run lab4 through Ray: 0.25 GPU per trial, then 1"},
}


def git_files(root: Path, *args: str) -> list[Path]:
    done = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True,
                          check=True)
    return [root / name for name in done.stdout.decode().split("\0") if name]


def sizes(paths: list[Path]) -> list[tuple[int, Path]]:
    found = []
    for path in paths:
        try:
            found.append((path.lstat().st_size, path))  # a deleted tracked file is not sent
        except FileNotFoundError:
            continue
    return found


def walk(path: Path) -> list[Path]:
    if path.is_file() or path.is_symlink():
        return [path]
    return [Path(folder, name) for folder, _, names in os.walk(path) for name in names]


def plan(job: str, root: Path = ROOT, jobs: dict = JOBS) -> dict:
    spec = jobs[job]
    tracked = sizes(git_files(root))
    untracked = sizes(git_files(root, "--others", "--exclude-standard"))
    missing = [c for c in spec["carry"] if not (root / c).exists()]
    carried = sizes([p for c in spec["carry"] if (root / c).exists() for p in walk(root / c)])
    parts = {"tracked tree": tracked, "untracked, not ignored": untracked, "carried": carried}
    total = sum(size for files in parts.values() for size, _ in files)
    return {
        "job": job, "command": spec["command"], "carry": spec["carry"],
        "timeout_s": spec["timeout_s"], "parts_run": spec["parts"],
        "parts": {name: {"files": len(files), "bytes": sum(s for s, _ in files),
                         "largest": [[str(p.relative_to(root)), s]
                                     for s, p in sorted(files, reverse=True)[:6]]}
                  for name, files in parts.items()},
        "total_bytes": total, "limit_bytes": LIMIT, "missing_carry": missing,
        "ok": total <= LIMIT and not missing,
    }


def describe(result: dict) -> str:
    lines = [f"job {result['job']}: {result['parts_run']}"]
    for name, part in result["parts"].items():
        lines.append(f"  {name:<24} {part['files']:>6} files {part['bytes'] / MIB:8.2f} MiB")
        if name == "carried" or part["bytes"] > MIB:
            lines += [f"      {size / MIB:8.2f} MiB  {path}" for path, size in part["largest"]
                      if size > 0.1 * MIB]
    margin = (result["limit_bytes"] - result["total_bytes"]) / MIB
    lines.append(f"  {'total':<24} {'':>12} {result['total_bytes'] / MIB:8.2f} MiB of "
                 f"{result['limit_bytes'] / MIB:.0f} MiB ({margin:+.2f} MiB margin)")
    for path in result["missing_carry"]:
        lines.append(f"  MISSING carried path {path}: bench/prepare_gpu_check.sh makes it")
    if result["ok"]:
        lines.append(f"  device call: command {result['command']!r}, carry "
                     f"{json.dumps(result['carry'])}, timeout_s {result['timeout_s']}")
    else:
        lines.append("  REFUSED: " + ("over the limit" if result["total_bytes"] > LIMIT
                                      else "a carried path is missing"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="*", help=f"of {', '.join(JOBS)} (default: all, in order)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [job for job in args.jobs if job not in JOBS]
    if unknown:
        print(f"payload_plan: unknown job {unknown[0]!r} (jobs: {', '.join(JOBS)})",
              file=sys.stderr)
        return 2
    try:
        results = [plan(job, args.root) for job in args.jobs or JOBS]
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"payload_plan: cannot list the tree: {err}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2) if args.json
          else "\n".join(describe(r) for r in results))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
