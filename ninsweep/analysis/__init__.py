"""From an experiment directory to tables, effects, CSVs and a report: no Ray, no torch.

``results`` (reading an experiment), ``labels`` (naming configurations), ``tabulate`` (per
trial, per configuration, significance against the best), ``stats`` (the formulas),
``effects`` (factor effects and interactions), ``text`` (the terminal tables), ``export``
(CSV and JSON), ``curves`` / ``figures`` / ``report`` (the Markdown report and its PNGs),
``reference`` (the lab report's numbers), ``outputs`` (the rule for files a command writes).

The names below are the layer's public API, imported here so that ``from ninsweep import
analysis; analysis.load_experiment(...)`` reads as it always did. The report and its figures
are not among them: they import matplotlib, which ``status`` and ``export`` never need.
"""

from ninsweep.analysis.export import csv_paths, status_json, write_csvs
from ninsweep.analysis.labels import config_label, factor_label
from ninsweep.analysis.reference import REFERENCE_ACC_PCT, REFERENCE_EPOCHS, is_reference_space
from ninsweep.analysis.results import (
                                         HISTORY_COLUMNS,
                                         STATUS_COLUMNS,
                                         Experiment,
                                         TrialRecord,
                                         load_experiment,
                                         load_history,
)
from ninsweep.analysis.stats import ALPHA, CI_LEVEL, holm, welch
from ninsweep.analysis.tabulate import (
                                         TRIAL_COLUMNS,
                                         Tables,
                                         config_table,
                                         objective_of,
                                         significance,
                                         tables,
                                         trial_table,
)
from ninsweep.analysis.text import format_status, format_table, summary_table
from ninsweep.experiment_dir import ERROR, FINISHED, INCOMPLETE, PENDING, RUNNING, STATUSES

__all__ = [
    "ALPHA", "CI_LEVEL", "ERROR", "FINISHED", "HISTORY_COLUMNS", "INCOMPLETE", "PENDING",
    "REFERENCE_ACC_PCT", "REFERENCE_EPOCHS", "RUNNING", "STATUSES", "STATUS_COLUMNS", "TRIAL_COLUMNS",
    "Experiment", "Tables", "TrialRecord", "config_label", "config_table", "csv_paths",
    "factor_label", "format_status", "format_table", "holm", "is_reference_space",
    "load_experiment", "load_history", "objective_of", "significance", "status_json",
    "summary_table", "tables", "trial_table", "welch", "write_csvs",
]
