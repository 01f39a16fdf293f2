"""What the README tells a newcomer to install is what the package declares."""

from __future__ import annotations

import json
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _closure(extra: str) -> set[str]:
    """The distributions an extra brings, its own extras (dcf-jupyter[...]) followed."""
    found: set[str] = set()
    for line in _extras()[extra]:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == "dcf-jupyter":
            for inner in requirement.extras:
                found |= _closure(inner)
        else:
            found.add(canonicalize_name(requirement.name))
    return found


def test_the_tutorials_extra_brings_the_jupyter_lab_the_readme_starts() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[tutorials]"' in readme and "`jupyter lab notebooks/`" in readme
    assert {"jupyterlab", "scipy", "ray", "anywidget"} <= _closure("tutorials")
    assert 'python -m pip install --no-cache-dir -e ".[tutorials]"' in (ROOT / "binder" / "postBuild").read_text()


# Modules the tutorials need whose distribution is named otherwise (when they are installed, their metadata says).
NOT_INSTALLED_DISTRIBUTIONS = {"PIL": {"pillow"}, "cv2": {"opencv-python-headless", "opencv-python"},
                               "tensorflow": {"tensorflow", "tensorflow-cpu"}}


def test_each_tutorial_names_the_extra_that_brings_what_it_needs() -> None:
    """A tutorial's first cell (`%dcf needs MODULE ... --extra NAME`) names an extra that installs every module."""
    distributions = metadata.packages_distributions()
    checked = 0
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        needs = [line for line in "".join(cells[0]["source"]).splitlines() if line.startswith("%dcf needs ")]
        for line in needs:
            words = line.split()[2:]
            extra = words[words.index("--extra") + 1] if "--extra" in words else "tutorials"
            modules = words[: words.index("--extra")] if "--extra" in words else words
            brought = _closure(extra)
            for module in modules:
                # Where the module is not installed (a light [test] venv), its distribution by name.
                names = ({canonicalize_name(d) for d in distributions.get(module, [])}
                         or NOT_INSTALLED_DISTRIBUTIONS.get(module, {canonicalize_name(module)}))
                assert names & brought, f"{notebook.name} needs {module}, which [{extra}] does not bring"
                checked += 1
    assert checked >= 10


def test_the_dev_extra_has_what_the_tests_and_ci_import() -> None:
    dev = _closure("dev")
    for needed in ("cryptography", "hypothesis", "mypy", "ruff", "pytest", "playwright", "nbclient", "jsonschema"):
        assert needed in dev, f"[dev] lacks {needed}"


def test_the_test_extra_is_light_and_has_what_the_fast_tests_import() -> None:
    """`pip install -e ".[test]"` is enough for `-m "not slow"` (what it lacks skips, naming its extra): none of
    TensorFlow, Ray, Playwright or JupyterLab."""
    light = _closure("test")
    assert {"pytest", "pytest-timeout", "hypothesis", "cryptography", "jsonschema", "ipython", "ipykernel"} <= light
    assert not light & {"tensorflow", "tensorflow-cpu", "ray", "playwright", "jupyterlab"}
