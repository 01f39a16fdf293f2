"""What tests share besides fixtures (those live in conftest.py): gateways started and stopped by their handles,
raw channels with the owner's token, the CLI as a user runs it, config keys set on a folder, and `eventually`, the
one way a test waits for something to become true."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml

from dcf_jupyter.client import Client
from dcf_jupyter.errors import FunctionError
from dcf_jupyter.host.credentials import read_owner_token
from dcf_jupyter.host.running import remove_left_socket_dir
from dcf_jupyter.launch import RunningGateway, start_detached, stop_gateway

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
PANEL_TOKEN = "lab-test-token"

T = TypeVar("T")


def eventually(check: Callable[[], T], within: float, what: str, *, every: float = 0.05,
               ignoring: tuple[type[BaseException], ...] = (), show: Callable[[], object] | None = None) -> T:
    """The first truthy result of `check()`, tried every `every` seconds for `within` seconds. While not yet,
    `check` may return something falsy or raise AssertionError (or one of `ignoring`); past `within`, an
    AssertionError says `what` did not happen in time, with the last reason `check` gave (or what `show()` says
    of the state then)."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
            reason = f"last: {result!r}"
        except (AssertionError, *ignoring) as exc:
            result, reason = None, f"last: {type(exc).__name__}: {exc}"  # type: ignore[assignment]
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within:g} s: {what} ({show() if show else reason})")
        time.sleep(every)


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
    answer: str = eventually(lambda: client.call(name, timeout=within), within, f"{name} answers",
                             ignoring=(FunctionError,))
    return answer


# Each reply says the request and the size of the batch it came in.
BATCHED = """
import time


class Handler:
    def __call__(self, reqs):
        time.sleep(0.05)  # one model call per batch
        replies = []
        for req in reqs:
            ask = req.input.decode()
            replies.append(ValueError(f"not {ask}") if ask.startswith("bad") else f"{ask}|{len(reqs)}")
        return replies
"""


def at_once(count: int, work: Callable[[int], object]) -> list[object]:
    """work(i) on `count` threads started together: what each returned or raised."""
    results: list[object] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test reads it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def split(reply: object) -> tuple[str, int]:
    """('ask', batch size) from a BATCHED reply 'ask|size'."""
    ask, size = str(reply).rsplit("|", 1)
    return ask, int(size)
