"""requirements.txt on the local backend: what is installed is used, what is missing is installed once."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from dcf_jupyter.definition.pip_said import pip_sentence
from dcf_jupyter.definition.requirements import is_satisfied, missing_requirements, read_requirements
from dcf_jupyter.errors import DeployError, explain


def build_wheel(folder: Path, name: str, version: str, module_source: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (depending on `requires`), made here so the install test needs no index."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + \
        "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = {
        f"{name}/__init__.py": module_source.encode(),
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: dcf-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def test_reading_and_checking_requirements(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n\npyyaml>=5  # inline comment\n--no-index\nno-such-package-xyz==1.0\n"
                    'pyyaml; sys_platform == "nonexistent"\n')
    lines = read_requirements(path)
    assert lines == ["pyyaml>=5", "--no-index", "no-such-package-xyz==1.0", 'pyyaml; sys_platform == "nonexistent"']
    assert is_satisfied("pyyaml>=5") and not is_satisfied("pyyaml<1") and not is_satisfied("no-such-package-xyz")
    assert missing_requirements(lines) == ["--no-index", "no-such-package-xyz==1.0"]
    assert missing_requirements(["pyyaml"]) == []
    assert read_requirements(tmp_path / "absent.txt") == []


def test_missing_requirements_are_installed_once_for_the_function(gateway, make_function) -> None:
    folder = make_function("needs-pkg", """
        import dcftinypkg
        class Handler:
            def __call__(self, req):
                return dcftinypkg.VALUE
    """, requirements=["--no-index", "--find-links ./wheels", "dcftinypkg==1.0"])
    build_wheel(folder / "wheels", "dcftinypkg", "1.0", 'VALUE = "from a wheel"\n')
    gateway.client.deploy(folder)
    try:
        assert gateway.client.call("needs-pkg") == "from a wheel"
        gateway.client.deploy(folder)  # an update: the installed requirements are reused
        log = gateway.client.logs("needs-pkg", 1000)
        assert log.count("installing requirements missing here") == 1, log
    finally:
        gateway.client.delete("needs-pkg")


def test_a_failing_install_names_the_requirement_once_with_pips_words_below(gateway, make_function) -> None:
    """One sentence names the requirement pip could not find (shown once); pip's own lines follow under "pip
    said", not as a traceback."""
    folder = make_function("cannot-install", "class Handler:\n    def __call__(self, req):\n        return 1\n",
                           requirements=["--no-index", "no-such-package-xyz==1.0"])
    with pytest.raises(DeployError) as info:
        gateway.client.deploy(folder)
    said = str(info.value)
    assert said.startswith("cannot-install did not start: pip found no package 'no-such-package-xyz' for the "
                           "requirement 'no-such-package-xyz==1.0'"), said
    shown = explain(info.value)
    assert shown.title == "pip said" and "ERROR: No matching distribution found for no-such-package-xyz" in \
        shown.detail and "pip said" not in shown.detail and said.count("no-such-package-xyz") == 2, shown


PIP_NOT_FOUND = ["Looking in indexes: https://pypi.org/simple\n",
                 "ERROR: Could not find a version that satisfies the requirement opencv-pyhton-headless (from "
                 "versions: none)\n", "ERROR: No matching distribution found for opencv-pyhton-headless\n"]
PIP_NO_VERSION = ["ERROR: Could not find a version that satisfies the requirement numpy==99.0 (from versions: "
                  + ", ".join(f"1.{i}.0" for i in range(30)) + ")\n",
                  "ERROR: No matching distribution found for numpy==99.0\n"]


def test_pips_failures_are_one_sentence_each() -> None:
    known = ["opencv-python-headless", "numpy", "pyyaml"]
    assert pip_sentence(1, PIP_NOT_FOUND, known) == (
        "pip found no package 'opencv-pyhton-headless' for the requirement 'opencv-pyhton-headless': did you mean "
        "opencv-python-headless?")
    assert pip_sentence(1, PIP_NOT_FOUND, ["numpy"]).endswith(": is its name spelled as on PyPI?")
    assert pip_sentence(1, PIP_NO_VERSION, known) == (
        "no version of numpy satisfies the requirement 'numpy==99.0' (pip found 30 versions, the newest 1.25.0, "
        "1.26.0, 1.27.0, 1.28.0, 1.29.0)")
    assert pip_sentence(1, ["ERROR: Invalid requirement: 'num py'\n"], known) == \
        "pip cannot read the requirement 'num py'"
    assert pip_sentence(2, ["Collecting x\n", "ERROR: could not reach the index\n"], known) == \
        "installing requirements failed (pip exited with code 2): could not reach the index"


def test_tensorflow_runtime_brings_tensorflow_only_where_it_is_missing(monkeypatch) -> None:
    import importlib.util
    import shutil

    from dcf_jupyter.definition.runtimes import runtime_requirements

    real_find_spec = importlib.util.find_spec
    assert runtime_requirements("python") == []
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real_find_spec(name, *a))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert runtime_requirements("tensorflow-gpu") == ["tensorflow[and-cuda]>=2.16"]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert runtime_requirements("tensorflow-gpu")[0].startswith(("tensorflow-cpu", "tensorflow>="))
    assert runtime_requirements("python-gpu") == []


def test_two_installers_at_once_install_once_into_the_shared_cache(make_function, tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    from dcf_jupyter.definition.requirements import cache_root

    folder = make_function("shared-pkg", "import dcfshared\nclass Handler:\n    def __call__(self, req):\n"
                           "        return dcfshared.VALUE\n",
                           requirements=["--no-index", "--find-links ./wheels", "dcfshared==1.0"])
    build_wheel(folder / "wheels", "dcfshared", "1.0", 'VALUE = "shared"\n')
    # Two processes, as two kernels deploying the same function at the same moment.
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from dcf_jupyter.definition.requirements import install_missing
        site = install_missing(Path({str(folder)!r}), "python", python=sys.executable, output=sys.stderr,
                               note=lambda m: print("NOTE", m))
        print("SITE", site)
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    sites = {line.split(" ", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("SITE ")}
    assert len(sites) == 1 and Path(next(iter(sites))).parent == cache_root()
    installs = sum(out.count("NOTE installing requirements") for out in outputs)
    assert installs == 1, outputs
    assert (Path(next(iter(sites))) / "dcfshared" / "__init__.py").exists()
    assert not list(cache_root().glob("*.partial-*")), "no half-made folder is left behind"
