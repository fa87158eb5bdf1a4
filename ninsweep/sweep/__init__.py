"""Sweeps on Ray Tune: the one layer that imports Ray at the top of its modules.

``runner`` (run and resume: the Tuner and the manifest), ``ray_cluster`` (starting or joining
Ray), ``trainable`` (one trial = one ``core.train.Trainer`` run), ``checkpoints`` (a trial's
states on storage, staging), ``progress`` (the console while a sweep runs), ``trackers``
(TensorBoard, MLflow, W&B), ``logs`` (Ray's output into the experiment's log files),
``tune_state`` (what Tune pickles, readable without ninsweep) and ``preflight`` (checks of
every trial before Ray starts: no Ray, so ``run --dry-run`` may import it).

This file imports nothing, so that importing ``sweep.preflight`` starts no Ray import.
"""


def __getattr__(name: str):
    # Tune state written before the layer folders (main 9c78cef and older) pickled these by
    # reference as ``ninsweep.sweep.<name>``; resolved only when such a pickle asks.
    if name == "_trial_dirname":
        from ninsweep.sweep.tune_state import trial_dirname

        return trial_dirname
    if name == "SweepProgress":
        from ninsweep.sweep.progress import LegacySweepProgress

        return LegacySweepProgress
    raise AttributeError(f"module 'ninsweep.sweep' has no attribute {name!r}")
