"""The one rule for files that ``export`` and ``report`` write: nothing on disk is lost.

Before a command writes anything, it hands ``check_outputs`` every path it is about to
write (all of them, so a refusal comes before the first byte):

- inside the experiment directory, only the command's own named outputs may be written
  (``results.csv`` / ``results-configs.csv``, ``report/``): they are derived files and are
  refreshed on every call. Any other path there (``-o EXP/ninsweep.json``, a trial
  directory) is refused, ``--force`` or not: the experiment is the record of the sweep.
- anywhere else, an existing file is replaced only with ``--force``; a directory never.

Commands that add outputs (another CSV beside the per-config one, per-epoch tables) pass
their extra paths in the same two lists: ``targets`` and ``own``. Whatever a command keeps
inside the experiment is refreshed with the rest when a run or resume ends
(``export.refresh_csvs``; the report when ``report/`` holds one): none of it goes stale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ninsweep.errors import NinsweepError


def _resolved(path: os.PathLike | str) -> Path:
    # Follows symlinks as far as they exist: a link that points into the experiment counts
    # as inside it.
    return Path(os.path.realpath(Path(path).expanduser()))


def check_outputs(targets: Iterable[os.PathLike | str], experiment_dir: os.PathLike | str,
                  own: Iterable[os.PathLike | str], *, force: bool = False,
                  command: str = "export") -> None:
    """Raise ``NinsweepError`` (one line) unless every path in ``targets`` may be written.

    ``own``: the command's default outputs inside ``experiment_dir`` (always writable).
    ``force``: replace existing files outside the experiment directory.
    """
    experiment = _resolved(experiment_dir)
    own_paths = {_resolved(p) for p in own}
    for target in targets:
        resolved = _resolved(target)
        if resolved in own_paths:
            continue
        if resolved == experiment or experiment in resolved.parents:
            names = ", ".join(sorted(str(p.relative_to(experiment)) for p in own_paths
                                     if experiment in p.parents)) or "nothing"
            raise NinsweepError(
                f"{target}: inside the experiment directory {experiment}, where {command} "
                f"writes only its own files ({names}); choose an output outside it")
        if resolved.is_dir():
            raise NinsweepError(f"{target}: is a directory; {command} would replace it with a file")
        if os.path.lexists(target) and not force:
            raise NinsweepError(f"{target} already exists; pass --force to replace it")
