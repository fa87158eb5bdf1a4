"""Bad input and outer faults: one line, exit 2, and nothing on disk lost or replaced.

Every test here checks what is on disk afterwards (byte for byte where files must be left
alone), besides the exit status and the one-line message. None of them starts Ray.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ninsweep.cli import main

from analysis_fixtures import make_experiment


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "cache"))


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (or the file itself) -> sha256 of its bytes."""
    files = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err, err
    return err


def experiment(tmp_path: Path) -> Path:
    return make_experiment(tmp_path, [{"seed": 0}, {"seed": 1}, {"activation": "elu"}])


# -- export / report: outputs ---------------------------------------------------------------

@pytest.mark.parametrize("target", ["ninsweep.json", "relu-s0/result.json", "relu-s0/",
                                    "mine.csv", "report/other.csv"])
def test_export_refuses_any_path_inside_the_experiment_but_its_own(tmp_path, capsys, target):
    exp = experiment(tmp_path)
    before = snapshot(exp)
    for force in ([], ["--force"]):
        assert main(["export", str(exp), "-o", str(exp / target), *force]) == 2
        assert "inside the experiment directory" in one_line_error(capsys)
        assert snapshot(exp) == before


def test_export_refuses_a_symlink_into_the_experiment(tmp_path, capsys):
    exp = experiment(tmp_path)
    link = tmp_path / "innocent.csv"
    link.symlink_to(exp / "ninsweep.json")
    before = snapshot(exp)
    assert main(["export", str(exp), "-o", str(link), "--force"]) == 2
    assert "inside the experiment directory" in one_line_error(capsys)
    assert snapshot(exp) == before and link.is_symlink()


def test_export_never_replaces_an_existing_file_without_force(tmp_path, capsys):
    exp = experiment(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    # Only the per-config file exists: the refusal still comes before the per-trial file.
    (out / "mine-configs.csv").write_text("precious\n")
    assert main(["export", str(exp), "-o", str(out / "mine.csv")]) == 2
    err = one_line_error(capsys)
    assert "mine-configs.csv already exists; pass --force" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine-configs.csv"]
    assert (out / "mine-configs.csv").read_text() == "precious\n"

    assert main(["export", str(exp), "-o", str(out / "mine.csv"), "--force"]) == 0
    assert (out / "mine-configs.csv").read_text() != "precious\n"
    assert (out / "mine.csv").stat().st_size > 0


def test_export_refreshes_its_own_files_in_the_experiment(tmp_path, capsys):
    exp = experiment(tmp_path)
    assert main(["export", str(exp)]) == 0
    (exp / "results.csv").write_text("stale\n")
    assert main(["export", str(exp)]) == 0  # derived, regenerated without --force
    assert main(["export", str(exp), "-o", str(exp) + "/"]) == 0
    assert (exp / "results.csv").read_text() != "stale\n"
    assert (exp / "ninsweep.json").read_text().startswith("{")


def test_report_refuses_the_experiment_root_and_existing_files(tmp_path, capsys):
    exp = experiment(tmp_path)
    before = snapshot(exp)
    assert main(["report", str(exp), "-o", str(exp), "--force"]) == 2
    assert "inside the experiment directory" in one_line_error(capsys)
    assert snapshot(exp) == before

    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    assert main(["report", str(exp), "-o", str(out)]) == 2
    assert "report.md already exists; pass --force" in one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "my notes\n"
    assert main(["report", str(exp), "-o", str(out), "--force"]) == 0
    assert (out / "report.md").read_text().startswith("#")
    # The default folder inside the experiment is its own: refreshed without --force.
    assert main(["report", str(exp)]) == 0 and main(["report", str(exp)]) == 0
    assert (exp / "report" / "report.md").is_file()


# -- --name ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "/tmp/elsewhere", "a/b", "..", ".hidden", ""])
@pytest.mark.parametrize("command", ["run", "submit"])
def test_name_obeys_the_rule_of_the_yaml_name_key(tmp_path, capsys, name, command):
    storage = tmp_path / "storage"
    storage.mkdir()
    args = ["--storage", str(storage), "--name", name]
    if command == "submit":
        args = ["--storage", "/mnt/ninsweep", "--name", name, "--address", "http://127.0.0.1:1"]
    # Refused before anything starts (no Ray, no cluster): the name is checked first.
    assert main([command, "smoke", *args]) == 2
    err = one_line_error(capsys)
    assert f"--name: {name!r} is not a usable experiment name" in err
    assert list(storage.iterdir()) == [] and not (tmp_path / "x").exists()


# -- space size: caps instead of hangs --------------------------------------------------------

def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    lines = ["name: bomb", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):  # 9^10 values once expanded
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines += ["grid:", "  - activation: [relu]"]
    space = _space(tmp_path, "\n".join(lines) + "\n")
    assert main(["run", str(space), "--dry-run", "--storage", str(tmp_path / "s")]) == 2
    assert "expands to more than 1,000,000 values through aliases" in one_line_error(capsys)
    assert not (tmp_path / "s").exists()


def test_a_recursive_alias_and_deep_nesting_are_one_line(tmp_path, capsys):
    space = _space(tmp_path, "name: rec\nx: &x [1, *x]\ngrid:\n  - activation: [relu]\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    assert "inside its own anchor" in one_line_error(capsys)
    space = _space(tmp_path, "name: deep\nx: " + "[" * 3000 + "]" * 3000 + "\ngrid: {activation: [relu]}\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    assert "nested too deeply" in one_line_error(capsys)


def test_a_million_trial_grid_is_refused_with_its_size(tmp_path, capsys):
    values = ", ".join(str(round(0.001 * (i + 1), 3)) for i in range(100))
    space = _space(tmp_path, f"name: huge\ngrid:\n  - train.lr: [{values}]\n"
                             f"    train.weight_decay: [{values}]\n    train.lr_gamma: [{values}]\n")
    assert main(["run", str(space), "--dry-run"]) == 2
    err = one_line_error(capsys)
    assert "grid: expands to 1,000,000 trials" in err and "at most 100,000" in err


def test_a_large_grid_lists_every_trial(tmp_path, capsys):
    # 2 x 2 x 2 x 1,250 = 10,000 trials: was ~30 s (type hints once per trial), now linear.
    values = ", ".join(str(0.0001 * (i + 1)) for i in range(1250))
    space = _space(tmp_path, "name: big\ntrain: {epochs: 1}\ngrid:\n  - activation: [relu, elu]\n"
                             "    batchnorm: [true, false]\n    init: [keras, he]\n"
                             f"    train.lr: [{values}]\n")
    assert main(["run", str(space), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "total: 10000 trials" in out and len(out.splitlines()) == 10003
