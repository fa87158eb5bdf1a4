"""Install the wheels a device job carried, then print the versions the job will run with.

The first step of bench/run_gpu.sh, before any part: every wheel under
.carry/wheels/cpXY/*/ (cpXY = this Python; the groups the job carried, bench/gpu-box/
carry.txt) goes into one target folder with ``pip install --no-index --no-deps --target``
(the folder is emptied first), which run_gpu.sh then puts on PYTHONPATH. Then it imports
what the job's parts need, in a fresh process with that PYTHONPATH, and prints each
package's version and where it was loaded from. A module that does not import ends the
check here with one line naming it (exit 3): the parts would all fail the same way.

    python bench/carry_install.py --target .carry/site --need check     # parts (a)-(c)
    python bench/carry_install.py --target .carry/site --need sweep     # part (d)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each job imports (its parts' entry points) and the packages whose versions it prints.
NEEDS = {
    "check": ["torch", "numpy", "PIL", "yaml", "filelock", "pydantic",
              "pydantic_core", "ninsweep.config", "ninsweep.core.data", "ninsweep.core.train"],
    "sweep": ["ray", "ray.tune", "tensorboardX", "jsonschema", "pandas", "pyarrow",
              "rich", "ninsweep.sweep.runner", "ninsweep.sweep.trainable", "ninsweep.cli"],
}
VERSIONS = ["torch", "torchvision", "numpy", "pydantic", "pydantic_core", "typing_extensions",
            "ray", "tensorboardX", "jsonschema", "pandas", "pyarrow", "scipy", "yaml", "PIL"]

PROBE = r"""
import importlib, importlib.metadata, json, sys
out = {"python": sys.version.split()[0], "executable": sys.executable, "modules": {},
       "failed": None}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except Exception as err:
        out["failed"] = f"import {name}: {type(err).__name__}: {err}"
        break
for name in sys.argv[1].split(","):
    module = sys.modules.get(name)
    if module is None:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
    version = getattr(module, "__version__", None)
    if version is None:  # typing_extensions has none: its distribution's, first on sys.path
        try:
            version = importlib.metadata.version(name)
        except Exception:
            version = "?"
    out["modules"][name] = [str(version), str(getattr(module, "__file__", "?"))]
print(json.dumps(out))
"""


def wheels_for_this_python(wheel_root: Path) -> list[Path]:
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return sorted((wheel_root / tag).glob("*/*.whl"))


def install(wheels: list[Path], target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--disable-pip-version-check", "--no-compile", "--target", str(target),
                        *map(str, wheels)], check=True)


def probe(target: Path, modules: list[str]) -> dict:
    import json

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(target),
                                                      os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", PROBE, ",".join(VERSIONS), *modules],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                           else f"the import probe exited {done.returncode}")
    return json.loads(done.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=ROOT / ".carry" / "wheels",
                        help="the carried wheels: WHEELS/cpXY/GROUP/*.whl")
    parser.add_argument("--target", type=Path, required=True, help="install into this folder")
    parser.add_argument("--need", action="append", choices=sorted(NEEDS), default=[],
                        help="what the job runs: its imports are checked")
    args = parser.parse_args(argv)
    wheels = wheels_for_this_python(args.wheels)
    print(f"carried wheels for Python {sys.version_info[0]}.{sys.version_info[1]}: "
          + (", ".join(f"{w.parent.name}/{w.name}" for w in wheels) or "none"))
    try:
        install(wheels, args.target)
        modules = [m for need in args.need for m in NEEDS[need]]
        result = probe(args.target, modules)
    except subprocess.CalledProcessError as err:
        print(f"carry_install: pip install --target {args.target} failed (exit "
              f"{err.returncode})", file=sys.stderr)
        return 3
    except RuntimeError as err:
        print(f"carry_install: {err}", file=sys.stderr)
        return 3
    print(f"python {result['python']} ({result['executable']})")
    for name, (version, where) in result["modules"].items():
        origin = ("carried" if where.startswith(str(args.target.resolve()))
                  or where.startswith(str(args.target)) else "the machine's")
        print(f"  {name:<18} {version:<14} {origin}: {where}")
    if result["failed"]:
        print(f"carry_install: {result['failed']} -- neither the machine nor the carried "
              "wheels have it (bench/gpu-box/packages.txt, carry.txt)", file=sys.stderr)
        return 3
    print(f"imports of {', '.join(args.need) or 'nothing'}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
