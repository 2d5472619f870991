"""Console scripts of `pip install -e .` (pyproject.toml): `paligemma-train` is `python -m trainers.train`, etc.

Each runs the module exactly as `python -m` does (`runpy`, as `__main__`), with the same flags and exit codes.

This project's input pipeline is a top-level package named `datasets`, like Hugging Face `datasets`. An editable
install puts the checkout on `sys.path` after site-packages, so where both are installed a plain `import datasets`
gets Hugging Face's (a user's own code keeps working). These commands need this project's, so before running they
put the checkout first on `sys.path`, for their own process only. Nothing here imports a project module.
"""

import importlib.util
import os
import runpy
import sys

_PACKAGE = "datasets"


def _checkout_root() -> str:
    """The folder that holds this project's packages (the checkout for an editable install)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prefer_project_datasets() -> bool:
    """Makes `import datasets` load this project's package in this process; True when `sys.path` had to change.

    A no-op when it already does (run from the checkout, or no other `datasets` installed). For the Python API next
    to Hugging Face `datasets`: call it before importing `trainers`, `evaluators` or `datasets` (README, "Install");
    Hugging Face `datasets` is then not importable in that process. Raises RuntimeError when another `datasets` is
    already imported.
    """
    root = _checkout_root()
    ours = os.path.join(root, _PACKAGE, "__init__.py")
    if not os.path.exists(ours):
        return False
    loaded = sys.modules.get(_PACKAGE)
    spec = importlib.util.find_spec(_PACKAGE) if loaded is None else loaded.__spec__
    if spec is not None and spec.origin and os.path.realpath(spec.origin) == os.path.realpath(ours):
        return False
    if loaded is not None:
        raise RuntimeError(
            f"another `{_PACKAGE}` package ({spec.origin if spec else loaded!r}) is already imported in this process; "
            f"this project's `{_PACKAGE}` ({os.path.dirname(ours)}) cannot be loaded next to it (one top-level "
            "name): use it in a separate process."
        )
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    return True


def _run(module: str) -> None:
    prefer_project_datasets()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def train() -> None:
    """`paligemma-train`: `python -m trainers.train`."""
    _run("trainers.train")


def evaluate() -> None:
    """`paligemma-eval`: `python -m evaluators.run`."""
    _run("evaluators.run")


def predict() -> None:
    """`paligemma-predict`: `python -m tools.predict`."""
    _run("tools.predict")


def convert_checkpoint() -> None:
    """`paligemma-convert`: `python -m tools.convert_checkpoint`."""
    _run("tools.convert_checkpoint")
