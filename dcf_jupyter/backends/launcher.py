"""Starting one worker, the one way: as a process (the local backend, `dcf function run`) or as a container
of the function's image (the docker backend, `dcf function run --image`), up to the moment it serves."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar


class LaunchFailed(Exception):
    """The worker did not get to serve: `message` says why, `detail` holds its traceback or last log lines."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


# --- a worker process ---------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """How to run `python -m dcf_jupyter.worker` for a function folder."""

    folder: Path
    name: str
    python: str = sys.executable
    socket: str | None = None  # serve the gateway's framed link here
    grpc: str | None = None  # serve the DCF gRPC protocol on HOST:PORT (port 0 picks one)
    max_message: int | None = None
    concurrency: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    lifeline: bool = False  # hand the worker a pipe whose EOF (our death) ends it

    def arguments(self) -> list[str]:
        """The worker's arguments but for its descriptors (what a template's fork is given too)."""
        arguments = [str(self.folder), "--name", self.name]
        for flag, value in (("--socket", self.socket), ("--grpc", self.grpc),
                            ("--max-message-size", self.max_message), ("--concurrency", self.concurrency)):
            if value is not None:
                arguments += [flag, str(value)]
        return arguments

    def command(self, status_fd: int, lifeline_fd: int | None) -> list[str]:
        """The worker's command line."""
        descriptors = ["--status-fd", str(status_fd)] + (["--lifeline-fd", str(lifeline_fd)] if lifeline_fd
                                                         is not None else [])
        return [self.python, "-u", "-m", "dcf_jupyter.worker", *self.arguments(), *descriptors]

    def start(self, output: IO[Any] | int, cwd: Path) -> StartedWorker[subprocess.Popen[bytes]]:
        """Start the process (its stdout and stderr to `output`); it reports readiness through a pipe."""
        status_r, status_w = os.pipe()
        life_r, life_w = os.pipe() if self.lifeline else (None, None)
        passed = tuple(fd for fd in (status_w, life_r) if fd is not None)
        # subprocess.Popen (vfork+exec), not an event loop's spawn: libuv forks, and gRPC's fork
        # handlers then crash the child now and then.
        try:
            process = subprocess.Popen(self.command(status_w, life_r), stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, pass_fds=passed, env=self.env, cwd=str(cwd))
        except OSError as exc:
            for fd in (status_r, status_w, life_r, life_w):
                if fd is not None:
                    os.close(fd)
            raise LaunchFailed(f"cannot start a worker process: {exc}") from None
        for fd in passed:
            os.close(fd)
        return StartedWorker(process, status_r, life_w)


class WorkerHandle(Protocol):
    """What the backends use of a worker process: a subprocess.Popen, or a replica a template forked."""

    pid: int

    def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


Handle = TypeVar("Handle", bound=WorkerHandle)


@dataclass
class StartedWorker(Generic[Handle]):
    """A worker process that was started; `read_status` waits for its readiness line."""

    process: Handle
    status_fd: int
    lifeline_fd: int | None  # our end: closing it (or dying) tells the worker to go

    def read_status(self, timeout: float) -> dict[str, Any]:
        """The worker's readiness line, {"ready": True, "pid", "grpc_port"} or {"ready": False, "error",
        "traceback"}; a worker that exits first, or is not ready within `timeout` s, reports the latter."""
        deadline = time.monotonic() + timeout
        buffer = b""
        try:
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return {"ready": False, "error": f"the Handler was not ready after {timeout:g}s"}
                # poll, not select: the gateway may hold more than 1024 descriptors (select's FD_SETSIZE)
                if _readable(self.status_fd, min(remaining, 0.5)):
                    chunk = os.read(self.status_fd, 4096)
                    if not chunk:
                        code = self.process.wait()
                        return {"ready": False, "error": f"the worker exited with code {code} before it was ready"}
                    buffer += chunk
        finally:
            os.close(self.status_fd)
        line = buffer.split(b"\n", 1)[0]
        try:
            status = json.loads(line)
        except ValueError:
            return {"ready": False, "error": f"the worker sent a bad status line: {line[:200]!r}"}
        return status if isinstance(status, dict) else {"ready": False, "error": "the worker sent a bad status line"}


def _readable(fd: int, timeout: float) -> bool:
    """Whether `fd` has something to read (or reached EOF) within `timeout` seconds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def end_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM `process`, then SIGKILL it if it has not ended within `grace` seconds; wait for it (blocking)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- a worker container -------------------------------------------------------------------------


@dataclass
class WorkerContainer:
    """How to run a container of a function's image whose worker serves gRPC on loopback `port`."""

    image: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    gpus: int = 0  # any this many devices (`dcf function run` of an image)
    gpu_ids: tuple[str, ...] = ()  # these devices (a gateway's replica: what its allocator granted)
    memory_bytes: int | None = None
    cpus: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more docker `containers.run` options (name, labels...)

    def create_options(self) -> dict[str, Any]:
        """Docker's `containers.create` options for it (the GPU request names devices when it has ids)."""
        from docker.types import DeviceRequest

        from ..build.image import WORKER_PORT

        options: dict[str, Any] = {"ports": {f"{WORKER_PORT}/tcp": ("127.0.0.1", self.port)},
                                   "environment": {**self.env, "PYTHONUNBUFFERED": "1"}, **self.extra}
        if self.memory_bytes:
            options["mem_limit"] = self.memory_bytes
        if self.cpus:
            options["nano_cpus"] = int(self.cpus * 1e9)
        if self.gpu_ids:
            options["device_requests"] = [DeviceRequest(device_ids=list(self.gpu_ids), capabilities=[["gpu"]])]
        elif self.gpus:
            options["device_requests"] = [DeviceRequest(count=self.gpus, capabilities=[["gpu"]])]
        return options

    def start(self, docker: Any) -> Any:
        """The started container; LaunchFailed with one sentence when Docker refuses (a container that was
        created but cannot start, for want of a GPU runtime say, is removed)."""
        from docker.errors import APIError, ImageNotFound

        hint = " (is the NVIDIA Container Toolkit installed?)" if self.gpus or self.gpu_ids else ""
        try:
            container = docker.containers.create(self.image, **self.create_options())
        except ImageNotFound:
            raise LaunchFailed(f"no image {self.image!r} here; build it with `dcf function build`") from None
        except APIError as exc:
            raise LaunchFailed(f"cannot start a container of {self.image}: {exc.explanation or exc}{hint}") from None
        try:
            container.start()
        except APIError as exc:
            with contextlib.suppress(APIError):
                container.remove(force=True)
            raise LaunchFailed(f"cannot start a container of {self.image}: {exc.explanation or exc}{hint}") from None
        return container


def wait_until_serving(container: Any, healthy: Callable[[], bool], timeout: float, poll_s: float = 0.2) -> None:
    """Return once `healthy()` (the worker answers HealthCheck); LaunchFailed with the container's last log
    lines if it exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while not healthy():
        container.reload()
        # With restart policy on-failure a worker that cannot start is restarted at once: its first restart
        # says so as surely as an exit (waiting on would loop until the timeout, ten minutes).
        restarts = int(container.attrs.get("RestartCount") or 0)  # top-level in Docker's inspect, beside State
        exited = container.status in ("exited", "dead", "restarting") or restarts > 0
        if exited or time.monotonic() > deadline:
            tail = container.logs(tail=15).decode("utf-8", "replace")
            raise LaunchFailed("it exited" if exited else f"it did not answer within {timeout:g}s", tail)
        time.sleep(poll_s)
