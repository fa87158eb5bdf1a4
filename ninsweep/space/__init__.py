"""Search spaces: a YAML file -> a typed, validated ``SweepSpec`` -> the list of trials.

``schema`` (the space file's and the manifest's keys), ``loader`` (finding and reading a file,
``--set`` values), ``grid`` (expansion and trial names), ``dry_run`` (the listing). pydantic
and PyYAML only: no Ray, no torch, so a space is checked in a fraction of a second.

The names below are the layer's public API, imported here so that ``from ninsweep.space
import load_space`` reads as it always did.
"""

from ninsweep.space.dry_run import format_dry_run
from ninsweep.space.grid import MAX_TRIALS
from ninsweep.space.loader import (
                                   MAX_YAML_NODES,
                                   SPACE_SUFFIXES,
                                   available_spaces,
                                   build_space,
                                   load_space,
                                   package_spaces_dir,
                                   parse_assignment,
                                   parse_space,
                                   parse_value,
                                   resolve_space_path,
                                   space_dirs,
)
from ninsweep.space.schema import (
                                   BASE_PARAMS,
                                   MANIFEST_FORMAT,
                                   MODEL_AXES,
                                   SEED,
                                   TRACKERS,
                                   TRIAL_KEY,
                                   Manifest,
                                   Objective,
                                   Resources,
                                   SpaceFile,
                                   SpaceKeys,
                                   SweepSpec,
                                   TrialSpec,
                                   check_experiment_name,
                                   check_trial_devices,
)

__all__ = [
    "BASE_PARAMS", "MANIFEST_FORMAT", "MAX_TRIALS", "MAX_YAML_NODES", "MODEL_AXES", "SEED",
    "SPACE_SUFFIXES", "TRACKERS", "TRIAL_KEY", "Manifest", "Objective", "Resources",
    "SpaceFile", "SpaceKeys", "SweepSpec", "TrialSpec", "available_spaces", "build_space",
    "check_experiment_name", "check_trial_devices", "format_dry_run", "load_space",
    "package_spaces_dir", "parse_assignment", "parse_space", "parse_value",
    "resolve_space_path", "space_dirs",
]
