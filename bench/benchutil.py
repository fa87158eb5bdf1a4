"""Small helpers shared by the benchmarks: medians, the loopback-namespace check, tables.

Imports nothing but the standard library and ``ninsweep.fmt`` (the project's table layout;
itself standard library only), so every benchmark (and the GPU machine, which has no Ray) can
use it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ninsweep import fmt

ROOT = Path(__file__).resolve().parents[1]

NETNS_HINT = ("unshare -n -p -f --mount-proc bash -c 'ip link set lo up; "
              "RAY_USAGE_STATS_ENABLED=0 {command}'  (or: bash bench/netns.sh {command})")


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def in_loopback_namespace() -> bool:
    """True when the only network interface is ``lo``: nothing Ray opens can be reached."""
    try:  # /proc/net/dev follows the caller's namespace (/sys/class/net may not)
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return sorted(line.split(":", 1)[0].strip() for line in lines) == ["lo"]


def require_loopback_namespace(command: str) -> None:
    """Refuse to start Ray outside a loopback-only network namespace."""
    if not in_loopback_namespace():
        sys.exit("this benchmark starts Ray: run it in a loopback-only network namespace:\n  "
                 + NETNS_HINT.format(command=command))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def table(header: Sequence[str], rows: Sequence[Sequence[Any]],
          formats: Optional[Sequence[str]] = None) -> str:
    """Right-aligned columns, the first left-aligned; ``formats`` are format specs per column."""
    formats = formats or [""] * len(header)
    cells = [[_cell(value, spec) for value, spec in zip(row, formats)] for row in rows]
    return "\n".join(fmt.table(header, cells, align="<" + ">" * (len(header) - 1)))


def _cell(value: Any, spec: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    return format(value, spec)


def write_json(path: Optional[str], record: dict[str, Any]) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {target}")


def rss_mb(pid: Optional[int] = None) -> dict[str, float]:
    """Resident memory of a process in MiB: rss; pss (shared pages split among their users);
    private and shared; anonymous (memory no other process can share, unlike a file's clean
    pages, which are private only while one process maps them)."""
    where = f"/proc/{pid or 'self'}"
    values: dict[str, float] = {}
    try:
        for line in Path(where, "smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean",
                       "Shared_Dirty", "Anonymous"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        return {}
    return {"rss": values.get("Rss", 0.0), "pss": values.get("Pss", 0.0),
            "private": values.get("Private_Clean", 0.0) + values.get("Private_Dirty", 0.0),
            "shared": values.get("Shared_Clean", 0.0) + values.get("Shared_Dirty", 0.0),
            "anonymous": values.get("Anonymous", 0.0)}
