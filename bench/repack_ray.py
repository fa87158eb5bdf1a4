"""Repack Ray's wheel without what a Tune sweep on one machine never loads.

Ray 2.60's cp312 wheel is 75.6 MiB; a device job carries at most 64 MiB. Dropped:

- ``ray/jars/`` (``ray_dist.jar``, 30.7 MiB): Ray's Java workers;
- ``ray/dashboard/client/build/`` (2.4 MiB): the dashboard's web pages (ninsweep starts
  Ray with ``include_dashboard=False``; the dashboard's Python, which the node's agent
  imports, stays).

Everything else is kept byte for byte. The dist-info ``RECORD`` loses the dropped files'
lines (pip checks RECORD against the archive), and the wheel keeps its file name, so
``pip install --no-index --no-deps`` takes it as Ray's own. The archive is written with
fixed timestamps and in a fixed order: the same input wheel gives the same bytes, and
the printed sha256 identifies it.

    python bench/repack_ray.py ray-2.60.0-cp312-...whl OUT_DIR      # writes OUT_DIR/<same name>
    python bench/repack_ray.py --list WHEEL                          # the kept files, one a line
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import zipfile
from pathlib import Path
from typing import Iterable

DROPPED = ("ray/jars/", "ray/dashboard/client/build/")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def kept(name: str) -> bool:
    return not name.startswith(DROPPED)


def is_record(name: str) -> bool:
    return re.fullmatch(r"[^/]+\.dist-info/RECORD", name) is not None


def filtered_record(text: str) -> str:
    """RECORD without the lines of dropped files (its CSV rows start with the path)."""
    lines = [line for line in text.splitlines() if line and kept(line.split(",", 1)[0])]
    return "\n".join(lines) + "\n"


def repack(source: Path, out_dir: Path) -> Path:
    if not re.fullmatch(r"ray-[^-]+-.+\.whl", source.name):
        raise ValueError(f"{source.name}: not a Ray wheel (ray-VERSION-...whl)")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.name
    if target.resolve() == source.resolve():
        raise ValueError(f"{target}: the output would overwrite the input")
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(
            partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in sorted(wheel.infolist(), key=lambda i: i.filename):
            if info.is_dir() or not kept(info.filename):
                continue
            data = wheel.read(info)
            if is_record(info.filename):
                data = filtered_record(data.decode()).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME)
            entry.external_attr = info.external_attr  # keeps the binaries executable
            entry.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(entry, data, compresslevel=9)
    partial.replace(target)
    return target


def file_list(wheel_path: Path, normalise: bool = False) -> list[str]:
    """The wheel's files; ``normalise`` replaces CPython ABI tags (``cpython-312-x86_64-
    linux-gnu``, ``cp312``) by ``{abi}`` so that wheels for two Pythons compare."""
    with zipfile.ZipFile(wheel_path) as wheel:
        names = sorted(i.filename for i in wheel.infolist() if not i.is_dir())
    if normalise:
        names = [re.sub(r"cpython-3\d+-x86_64-linux-gnu|cp3\d+", "{abi}", n) for n in names]
    return sorted(names)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(paths: Iterable[Path]) -> str:
    return "\n".join(f"{p.stat().st_size / 2**20:8.2f} MiB  {sha256(p)}  {p.name}" for p in paths)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("out_dir", type=Path, nargs="?")
    parser.add_argument("--list", action="store_true", help="print the wheel's files")
    args = parser.parse_args(argv)
    if not args.wheel.is_file():
        print(f"repack_ray: {args.wheel}: no such file", file=sys.stderr)
        return 2
    try:
        if args.list:
            print("\n".join(file_list(args.wheel)))
            return 0
        if args.out_dir is None:
            print("repack_ray: give OUT_DIR (or --list)", file=sys.stderr)
            return 2
        target = repack(args.wheel, args.out_dir)
    except (ValueError, zipfile.BadZipFile, OSError) as err:
        print(f"repack_ray: {err}", file=sys.stderr)
        return 2
    print(describe([args.wheel]) + "  (downloaded)")
    print(describe([target]) + "  (repacked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
