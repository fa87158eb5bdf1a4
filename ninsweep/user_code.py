"""User code named by import path: ``model.factory: "mynets:resnet20"`` (and data factories).

A path is ``module:function`` (``mypkg.nets:resnet20``). The one rule, for ``run``,
``resume``, ``train`` and the trials alike (``import_user_module``): the module is imported
from the normal ``sys.path``, else from the directory of the space file that names it (``train``
has none), else from the working directory -- so a ``mynets.py`` next to ``my-study.yaml``,
or in the directory ``ninsweep train`` runs in, just works. Modules found
in those directories are user code that Ray workers do not have: ``code_path`` says which
file or package to ship (sweep puts it on the embedded Ray's PYTHONPATH or in a cluster's
``py_modules``; submit ships it with the job).

No torch and no Ray here: this runs while a space is checked.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ninsweep.errors import ConfigError
from ninsweep.fmt import first_line

# Never shipped to a cluster, wherever they appear in what ships (the ninsweep package, a
# user's factory module or package, a submitted space): credentials, tokens, key stores and
# shell histories. The one list of secrets: submit, resume jobs and `run --address` apply it
# to every upload (gitignore-style patterns, matched at any depth).
SECRET_EXCLUDES = (
    # environment and tool credential files
    ".env", ".env.*", "*.env", ".envrc", ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc",
    ".yarnrc.yml", ".git-credentials", ".gitconfig", ".vault-token", ".my.cnf", ".s3cfg",
    ".boto", ".passwd-s3fs", "rclone.conf", ".databrickscfg", ".terraformrc",
    "credentials.tfrc.json", ".modal.toml", "kaggle.json", ".kaggle",
    # cloud and hub credentials (directories)
    ".aws", ".ssh", ".gnupg", ".kube", ".docker", ".azure", ".oci", "**/.config/gcloud",
    "**/.config/gh", "**/.config/hub", "**/.config/doctl", ".mc", ".huggingface",
    "**/.cache/huggingface", "**/.cargo/credentials*", "**/.gem/credentials", ".wandb",
    # tokens and keys by name
    "hf_token", "*_token", "*.token", "auth_token", "token.json", "credentials",
    "credentials.json", "*credentials*.json", "*service-account*.json", "*.secret",
    "*.secrets", "id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*",
    # key stores
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx", "*.gpg", "*.asc",
    "*.ppk",
    # shell and REPL histories
    ".*_history", ".*history", ".history", ".lesshst", ".viminfo",
)
# Never shipped either: environments, VCS data, run output, caches, datasets, build output.
# Gitignore-style patterns relative to the shipped directory (Ray also reads .gitignore).
SHIP_EXCLUDES = (
    ".git", ".venv", "venv", "env", "__pycache__", "*.pyc", "*.egg-info",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", ".tox",
    "/runs", "/.data", "/data", "/shared", "/build", "/dist", "/.gl",
    "*.ckpt", "*.pt", "*.pth", "*.tar.gz", "*.zip",
) + SECRET_EXCLUDES

_PATH_RE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


def import_path_problem(text: Any) -> Optional[str]:
    """What is wrong with ``text`` as ``module:function``, or None (the config schema's rule)."""
    if not isinstance(text, str) or not _PATH_RE.fullmatch(text):
        return f"{text!r} is not an import path (write module:function, e.g. mynets:resnet20)"
    return None


def check_import_path(key: str, text: Any) -> str:
    """``text`` if it reads ``module:function``, else a one-line ``ConfigError``."""
    problem = import_path_problem(text)
    if problem is not None:
        raise ConfigError(f"{key}: {problem}")
    return text


def add_search_dirs(dirs: Iterable[Path | str]) -> None:
    """Make ``dirs`` importable in this process (after what is already on sys.path)."""
    for directory in dirs:
        directory = str(Path(directory).resolve())
        if directory not in sys.path:
            sys.path.append(directory)


def import_user_module(key: str, text: str, search_dirs: Iterable[Path | str] = ()):
    """The module of ``module:function``, found by the one rule (the module's docstring:
    sys.path, then ``search_dirs``, then the working directory); errors name ``key``."""
    module_name = check_import_path(key, text).partition(":")[0]
    add_search_dirs([*search_dirs, Path.cwd()])
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        raise ConfigError(f"{key}: cannot import {module_name!r} (no module named {missing!r}; "
                          "put it next to the space file, in the working directory or on "
                          "PYTHONPATH)") from None
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(f"{key}: importing {module_name!r} raised {type(err).__name__}: "
                          f"{first_line(err, 300)}") from None


def load_callable(key: str, text: str, search_dirs: Iterable[Path | str] = ()) -> Callable:
    """Import ``module:function`` and return the function; errors name ``key`` in one line."""
    module_name, _, attribute = check_import_path(key, text).partition(":")
    module = import_user_module(key, text, search_dirs)
    function = getattr(module, attribute, None)
    if function is None:
        raise ConfigError(f"{key}: module {module_name!r} has no {attribute!r}")
    if not callable(function):
        raise ConfigError(f"{key}: {text} is a {type(function).__name__}, not a function")
    return function


def keyword_problem(function: Callable, text: str, given: Iterable[str],
                    supplied: Iterable[str] = ()) -> Optional[tuple[str, str]]:
    """``(keyword, problem)`` when ``given`` keywords do not fit ``function``'s signature.

    ``supplied`` are keywords ninsweep passes itself when the function takes them
    (``num_classes``). ``None`` when the call fits.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: the call itself will tell
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = [name for name, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    given = list(given)
    for name in given:
        if name not in named and not takes_any:
            return name, (f"not a keyword of {text} (its keywords: "
                          f"{', '.join(named) or 'none'})")
    for name, p in params.items():
        if (p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
                and name not in given and name not in supplied):
            return name, f"{text} needs keyword {name!r} (set it in the section or the grid)"
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            return name, f"{text} takes {name!r} by position only; give it a keyword"
    return None


def accepts_keyword(function: Callable, name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def package_dir() -> Path:
    """The ``ninsweep`` package directory: what ships to Ray workers and jobs beside user code."""
    return Path(__file__).resolve().parent


def code_path(text: str, user_dirs: Iterable[Path | str]) -> Optional[str]:
    """The file or package to ship to Ray workers for ``module:function``, if it is user code.

    User code is a module whose top-level file or package lies in one of ``user_dirs`` (the
    space file's directory, the working directory): the workers' Python has no such path.
    ``None`` for installed packages (the workers have them, or the cluster image does).
    """
    top = text.partition(":")[0].partition(".")[0]
    if top == __name__.partition(".")[0]:
        return None  # ninsweep itself: shipped already
    module = sys.modules.get(top)
    origin = getattr(module, "__file__", None)
    if origin is None:
        return None
    origin_path = Path(origin).resolve()
    shipped = origin_path.parent if origin_path.name == "__init__.py" else origin_path
    for directory in user_dirs:
        directory = Path(directory).resolve()
        if shipped.parent == directory:
            return str(shipped)
    return None
