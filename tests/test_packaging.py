"""What the README tells a newcomer to install is what the package declares."""

from __future__ import annotations

import sys

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_the_notebook_extra_brings_the_jupyter_lab_the_readme_starts() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[notebook]"' in readme and "`jupyter lab notebooks/`" in readme
    assert any(req.startswith("jupyterlab") for req in _extras()["notebook"])


def test_the_dev_extra_has_what_the_tests_and_ci_import() -> None:
    dev = " ".join(_extras()["dev"])
    for needed in ("cryptography", "hypothesis", "mypy", "ruff", "pytest", "playwright", "nbclient"):
        assert needed in dev, f"[dev] lacks {needed}"
