"""Binder: a fresh environment built exactly as `binder/` says runs the tutorials and deploys every example
function with nothing installed at call time.

repo2docker itself cannot run here: its base images come from a container registry these machines cannot
reach. So this test does what repo2docker would do with `binder/`, in the same order, on this machine: a venv
of the Python that `runtime.txt` names, `pip install -r requirements.txt`, `postBuild` from the repository
root, then `start` with the command to run after it (on Binder: JupyterLab; here: the first tutorials executed
by nbclient in that venv's kernel, against the gateway that `start` launched). Every example function is then
deployed there with that venv's `dcf`, and what the later tutorials import beside them is imported. (Every
tutorial runs in full in test_notebooks.py, with the same extras: running them all again here cost 4 of CI's
minutes for what these steps check.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from dcf_jupyter.client import Client
from dcf_jupyter.host.ports import free_port
from dcf_jupyter.launch import stop_gateway

pytestmark = pytest.mark.slow  # builds Binder's environment and runs every tutorial in it


BINDER = ROOT / "binder"


def copy_as_cloned(target: Path) -> None:
    """The repository's files as a clone has them (tracked, or new and not ignored): no build output, venvs or
    egg-info of this checkout, which would hide what postBuild must produce itself."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a deleted, not yet committed file is still listed
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)


def binder_python() -> str:
    """The interpreter runtime.txt asks for ('python-3.11' -> python3.11), or skip saying it is absent."""
    version = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    found = shutil.which(f"python{version}")
    if found is None:
        pytest.skip(f"binder/runtime.txt asks for Python {version}, which this machine lacks")
    return found


def run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run a build step; its output is the assertion message when it fails."""
    done = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}" \
                                 f"\n{done.stderr[-3000:]}"
    return done.stdout


TUTORIALS_RUN_HERE = ("01-hello-dcf.ipynb", "03-stft.ipynb")
TUTORIAL_IMPORTS = "import cv2, matplotlib, numpy, PIL, scipy, tensorflow, anywidget, ray; from ray import serve"


@pytest.mark.timeout(1800)
def test_binder_environment_runs_the_tutorials_and_every_example_function(tmp_path: Path) -> None:
    python = binder_python()
    repo = tmp_path / "repo"
    copy_as_cloned(repo)
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    state, cache = tmp_path / "state", tmp_path / "cache"
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           # The venv's kernelspec, not one a user or the system installed for another Python.
           "JUPYTER_PATH": str(venv / "share" / "jupyter"),
           "DCF_GATEWAY": address, "DCF_STATE_DIR": str(state), "DCF_CACHE_DIR": str(cache)}
    env.pop("PYTHONPATH", None)

    run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", "binder/requirements.txt"], cwd=repo, env=env,
        timeout=900)
    run(["bash", "binder/postBuild"], cwd=repo, env=env, timeout=1200)
    notebooks = [str(repo / "notebooks" / name) for name in TUTORIALS_RUN_HERE]
    examples = sorted(path.name for path in (repo / "functions").iterdir() if (path / "config.yaml").exists())
    try:
        run(["bash", "binder/start", str(venv / "bin" / "python"), "tests/notebook_runner.py",
             str(tmp_path / "runs"), *notebooks], cwd=repo, env=env, timeout=1500)
        errors = json.loads((tmp_path / "runs" / "report.json").read_text())
        assert sorted(errors) == sorted(TUTORIALS_RUN_HERE)
        assert not any(errors.values()), json.dumps(errors, indent=1)
        for example in examples:
            run([str(venv / "bin" / "dcf"), "function", "deploy", "-f", f"functions/{example}/config.yaml"],
                cwd=repo, env=env, timeout=600)
        run([str(venv / "bin" / "python"), "-c", TUTORIAL_IMPORTS], cwd=repo, env=env, timeout=300)
        with Client(address) as client:  # deployed to start's gateway, not to embedded ones
            deployed = {f.name: f.status for f in client.list()}
        assert all(deployed.get(name) == "Ready" for name in ("hello-dcf", "echo", "stft", "stft-data", "ssd",
                                                              "detect")), deployed
    finally:
        stopped = stop_gateway(state)
    assert stopped is not None, "binder/start launched no gateway"
    installed = list((cache / "requirements").glob("*")) if (cache / "requirements").exists() else []
    assert not installed, f"a deploy installed requirements at call time: {installed}"


def test_binder_start_says_so_when_no_gateway_starts(tmp_path: Path) -> None:
    """A gateway that cannot start (here: a port out of range): start still runs the command after it (on
    Binder, JupyterLab) and says the notebooks will start their own."""
    env = {**os.environ, "DCF_GATEWAY": "127.0.0.1:70000", "DCF_STATE_DIR": str(tmp_path / "state"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(BINDER / "start"), "echo", "then JupyterLab"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "then JupyterLab", done
    assert "no shared DCF gateway; notebooks will start their own" in done.stderr
    assert "--port must be within 0..65535, got 70000" in done.stderr
