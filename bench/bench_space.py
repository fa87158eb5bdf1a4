"""How long a large search space takes to expand into its trials, and whether it is linear.

Ours: ``parse_space`` on a grid of activation x batchnorm x init x N learning rates (the
expansion ``ninsweep run --dry-run`` does before anything starts), for --sizes trials.

Baseline, in the same run: the same expansion with each config's hash computed at every
lookup instead of once per config (``config.Schema.__hash__`` swapped for the uncached
computation for that call only): duplicate trials are found through a dict of configs, whose
hash covers every field. The baseline runs only at the smallest size. Linearity: seconds per
1,000 trials at each size should stay flat.

    python bench/bench_space.py                       # ~20 s on 2 cores
    python bench/bench_space.py --sizes 1000,100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ninsweep import config as C  # noqa: E402
from ninsweep.space import parse_space  # noqa: E402


def space_text(trials: int) -> str:
    per_lr = 8  # activation (2) x batchnorm (2) x init (2)
    lrs = ", ".join(repr(round(1e-5 * (i + 1), 8)) for i in range(max(1, trials // per_lr)))
    return ("name: bench\ntrain: {epochs: 1}\ndata: {source: synthetic}\ngrid:\n"
            "  - activation: [relu, elu]\n    batchnorm: [true, false]\n    init: [keras, he]\n"
            f"    train.lr: [{lrs}]\n")


def timed(text: str) -> tuple[float, int]:
    started = time.perf_counter()
    spec = parse_space(text, "<bench>")
    return time.perf_counter() - started, len(spec.trials)


def uncached(text: str) -> tuple[float, int]:
    cached = C.Schema.__hash__

    def every_time(self) -> int:
        self.__pydantic_private__["_hash"] = None
        return cached(self)

    C.Schema.__hash__ = every_time
    try:
        return timed(text)
    finally:
        C.Schema.__hash__ = cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="trial counts, comma-separated (the first also runs the baseline)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'trials':>8} {'seconds':>9} {'s / 1k trials':>14}")
    first = None
    timed(space_text(8))  # the first validation imports the registries (torch): not timed
    for size in sizes:
        seconds, count = timed(space_text(size))
        print(f"{count:>8} {seconds:>9.2f} {1000 * seconds / count:>14.3f}")
        if first is None:
            first = (size, seconds)
    size, ours = first
    base, count = uncached(space_text(size))
    print(f"baseline (hash per lookup) at {count} trials: {base:.2f} s; "
          f"ours {ours:.2f} s; speed-up x{base / ours:.1f}")


if __name__ == "__main__":
    main()
