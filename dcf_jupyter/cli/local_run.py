"""Running a function on this machine without a gateway (`dcf function run`): one worker, called over gRPC."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import IO, Any

from ..backends.launcher import LaunchFailed, WorkerContainer, WorkerProcess, end_process, wait_until_serving
from ..client import Client, Reply
from ..definition.requirements import InstallFailed, install_missing
from ..definition.spec import FunctionSpec
from ..errors import DeployError
from ..host.ports import free_port
from ..settings import ENV_EXTRA_SITE


class LocalRun:
    """A worker process for `spec` serving the DCF protocol on a free loopback port; use as a context manager."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        output: IO[Any] | None = None,
        start_timeout: float = 600.0,
        env: dict[str, str] | None = None,
    ) -> None:
        if spec.root is None:
            raise DeployError(f"{spec.name}: no function folder to run")
        self.spec = spec
        self.output = output if output is not None else sys.stderr
        self.start_timeout = start_timeout
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None

    def __enter__(self) -> LocalRun:
        assert self.spec.root is not None
        env = {**os.environ, **self.spec.environment, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        # The same per-user cache a gateway's local backend uses: what one installed, the other reuses.
        try:
            extra_site = install_missing(self.spec.root, self.spec.runtime, python=sys.executable,
                                         output=self.output, note=lambda message: print(message, file=self.output))
        except InstallFailed as exc:
            raise DeployError(f"{self.spec.name} did not start: {exc}", function=self.spec.name) from None
        if extra_site is not None:
            env[ENV_EXTRA_SITE] = str(extra_site)
        # The handler's prints and the worker's log go to `output` (stderr by default),
        # so stdout carries only what the caller prints.
        worker = WorkerProcess(self.spec.root, self.spec.name, grpc="127.0.0.1:0", env=env)
        try:
            started = worker.start(self.output, cwd=self.spec.root)
        except LaunchFailed as failure:
            raise DeployError(f"{self.spec.name} did not start: {failure.message}", function=self.spec.name) from None
        self.process = started.process
        status = started.read_status(self.start_timeout)
        if not status.get("ready"):
            self.close()
            # The worker printed its traceback to `output` already: the error repeats only the sentence.
            raise DeployError(f"{self.spec.name} did not start: {status.get('error', 'unknown error')}",
                              function=self.spec.name)
        self.client = Client(f"127.0.0.1:{status['grpc_port']}", token="")  # a worker of ours: it takes no token
        return self

    def call(self, data: Any, *, timeout: float | None = None) -> Reply:
        """Call the handler once."""
        assert self.client is not None, "use LocalRun as a context manager"
        return self.client.call_reply(self.spec.name, data, timeout=timeout)

    def close(self) -> None:
        """Stop the worker."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None:
            end_process(self.process)

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageRun:
    """A container of the function's built image on this machine's Docker, called over gRPC (DCF's
    `dcf-cli function run`); use as a context manager."""

    def __init__(self, spec: FunctionSpec, *, start_timeout: float = 600.0, client: Any = None) -> None:
        from ..build.image import docker_client

        self.spec = spec
        self.start_timeout = start_timeout
        self.docker = client or docker_client()
        self.container: Any = None
        self.client: Client | None = None

    def gpu_report(self) -> str:
        """nvidia-smi's GPU list as the container sees it, or a sentence saying it sees none."""
        assert self.container is not None
        try:
            code, output = self.container.exec_run(["nvidia-smi", "-L"])
        except Exception as exc:  # noqa: BLE001 - no nvidia-smi in the image, for one
            return f"No GPU visible in the container ({exc})."
        text = output.decode("utf-8", "replace").strip()
        return text if code == 0 and text else "No GPU visible in the container."

    def __enter__(self) -> ImageRun:
        port = free_port()
        launch = WorkerContainer(self.spec.image_ref, port, env=dict(self.spec.environment),
                                 gpus=self.spec.limits.gpu.devices)
        try:
            self.container = launch.start(self.docker)
            # Docker publishes the port through its own proxy (root's, not ours): the container is ours to trust,
            # and it takes no token.
            client = self.client = Client(f"127.0.0.1:{port}", token="", trust=True)
            wait_until_serving(self.container, lambda: client.health(timeout=1.0), self.start_timeout)
        except LaunchFailed as failure:
            self.close()
            raise DeployError(f"{self.spec.name} did not start in its container: {failure.message}",
                              detail=failure.detail, function=self.spec.name) from None
        return self

    def call(self, data: Any, *, timeout: float | None = None) -> Reply:
        """Call the handler once."""
        assert self.client is not None, "use ImageRun as a context manager"
        return self.client.call_reply(self.spec.name, data, timeout=timeout)

    def logs(self) -> str:
        """The container's output so far."""
        return self.container.logs().decode("utf-8", "replace") if self.container is not None else ""

    def close(self) -> None:
        """Remove the container."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.container is not None:
            with contextlib.suppress(Exception):  # already gone, or Docker went away: nothing to undo
                self.container.remove(force=True)
            self.container = None

    def __exit__(self, *exc: object) -> None:
        self.close()
