"""Download the wheels the device check carries (bench/gpu-box/carry.txt), Ray repacked.

For the GPU machine (Python 3.12, the default) and, to rehearse here, for this machine's
Python (3.11): ``pip download --no-deps --only-binary=:all:`` of every pinned wheel into
the download cache ($NINSWEEP_WHEEL_CACHE, default ~/.cache/ninsweep/wheels/cpXY/; outside
the checkout, so every clone on the machine shares it), then each group's wheels into
.carry/wheels/cpXY/GROUP/, Ray's through bench/repack_ray.py. Writes
.carry/wheels/cpXY/SHA256SUMS (size, sha256, name) and prints it. A wheel already in the
cache is not fetched again, so once both Pythons' wheels are there this runs offline (the
tests run it so, in a namespace without network). .carry/ is git-ignored.

    python bench/carry_wheels.py                    # cp312, for the GPU machine
    python bench/carry_wheels.py --python 3.11      # cp311, for the rehearsal here
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import repack_ray  # noqa: E402

CARRY_LIST = BENCH / "gpu-box" / "carry.txt"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def read_carry_list(path: Path = CARRY_LIST) -> dict[str, list[str]]:
    """GROUP -> ["name==version", ...], in the file's order."""
    groups: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or "==" not in parts[1]:
            raise ValueError(f"{path}:{number}: expected 'GROUP NAME==VERSION', got {line!r}")
        groups.setdefault(parts[0], []).append(parts[1])
    return groups


def default_cache() -> Path:
    return Path(os.environ.get("NINSWEEP_WHEEL_CACHE")
                or Path.home() / ".cache" / "ninsweep" / "wheels")


def normalised(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def wheel_for(requirement: str, directory: Path) -> Path:
    name, version = requirement.split("==")
    found = [p for p in directory.glob("*.whl")
             if normalised(p.name.split("-")[0]) == normalised(name)
             and p.name.split("-")[1] == version]
    if len(found) != 1:
        raise FileNotFoundError(f"{requirement}: {len(found)} wheels in {directory}")
    return found[0]


def download(requirements: list[str], python: str, directory: Path) -> None:
    missing = []
    for requirement in requirements:
        try:
            wheel_for(requirement, directory)
        except FileNotFoundError:
            missing.append(requirement)
    if not missing:
        return
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "-d", str(directory)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + missing, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.12", help="the Python the wheels are for")
    parser.add_argument("--carry", type=Path, default=ROOT / ".carry", help="the .carry folder")
    parser.add_argument("--downloads", type=Path, default=default_cache(),
                        help="the download cache (default $NINSWEEP_WHEEL_CACHE or "
                             "~/.cache/ninsweep/wheels)")
    args = parser.parse_args(argv)
    if not args.python.startswith("3.") or not args.python[2:].isdigit():
        print(f"carry_wheels: --python {args.python}: expected 3.N", file=sys.stderr)
        return 2
    tag = "cp3" + args.python[2:]
    downloads = args.downloads / tag
    wheels = args.carry / "wheels" / tag
    downloads.mkdir(parents=True, exist_ok=True)
    groups = read_carry_list()
    try:
        download([r for group in groups.values() for r in group], args.python, downloads)
    except subprocess.CalledProcessError as err:
        print(f"carry_wheels: pip download failed (exit {err.returncode})", file=sys.stderr)
        return 1
    if wheels.exists():
        shutil.rmtree(wheels)
    written = []
    for group, requirements in groups.items():
        (wheels / group).mkdir(parents=True)
        for requirement in requirements:
            source = wheel_for(requirement, downloads)
            if requirement.startswith("ray=="):
                target = repack_ray.repack(source, wheels / group)
                print(repack_ray.describe([source]) + "  (as downloaded)")
            else:
                target = wheels / group / source.name
                shutil.copy2(source, target)
            written.append(target)
    lines = [f"{p.stat().st_size} {repack_ray.sha256(p)} {p.relative_to(wheels)}" for p in written]
    (wheels / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    for group in groups:
        size = sum(p.stat().st_size for p in written if p.parent.name == group)
        print(f"group {group}: {size / 2**20:.2f} MiB")
    print(repack_ray.describe(written))
    print(f"wrote {wheels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
