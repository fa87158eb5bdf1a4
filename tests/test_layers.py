"""The package's layers and what each may import, read from the source (AST, no subprocess).

docs/architecture.md has the same table. A base of small torch-free modules (``ninsweep/*.py``)
under everything; ``core`` (torch, never Ray or pandas); ``space`` (pydantic and PyYAML);
``analysis`` (pandas, scipy, matplotlib; never torch or Ray); ``sweep`` (the one layer that
imports Ray at the top); ``cluster`` (the Ray Jobs SDK, on demand); ``cli`` on top. A layer
imports only the layers below it. Start-up rules follow from what each command's modules
import at module level: ``status`` and ``export`` never load torch or Ray, ``run --dry-run``
never loads Ray, pandas or (for the NIN) torch.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ninsweep"

LAYERS = ("core", "space", "analysis", "dashboard", "sweep", "cluster", "cli")
# What each layer may import of ninsweep ("base": the top-level modules).
MAY_IMPORT = {
    "base": {"base"},
    "core": {"base", "core"},
    "space": {"base", "space"},
    "analysis": {"base", "space", "analysis"},
    "dashboard": {"base", "space", "analysis", "dashboard"},
    "sweep": {"base", "core", "space", "analysis", "sweep"},
    "cluster": {"base", "space", "cluster"},
    "cli": {"base", "core", "space", "analysis", "dashboard", "sweep", "cluster", "cli"},
    # ninsweep/__init__ (the public API: build_model, TrialConfig, Trainer) and __main__.
    "top": {"base", "core", "space", "analysis", "dashboard", "sweep", "cluster", "cli"},
}
# Third-party packages a layer never imports, at any depth of a function.
NEVER = {
    "base": {"torch", "torchvision", "ray", "pandas", "numpy", "scipy", "matplotlib",
             "tensorboardX", "grpc"},
    "core": {"ray", "pandas", "scipy", "matplotlib", "tensorboardX", "pydantic_core"},
    "space": {"torch", "torchvision", "ray", "pandas", "numpy", "scipy", "matplotlib"},
    "analysis": {"torch", "torchvision", "ray", "tensorboardX"},
    "dashboard": {"torch", "torchvision", "ray", "tensorboardX", "matplotlib"},
    "sweep": set(),
    "cluster": {"torch", "torchvision", "pandas", "matplotlib"},
    "cli": set(),
    "top": set(),
}
# Modules whose module-level imports (followed through ninsweep) must stay clear of these:
# what a command costs before it does anything.
LIGHT = {
    "ninsweep.cli": {"torch", "ray", "pandas", "matplotlib"},  # every command's start, --help
    "ninsweep.cli.run": {"torch", "ray", "pandas", "pyarrow", "matplotlib"},  # run --dry-run
    "ninsweep.cli.results": {"torch", "ray", "matplotlib"},  # status, export
    "ninsweep.analysis": {"torch", "ray", "matplotlib"},  # the analysis API in a notebook
    "ninsweep.cli.dashboard": {"torch", "ray", "matplotlib"},  # the live page
    "ninsweep.space": {"torch", "ray", "pandas", "pyarrow"},  # checking a space
    "ninsweep.sweep.preflight": {"torch", "ray", "pandas", "pyarrow"},  # before Ray starts
    "ninsweep.core.model": {"ray", "pandas"},  # the model alone
    "ninsweep.core.train": {"ray", "pandas"},  # the loop alone
}
# Imports inside functions of what a module may not import at its top, each with its reason.
DEFERRED = {
    ("ninsweep.cli.run", "command_run"): "Ray Tune and pandas only past --dry-run",
    ("ninsweep.cli.extend", "command_extend"): "pandas to read what ran, Ray only past --dry-run",
    ("ninsweep.cli.results", "command_report"): "matplotlib (and plotly for --html) only for the report",
    ("ninsweep.cli.results", "finish_sweep"): "matplotlib only to refresh a report kept there",
    ("ninsweep.sweep.preflight", "check_factory_models"): "torch only for a model factory",
    ("ninsweep.sweep", "__getattr__"): "old pickles' names, resolved on demand",
    ("ninsweep", "__getattr__"): "the public API without torch until asked",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if module == "ninsweep.tracking":
        return "sweep"  # old pickles' name for sweep.trackers
    if module in ("ninsweep", "ninsweep.__main__"):
        return "top"
    return "base"


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(module: str) -> list[tuple[str, bool, str]]:
    """(imported module, at module level?, enclosing function) for every import statement."""
    tree = ast.parse(MODULES[module].read_text())
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend((alias.name, function is None, function or "") for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                base = child.module
                found.append((base, function is None, function or ""))
                for alias in child.names:  # `from ninsweep.sweep import tune_state`
                    if f"{base}.{alias.name}" in MODULES:
                        found.append((f"{base}.{alias.name}", function is None, function or ""))
            visit(child, inner)

    visit(tree, None)
    return found


def ninsweep_parents(module: str) -> list[str]:
    """Importing ninsweep.a.b runs ninsweep/__init__ and ninsweep/a/__init__ first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in MODULES]


