"""Where Tune state written before the layer folders finds its callbacks.

``tuner.pkl`` of experiments written by main 9c78cef and older names this module for every
ninsweep callback (``tune_state.load_or_fallback("ninsweep.tracking", "active", ...)``);
newer ones name ``ninsweep.sweep.trackers``. Keep this module as long as such experiments
should resume.
"""

from ninsweep.sweep.trackers import active

__all__ = ["active"]
