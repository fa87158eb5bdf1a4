"""User-facing errors.

Anything a user can cause (a bad flag, a malformed YAML file, a missing data directory, a
checkpoint that does not match) raises a subclass of ``NinsweepError``. The CLI prints its
message on one line and exits with status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NinsweepError(Exception):
    """An error caused by input, reported to the user as one line."""


class ConfigError(NinsweepError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class DataError(NinsweepError):
    """A data source is missing, unreadable, empty or corrupt."""


class CheckpointError(NinsweepError):
    """A checkpoint is unreadable or belongs to a different architecture."""


class TrainingDiverged(NinsweepError):
    """The loss became NaN or infinite: the recipe (usually the learning rate) is unusable."""


class DeviceError(NinsweepError):
    """The device a run must train on cannot be used (a granted GPU without working CUDA)."""


class StorageFull(OSError):
    """A trial's write found no space (ENOSPC, or a quota): not the trial's fault, not worth a
    retry. An ``OSError`` with the original errno, so its text reads as a full disk wherever
    Ray wraps it; the driver stops the sweep on it (``sweep.out_of_space``)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM stopped a sweep before it could stop gracefully (the CLI exits 143)."""


class NinsweepWarning(UserWarning):
    """A damaged or odd file that ninsweep reads around (a line of result.json, an unreadable
    params.json, a trial in two directories, a corrupt data cache). The command line prints it as one line of its own
    (``console.route_logging``); a library user sees an ordinary Python warning."""


class CacheRebuiltWarning(NinsweepWarning, RuntimeWarning):
    """A corrupt data cache, rebuilt."""
