"""Shared fixtures: real gateways on free loopback ports, function folders written on the fly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from dcf_jupyter.backends.gpu_leases import ENV_GPU_LEASES
from dcf_jupyter.client import Client
from dcf_jupyter.credentials import ENV_CONFIG_DIR, read_owner_token
from dcf_jupyter.definition.requirements import ENV_CACHE_DIR
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.errors import FunctionError
from dcf_jupyter.launch import RunningGateway, start_detached, stop_gateway
from dcf_jupyter.running import remove_left_socket_dir
from dcf_jupyter.settings import ENV_TOKEN

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"


def _isolated_values(base: Path) -> dict[str, str | None]:
    """What no test may share with the user: their state dir, default gateway, token, config dir (where the owner's
    token lives), Jupyter runtime dir (where kernels' gateways announce themselves) and the machine's GPU lease
    folder (where every user's gateways book GPUs: one of this session's, not /run's)."""
    return {"DCF_STATE_DIR": str(base / "default-state"), "DCF_GATEWAY": None, ENV_TOKEN: None,
            ENV_CONFIG_DIR: str(base / "dcf-config"), "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
            ENV_GPU_LEASES: str(base / "gpu-leases")}


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


def owner_metadata() -> tuple[tuple[str, str], ...]:
    """The owner's token as gRPC metadata, for raw stubs (our Client sends it by itself)."""
    token = read_owner_token()
    assert token, "no gateway of this test session has made the owner's token yet"
    return (("authorization", f"Bearer {token}"),)


class _WithToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                 grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the owner's token to every call of a raw channel."""

    def _add(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), *owner_metadata()])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._add(details), request)

    intercept_unary_stream = intercept_unary_unary
    intercept_stream_unary = intercept_unary_unary
    intercept_stream_stream = intercept_unary_unary


def owner_channel(address: str, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A raw channel (no client-side checks) whose calls carry the owner's token, as a DCF client given it."""
    return grpc.intercept_channel(grpc.insecure_channel(address, options=options), _WithToken())


class GatewayHandle:
    """A running gateway process for a test, with a client and its state dir."""

    def __init__(self, running: RunningGateway, process: subprocess.Popen[bytes]) -> None:
        self.running = running
        self.process = process
        self.address = running.address
        self.state_dir = running.state_dir
        self.client = Client(running.address)

    def stop(self) -> None:
        self.client.close()
        stop_gateway(self.state_dir)
        # A test that SIGKILLed this gateway left its worker-socket dir behind (only a later gateway of the
        # same state dir would remove it): remove it here.
        remove_left_socket_dir(self.state_dir)


def start_gateway(state_dir: Path, *extra: str) -> GatewayHandle:
    """Start a gateway on a free loopback port for `state_dir`."""
    running, process = start_detached(state_dir, "127.0.0.1", 0, extra=list(extra))
    return GatewayHandle(running, process)


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


PANEL_TOKEN = "lab-test-token"


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


def run_cli(*args: str, input: bytes | None = None, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run `dcf ARGS` in a subprocess (as a user would) and return the completed process."""
    return subprocess.run([sys.executable, "-m", "dcf_jupyter.cli", *args], input=input, cwd=cwd,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


HANGS_ON_REQUEST = """
import time
import uuid

BOOT = uuid.uuid4().hex  # new in every worker process (PIDs repeat in containers)


class Handler:
    def __call__(self, req):
        if req.input == b"hang":
            time.sleep(3600)
        return BOOT
"""


def with_keys(folder: Path, **keys: object) -> Path:
    """Set these keys of every function in the folder's config.yaml."""
    config = folder / "config.yaml"
    data = yaml.safe_load(config.read_text())
    for entry in data["functions"].values():
        entry.update(keys)
    config.write_text(yaml.safe_dump(data))
    return folder


def with_timeout(folder: Path, seconds: float) -> Path:
    """Set every function's `timeout` in the folder's config.yaml."""
    return with_keys(folder, timeout=seconds)


def call_until_answered(client: Client, name: str, within: float = 5.0) -> str:
    """The first answer of `name` (retrying while it fails), within `within` seconds."""
    start = time.monotonic()
    while True:
        try:
            return client.call(name, timeout=within)
        except FunctionError:
            assert time.monotonic() - start < within, f"{name} did not answer within {within} s"
            time.sleep(0.05)


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


# Modules that start engines or browsers, build images, execute notebooks or make Unix users: minutes each.
# `python -m pytest -m "not slow"` leaves them out for a fast loop while developing; CI runs everything.
SLOW_MODULES = frozenset({"test_ray", "test_kuberay", "test_docker", "test_notebooks", "test_binder",
                          "test_lab_panel_browser", "test_widgets_browser", "test_shared_machine", "test_detect",
                          "test_ssd", "test_shared_machine_bounds", "test_jupyterhub"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of SLOW_MODULES, and load tests, `slow`."""
    for item in items:
        if item.module is not None and (item.module.__name__ in SLOW_MODULES or item.get_closest_marker("load")):
            item.add_marker(pytest.mark.slow)
