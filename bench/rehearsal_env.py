"""A Python environment on this machine that has what the GPU machine has, and nothing else.

Built from bench/gpu-box/packages.txt: a fresh venv (no system or user site-packages, nothing
of the project's .venv) with the machine's packages at versions that install here (torch's
CPU build), and checked: every package the list says the machine lacks must fail to import.
The device check then runs in it as it would there, installing the wheels it carries
(bench/run_gpu.sh), so an import that the machine cannot satisfy fails here first.

Built once and cached, keyed by the list's text and this Python's version:
$NINSWEEP_REHEARSAL_DIR (default ~/.cache/ninsweep/rehearsal)/<key>/; a build that did not
finish is redone. Standard library only.

    python bench/rehearsal_env.py            # build if needed; print the environment's python
    python bench/rehearsal_env.py --check    # only check an existing one (exit 1 if absent)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = Path(__file__).resolve().parent / "gpu-box" / "packages.txt"
RECIPE = 1  # bump when the way the environment is built changes


@dataclass
class MachinePackages:
    python: str = ""
    rehearse_python: str = ""
    have: dict[str, str] = field(default_factory=dict)  # name -> requirement here ("-": none)
    versions_there: dict[str, str] = field(default_factory=dict)
    lack: dict[str, str] = field(default_factory=dict)  # name -> import name


def read_packages(path: Path = PACKAGES) -> MachinePackages:
    result = MachinePackages()
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        options = dict(w.split("=", 1) for w in words if w.startswith("REHEARSE="))
        words = [w for w in words if not w.startswith("REHEARSE=")]
        kind = words[0]
        if kind == "python" and len(words) == 2:
            result.python, result.rehearse_python = words[1], options.get("REHEARSE", words[1])
        elif kind == "have" and len(words) in (2, 3):
            result.have[words[1]] = options.get("REHEARSE", words[1])
            if len(words) == 3:
                result.versions_there[words[1]] = words[2]
        elif kind == "lack" and len(words) == 3:
            result.lack[words[1]] = words[2]
        else:
            raise ValueError(f"{path}:{number}: cannot read {raw.strip()!r}")
    if not result.python or not result.have:
        raise ValueError(f"{path}: no 'python' line or no 'have' lines")
    return result


def cache_root() -> Path:
    return Path(os.environ.get("NINSWEEP_REHEARSAL_DIR")
                or Path.home() / ".cache" / "ninsweep" / "rehearsal")


def env_key(path: Path = PACKAGES) -> str:
    text = f"{RECIPE}\n{sys.version_info[0]}.{sys.version_info[1]}\n{path.read_text()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def clean_env() -> dict[str, str]:
    """This process's environment without anything that points into another environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    if "VIRTUAL_ENV" in os.environ:
        bin_dir = str(Path(os.environ["VIRTUAL_ENV"]) / "bin")
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if p != bin_dir)
    return env


def importable(python: Path, modules: list[str]) -> dict[str, bool]:
    script = ("import importlib.util, json, sys\n"
              "print(json.dumps({m: importlib.util.find_spec(m) is not None "
              "for m in sys.argv[1:]}))")
    done = subprocess.run([str(python), "-c", script, *modules], capture_output=True,
                          text=True, env=clean_env(), check=True)
    return json.loads(done.stdout)


def check(env: Path, packages: MachinePackages) -> list[str]:
    """What is wrong with ``env`` as a stand-in for the machine (empty: nothing)."""
    problems = []
    found = importable(env_python(env), list(packages.lack.values()))
    problems += [f"{name} is importable ({module}) but the GPU machine lacks it"
                 for name, module in packages.lack.items() if found[module]]
    done = subprocess.run([str(env_python(env)), "-c", "import sys; print(sys.prefix, "
                           "sys.flags.no_user_site, sys.version_info[:2])"],
                          capture_output=True, text=True, env=clean_env(), check=True)
    if not done.stdout.startswith(str(env)):
        problems.append(f"its python runs from {done.stdout.split()[0]}, not {env}")
    return problems


@contextlib.contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another test session may be building it
        yield


def local_sources() -> list[str]:
    """pip arguments naming only this machine's on-disk package sources (pip's own config:
    ``file://`` indexes and find-links folders): the build must work without a network, as
    the tests run it inside a namespace that has none. $NINSWEEP_REHEARSAL_ONLINE=1 lets pip
    use its configured indexes as they are (a machine without a local mirror)."""
    if os.environ.get("NINSWEEP_REHEARSAL_ONLINE") == "1":
        return []
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                          text=True, env=clean_env())
    indexes, links = [], []
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        values = value.strip().strip("'\"").split()
        if key.endswith(("index-url", "extra-index-url")):
            indexes += [v for v in values if v.startswith("file://")]
        elif key.endswith("find-links"):
            links += [v for v in values if Path(v.removeprefix("file://")).is_dir()]
    indexes, links = list(dict.fromkeys(indexes)), list(dict.fromkeys(links))
    if not indexes and not links:
        raise RuntimeError("pip has no local package source configured (file:// index or "
                           "find-links folder); set NINSWEEP_REHEARSAL_ONLINE=1 to build from "
                           "the network")
    args = ["--index-url", indexes[0]] if indexes else ["--no-index"]
    for index in indexes[1:]:
        args += ["--extra-index-url", index]
    for link in links:
        args += ["--find-links", link]
    return args


def build(env: Path, packages: MachinePackages, log=print) -> None:
    if env.exists():
        shutil.rmtree(env)
    started = time.monotonic()
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env)
    requirements = [spec for spec in packages.have.values() if spec != "-"]
    log(f"rehearsal env: installing {' '.join(requirements)}")
    subprocess.run([str(env_python(env)), "-m", "pip", "install", "-q", "--no-input",
                    "--disable-pip-version-check", *local_sources(), *requirements],
                   check=True, env=clean_env())
    freeze = subprocess.run([str(env_python(env)), "-m", "pip", "freeze"], check=True,
                            capture_output=True, text=True, env=clean_env()).stdout
    (env / "freeze.txt").write_text(freeze)
    problems = check(env, packages)
    if problems:
        raise RuntimeError("rehearsal env: " + "; ".join(problems))
    (env / "complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")
    log(f"rehearsal env: built {env} in {time.monotonic() - started:.0f} s")


def ensure(log=print) -> Path:
    """The rehearsal environment's directory, built first if the cache has none."""
    packages = read_packages()
    want = packages.rehearse_python
    have = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if want != have:
        raise RuntimeError(f"rehearsal env: packages.txt rehearses Python {want}, this is {have}")
    env = cache_root() / env_key()
    with locked(cache_root() / f"{env.name}.lock"):
        if not (env / "complete").is_file():
            build(env, packages, log)
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check an existing one, build none")
    args = parser.parse_args(argv)
    try:
        if args.check:
            env = cache_root() / env_key()
            if not (env / "complete").is_file():
                print(f"rehearsal_env: none built at {env}", file=sys.stderr)
                return 1
            problems = check(env, read_packages())
            if problems:
                print("rehearsal_env: " + "; ".join(problems), file=sys.stderr)
                return 1
        else:
            env = ensure(log=lambda m: print(m, file=sys.stderr))
    except (OSError, ValueError, RuntimeError, subprocess.CalledProcessError) as err:
        print(f"rehearsal_env: {err}", file=sys.stderr)
        return 1
    print(env_python(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
