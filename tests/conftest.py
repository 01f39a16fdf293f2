"""Shared fixtures: real gateways on free loopback ports, function folders written on the fly (helpers that are
not fixtures live in support.py)."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import FUNCTIONS, PANEL_TOKEN, GatewayHandle, start_gateway

from dcf_jupyter.backends.gpus.leases import ENV_GPU_LEASES
from dcf_jupyter.client import Client
from dcf_jupyter.definition.requirements import ENV_CACHE_DIR
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.host.credentials import ENV_CONFIG_DIR
from dcf_jupyter.launch import start_detached
from dcf_jupyter.settings import ENV_TOKEN


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which the light [test] install lacks
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `-n 2`: test modules as units, the Ray-starting ones together and first (tests/xdist_scheduling.py)."""
    from xdist_scheduling import RayClustersFirst

    return RayClustersFirst(config, log)


def _isolated_values(base: Path) -> dict[str, str | None]:
    """What no test may share with the user: their state dir, default gateway, token, config dir (where the owner's
    token lives), Jupyter runtime dir (where kernels' gateways announce themselves) and the machine's GPU lease
    folder (where every user's gateways book GPUs: one of this session's, not /run's); and no Ray usage reports."""
    return {"DCF_STATE_DIR": str(base / "default-state"), "DCF_GATEWAY": None, ENV_TOKEN: None,
            ENV_CONFIG_DIR: str(base / "dcf-config"), "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
            ENV_GPU_LEASES: str(base / "gpu-leases"),
            # The Ray clusters tests start (ray.cluster_utils, tutorial 07's) report nothing to Ray's usage
            # statistics server: tests reach nothing off this machine (the gateway's own Ray head says so too).
            "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="session", autouse=True)
def _session_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Set before any session fixture starts a gateway (which inherits it): the isolated values above, and a
    requirement cache of this test session (tests that count installs see their own)."""
    cache = tmp_path_factory.mktemp("dcf-cache")
    values = {**_isolated_values(tmp_path_factory.getbasetemp()), ENV_CACHE_DIR: str(cache)}
    previous = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    yield cache
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same values again for each test, undone after it, so a test that changes them changes no other."""
    for key, value in _isolated_values(tmp_path_factory.getbasetemp()).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """One gateway for the session, with functions/echo and functions/hello-dcf deployed."""
    handle = start_gateway(tmp_path_factory.mktemp("gateway") / "state")
    try:
        handle.client.deploy(FUNCTIONS / "echo")
        handle.client.deploy(FUNCTIONS / "hello-dcf")
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def panel_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """The shared gateway the JupyterLab panel sees (test_lab_*), with a token, as a user runs one, and two declared
    GPUs (booked in a config dir of its own, so no other test's gateway sees them held)."""
    state = tmp_path_factory.mktemp("panel-gateway") / "state"
    env = {ENV_TOKEN: PANEL_TOKEN, ENV_CONFIG_DIR: str(state.parent / "config"),
           ENV_GPU_LEASES: str(state.parent / "gpu-leases")}
    handle = GatewayHandle(*start_detached(state, "127.0.0.1", 0, env=env, extra=["--gpus", "0,1"]))
    handle.client = Client(handle.address, token=PANEL_TOKEN)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def panel_lab(panel_gateway: GatewayHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """JupyterLab whose shared gateway is `panel_gateway`, serving a folder with a copy of functions/echo."""
    pytest.importorskip("jupyterlab", reason="the panel runs in JupyterLab: pip install -e '.[notebook]'")
    from labdriver import jupyter_lab

    root = tmp_path_factory.mktemp("panel-lab")
    shutil.copytree(FUNCTIONS / "echo", root / "echo")
    with jupyter_lab(root, env={"DCF_GATEWAY": panel_gateway.address, ENV_TOKEN: PANEL_TOKEN}) as lab:
        yield lab


@pytest.fixture
def fresh_gateway(tmp_path: Path) -> Iterator[GatewayHandle]:
    """A gateway of this test's own (for restarts, kills and registry checks)."""
    handle = start_gateway(tmp_path / "state")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def make_function(tmp_path: Path):
    """write(name, handler_source, requirements=[]) -> folder of a new function with that handler."""

    def write(name: str, source: str, requirements: list[str] | None = None, parent: Path | None = None) -> Path:
        return init_function(name, parent=parent or tmp_path, handler_source=textwrap.dedent(source),
                             requirements=requirements)

    return write


@pytest.fixture(scope="session")
def stranger() -> Iterator[Any]:
    """Another local user of this machine, with this project in a venv of its own (root only: skipped, saying
    why, elsewhere); removed with its files at the end of the session."""
    from stranger import make_stranger, remove_stranger, why_not

    reason = why_not()
    if reason:
        print(f"\nshared-machine tests with a second user skipped: {reason}")
        pytest.skip(f"needs a second local user: {reason}")
    made = make_stranger()
    try:
        yield made
    finally:
        remove_stranger(made)