def module_level_closure(module: str) -> tuple[set[str], set[str]]:
    """(ninsweep modules, third-party top-level packages) a module loads when imported."""
    seen, third_party, todo = set(), set(), [module]
    while todo:
        current = todo.pop()
        for parent in ninsweep_parents(current):
            if parent in seen:
                continue
            seen.add(parent)
            for target, top, _ in imports(parent):
                if not top:
                    continue
                if target.split(".")[0] == "ninsweep":
                    todo.append(target)
                else:
                    third_party.add(target.split(".")[0])
    return seen, third_party


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_layer_imports_only_the_layers_below_it(module):
    layer = layer_of(module)
    for target, _, function in imports(module):
        if target.split(".")[0] == "ninsweep" and target != "ninsweep":
            assert layer_of(target) in MAY_IMPORT[layer], \
                f"{module} ({layer}) imports {target} ({layer_of(target)}) in {function or 'module'}"
        elif target.split(".")[0] in NEVER[layer]:
            raise AssertionError(f"{module} ({layer}) imports {target}")


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_what_a_command_loads_before_it_starts(module):
    modules, third_party = module_level_closure(module)
    assert not third_party & LIGHT[module], (module, sorted(third_party & LIGHT[module]))
    heavy = {name for name in modules if layer_of(name) in ("sweep",) and name != "ninsweep.sweep"
             and name != "ninsweep.sweep.preflight"}
    if LIGHT[module] & {"ray"}:
        assert not heavy, (module, sorted(heavy))


def test_deferred_imports_are_the_listed_ones():
    """A function-level import of something a module's top could not afford is listed in
    DEFERRED with its reason; any other function-level import of ninsweep is a cycle
    workaround or an oversight."""
    for module in MODULES:
        for target, top, function in imports(module):
            if top or target.split(".")[0] != "ninsweep":
                continue
            assert (module, function) in DEFERRED, f"{module}.{function} imports {target} lazily"


def test_ray_is_imported_at_the_top_only_by_the_sweep_layer_and_its_commands():
    for module in MODULES:
        for target, top, _ in imports(module):
            if top and target.split(".")[0] == "ray":
                assert layer_of(module) == "sweep" or module == "ninsweep.cli.resume", module


def test_the_preflight_and_the_pickled_callables_stay_importable_without_their_layer():
    # preflight runs in `run --dry-run` (no Ray); tune_state is pickled by value and must not
    # pull other ninsweep code into a pickle (it names only a string constant).
    assert not any(t.split(".")[0] == "ray" for t, top, _ in imports("ninsweep.sweep.preflight") if top)
    names = {t for t, _, _ in imports("ninsweep.sweep.tune_state") if t.startswith("ninsweep")}
    assert names <= {"ninsweep.space.schema"}, names


def test_every_layer_has_its_package_and_no_module_is_left_flat():
    for layer in LAYERS:
        assert f"ninsweep.{layer}" in MODULES
    flat = sorted(m for m in MODULES if m.count(".") == 1 and layer_of(m) == "base")
    assert flat == sorted([
        "ninsweep.atomic", "ninsweep.config", "ninsweep.console",
        "ninsweep.datasets", "ninsweep.errors", "ninsweep.experiment_dir", "ninsweep.fmt",
        "ninsweep.locations", "ninsweep.metrics", "ninsweep.registry", "ninsweep.storage", "ninsweep.user_code",
        "ninsweep.waits"]), flat


def test_the_rules_can_fail():
    # The checks above would see a forbidden import: a module of ours, parsed the same way.
    assert ("torch", True, "") in imports("ninsweep.core.model")
    assert "torch" in module_level_closure("ninsweep.cli.train")[1]
    assert "ray" in module_level_closure("ninsweep.cli.resume")[1]
    assert importlib.util.find_spec("ninsweep.tracking") is not None
