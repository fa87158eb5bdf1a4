"""Where a sweep's metrics go besides the trial directories: TensorBoard and trackers.

- ``TensorBoardLogger`` replaces Tune's TensorBoard logger (a ``TBXLoggerCallback``, so Tune
  adds no second one): the epoch metrics under clear tags (``accuracy/test``,
  ``loss/train``, ...) at step = epoch, none of Tune's bookkeeping (``done``,
  ``should_checkpoint``, ...), and as hyperparameters only the ablation factors, the params
  that vary across the sweep's trials.
- Trackers (``trackers: [mlflow, wandb]`` in a space, ``--tracker NAME`` on the command line)
  are Ray Tune's own logger callbacks, each behind an extra (``pip install
  'ninsweep[mlflow]'``). MLflow honours ``MLFLOW_TRACKING_URI`` and otherwise writes a file
  store inside the experiment (``<experiment>/mlruns``); W&B honours ``WANDB_MODE=offline``
  and the rest of its environment. A missing package is a one-line error before Ray starts.

Tune pickles these callbacks into the experiment's ``tuner.pkl``. Each pickles as "the
callback of that kind of whoever restores the experiment" (``sweep.tune_state``): the one
``activate`` installed for a ``ninsweep resume``; for a colleague with Ray but without
ninsweep, Tune's own TensorBoard logger and no-op callbacks.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
from ray.tune import Callback
from ray.tune.callback import CallbackList
from ray.tune.logger import TBXLoggerCallback
from tensorboardX.summary import hparams

from ninsweep.errors import ConfigError
from ninsweep.experiment_dir import MLFLOW_DIR
from ninsweep.fmt import first_line
from ninsweep.locations import is_uri
from ninsweep.metrics import EPOCH, TENSORBOARD_TAGS
from ninsweep.space.schema import TRIAL_KEY
from ninsweep.sweep.tune_state import load_or_fallback
from ninsweep.waits import request_timeout

_ACTIVE: dict[str, Callback] = {}


def activate(**callbacks: Callback) -> None:
    """The callbacks that this process's pickled ninsweep callbacks resolve to on restore."""
    _ACTIVE.clear()
    _ACTIVE.update(callbacks)


def active(kind: str):
    """What a pickled ninsweep callback of ``kind`` becomes when the experiment is loaded."""
    callback = _ACTIVE.get(kind)
    if callback is not None:
        return callback
    return TBXLoggerCallback() if kind == "tensorboard" else Callback()


def portable_reduce(kind: str, fallback_module: str, fallback: str):
    """``__reduce__`` of a ninsweep callback: load as ``active(kind)``, or without ninsweep
    as ``fallback_module.fallback()``."""
    return (load_or_fallback, (__name__, "active", (kind,), fallback_module, fallback))


def factors(trial_params: Iterable[dict[str, Any]]) -> list[str]:
    """The params whose values differ between trials: the ablation's factors."""
    params = list(trial_params)
    keys: list[str] = []
    for trial in params:
        keys.extend(key for key in trial if key not in keys)
    return [key for key in keys
            if len({repr(trial.get(key)) for trial in params}) > 1]


def _hparam_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class TensorBoardLogger(TBXLoggerCallback):
    """Tune's TensorBoard logger, writing our tags and our factors (see the module)."""

    def __init__(self, factor_names: Iterable[str]):
        super().__init__()
        self.factor_names = list(factor_names)

    def __reduce__(self):
        return portable_reduce("tensorboard", "ray.tune.logger", "TBXLoggerCallback")

    def log_trial_start(self, trial) -> None:
        super().log_trial_start(trial)
        params = trial.config[TRIAL_KEY]["params"]
        chosen = {name: _hparam_value(params.get(name)) for name in self.factor_names}
        # Declared when the trial starts, so running and interrupted trials show too; the
        # HParams view reads the metric values from the scalars of the same tags.
        for summary in hparams(hparam_dict=chosen,
                               metric_dict={tag: 0.0 for tag in TENSORBOARD_TAGS.values()}):
            self._trial_writer[trial].file_writer.add_summary(summary)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        step = int(result.get(EPOCH, iteration))
        writer = self._trial_writer[trial]
        for metric, tag in TENSORBOARD_TAGS.items():
            value = result.get(metric)
            if isinstance(value, (int, float, np.number)) and not np.isnan(value):
                writer.add_scalar(tag, value, global_step=step)
        writer.flush()

    def log_trial_end(self, trial, failed: bool = False) -> None:
        writer = self._trial_writer.pop(trial, None)
        self._trial_result.pop(trial, None)
        if writer is not None:
            writer.close()


class Trackers(CallbackList):
    """The sweep's tracker callbacks (Ray's own), as one callback that pickles portably."""

    def __init__(self, names: Iterable[str], callbacks: list[Callback]):
        super().__init__(callbacks)
        self.names = list(names)

    def __reduce__(self):
        return portable_reduce("trackers", "ray.tune", "Callback")


def make_trackers(names: Iterable[str], experiment: str, experiment_name: str) -> Trackers:
    """Ray's callbacks for ``names``; built before Ray starts, so a problem stops nothing."""
    callbacks: list[Callback] = []
    for name in names:
        # Each integration imports its tracker's package: an extra, installed or not.
        if name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if is_file_store(uri or "file:"):
                # MLflow 3 keeps its file store only on request ("maintenance mode"); it is
                # the store that needs no server: the default, and a user's file:// URI.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            if uri:
                open_mlflow(uri)  # the user's backend, opened here: before Ray starts
            else:  # created with the experiment, after its manifest
                uri = mlflow_default_uri(experiment)
            callbacks.append(MLflowLoggerCallback(tracking_uri=uri,
                                                  experiment_name=experiment_name,
                                                  save_artifact=False))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            # Offline runs (WANDB_MODE=offline) land inside a local experiment, not in the cwd.
            local = {} if is_uri(experiment) else {"dir": experiment}
            callbacks.append(WandbLoggerCallback(project=experiment_name, **local))
    return Trackers(names, callbacks)


def is_file_store(uri: str) -> bool:
    """An MLflow URI of its file store: ``file:...`` or a plain path."""
    scheme = uri.partition(":")[0] if ":" in uri else ""
    return scheme in ("", "file") and not uri.startswith("databricks")


def open_mlflow(uri: str) -> None:
    """Open the MLflow backend at ``uri`` once (one request, bounded by the waits of
    ``waits.py``); what it refuses is one ``ConfigError`` with the fix."""
    import mlflow

    bounded = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(request_timeout())))}
    saved = {key: os.environ.get(key) for key in bounded}
    os.environ.update(bounded)
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # each store raises its own kinds
        raise ConfigError(f"tracker mlflow: MLFLOW_TRACKING_URI={uri} cannot be opened "
                          f"({first_line(err, 200)}); point it at an MLflow server you can "
                          "reach, a database (sqlite:///mlflow.db) or a file:// folder, or "
                          "unset it for the store inside the experiment") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def mlflow_default_uri(experiment: str) -> str:
    """A file store inside the experiment: ``file://<experiment>/mlruns``."""
    if is_uri(experiment):
        raise ConfigError(f"tracker mlflow: {experiment} is remote storage, where MLflow keeps "
                          "no file store; set MLFLOW_TRACKING_URI to your MLflow server")
    return "file://" + os.path.join(os.path.abspath(experiment), MLFLOW_DIR)
