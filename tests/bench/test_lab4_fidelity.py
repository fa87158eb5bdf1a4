"""lab4 reproduces the code behind the report's numbers: average pooling at pool 2 (issue 14).

The report's Table 1 says max pooling after block 2; the code that produced its numbers
(Lab4-NIN2 dlhw2_nin.py) uses AveragePooling2D there (docs/lab4-reference.md).
"""

import json

import pytest
from analysis_fixtures import lab4_trials, make_experiment
from ray_support import ROOT

from ninsweep import analysis
from ninsweep.analysis import report
from ninsweep.config import ModelConfig
from ninsweep.space import load_space


@pytest.mark.parametrize("space", ["lab4", "lab4-3seeds"])
def test_the_lab4_spaces_use_average_pooling_at_pool2_and_say_why(space):
    path = ROOT / "search_spaces" / f"{space}.yaml"
    spec = load_space(path)
    assert {t.config.model.pool2 for t in spec.trials} == {"avg"}
    text = path.read_text()
    assert "pool2: avg" in text and "dlhw2_nin.py" in text
    # Only pool 2 differs from the defaults: the rest of the network is the table's.
    assert ModelConfig().pool2 == "max"


def _experiment(tmp_path, pool2):
    exp_dir = make_experiment(tmp_path, lab4_trials({"ELU+BN+WI": [91.6], "ReLU": [90.4]},
                                                    epochs=164), space_name="lab4", epochs=164)
    manifest_path = exp_dir / "ninsweep.json"
    manifest = json.loads(manifest_path.read_text())
    for trial in manifest["trials"]:
        if pool2 is not None:
            trial["config"]["model"]["pool2"] = pool2
    manifest_path.write_text(json.dumps(manifest))
    return analysis.load_experiment(exp_dir)


@pytest.mark.parametrize("pool2, says", [
    ("avg", "the comparison is with the network that produced the report's numbers"),
    ("max", "trials with max pooling ran the table's network"),
    (None, "trials with max pooling ran the table's network"),  # older manifests: the default
])
def test_the_report_says_which_pooling_ours_and_the_reports_ran(tmp_path, pool2, says):
    path = report.write_report(_experiment(tmp_path, pool2), tmp_path / "rep")
    section = path.read_text().split("## Against the lab report", 1)[1].split("\n## ", 1)[0]
    assert "**Pool 2:**" in section and says in section
    assert f"these trials ran {pool2 or 'max'} pooling" in section
