"""The embedded default backend: each replica is a worker subprocess on this machine.

Replicas talk to the gateway over the framed link on a Unix socket. A replica
that dies is restarted with exponential back-off; calls in flight on it fail
with UNAVAILABLE and later calls go to the restarted (or another) replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ...definition.requirements import InstallFailed, install_missing
from ...errors import ConfigError
from ...host.logfile import log_for, note, tail_text
from ...settings import ENV_EXTRA_SITE, ENV_TOKEN
from ..base import Backend, DeployFailed, Deployment, DeploymentSpec, WorkerLink
from ..gpus.allocator import GpuAllocator, Grant, gpu_environment
from ..launcher import LaunchFailed, StartedWorker, WorkerHandle, WorkerProcess
from ..registry import Surroundings
from ..replica_files import needs_files, remove_replica_files, replica_environment, write_replica_files
from .link import AsyncLink
from .templates import Template, TemplateKey, Templates, preloads_for, templates_enabled

STOP_GRACE_S = 3.0
BACKOFF_FIRST_S, BACKOFF_MAX_S, HEALTHY_RESET_S = 0.1, 10.0, 30.0


def _exit_future(process: WorkerHandle) -> asyncio.Future[int]:
    """A future of the process's exit code, fed by a thread of its own (not the loop's bounded executor)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def settle(code: int) -> None:
        if not future.done():
            future.set_result(code)

    def wait() -> None:
        code = process.wait()
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(settle, code)

    threading.Thread(target=wait, name=f"dcf-wait-{process.pid}", daemon=True).start()
    return future


class LocalBackend(Backend):
    """Runs replicas as `python -m dcf_jupyter.worker` subprocesses."""

    name = "local"

    def __init__(
        self,
        socket_dir: Path,
        *,
        max_message: int,
        start_timeout: float = 600.0,
        python: str = sys.executable,
        gpus: GpuAllocator | None = None,
    ) -> None:
        # Unix socket paths are limited to ~100 bytes, so sockets live in a short
        # private temp folder rather than in the (possibly deep) state dir.
        self.socket_dir = socket_dir
        self.max_message = max_message
        self.start_timeout = start_timeout
        self.python = python
        self.gpus = gpus
        self.templates = Templates(socket_dir)

    def create(self, spec: DeploymentSpec) -> LocalDeployment:
        return LocalDeployment(self, spec)

    async def close(self) -> None:
        await self.templates.close()

    async def prepare_requirements(self, spec: DeploymentSpec) -> Path | None:
        """A folder with the function's requirements that this environment lacks (from the per-user cache,
        pip-installing them there first if needed), or None when it has them all."""
        def install() -> Path | None:
            with log_for(spec.log_path).pipe() as fd, open(fd, "ab", closefd=False) as log:
                return install_missing(spec.source_dir, spec.function.runtime, python=self.python, output=log,
                                       note=lambda message: note(spec.log_path, message))

        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return await asyncio.to_thread(install)
        except InstallFailed as exc:
            raise DeployFailed(str(exc), exc.detail) from None
        except ConfigError as exc:
            raise DeployFailed(str(exc).replace(str(spec.source_dir) + "/", "")) from None


class LocalDeployment(Deployment):
    """The replicas of one function revision."""

    def __init__(self, backend: LocalBackend, spec: DeploymentSpec) -> None:
        super().__init__(spec)
        self.backend = backend
        self._replicas: list[_Replica] = []
        self.extra_site: Path | None = None
        self.template: Template | None = None  # replicas fork from it (autoscaled functions)

    @property
    def replicas(self) -> int:
        return len(self._replicas)

    @property
    def ready_replicas(self) -> int:
        return len(self._ready)

    async def start(self) -> None:
        request = self.spec.function.limits.gpu
        if request and (self.backend.gpus is None or not self.backend.gpus.devices):
            note(self.spec.log_path, f"{self.spec.name} asks for {request} GPU, and this machine has none that "
                                     "the gateway can give: it runs on the CPU")
        self.extra_site = await self.backend.prepare_requirements(self.spec)
        if self.spec.function.autoscaling is not None and templates_enabled():
            # Its replicas start while calls wait: fork them from a process that has imported what they import.
            function = self.spec.function
            key = TemplateKey(self.backend.python, preloads_for(function.runtime, self.spec.source_dir),
                              str(self.extra_site or ""), tuple(sorted(function.environment.items())))
            self.template = await self.backend.templates.acquire(key, _base_environment(function.environment))
        try:
            await self.scale(self.spec.replicas)
        except BaseException:
            await self._release_template()
            raise

    async def _release_template(self) -> None:
        template, self.template = self.template, None
        if template is not None:
            await self.backend.templates.release(template)

    def _grant(self, index: int) -> Grant | None:
        """The GPUs of a new replica (None: it asks for none, or this machine has none and it runs on the CPU);
        DeployFailed with the allocator's sentence when they are taken."""
        allocator = self.backend.gpus
        if allocator is None or not allocator.devices:
            return None
        return self._book_gpus(allocator, index)

    async def _release(self, replicas: list[_Replica]) -> None:
        """Give their GPUs back (off the event loop: booking waits on a lock other gateways share)."""
        allocator = self.backend.gpus
        grants = [replica.grant for replica in replicas if replica.grant is not None]
        if allocator is not None and grants:
            await asyncio.to_thread(allocator.release_all, grants)

    allocates_gpus = True

    def gpu_grants(self) -> list[Grant]:
        return [r.grant for r in self._replicas if r.grant is not None]

    async def scale(self, replicas: int) -> None:
        gone = self._take_out(self._replicas, len(self._replicas) - replicas, lambda replica: replica.link)
        await asyncio.gather(*(replica.stop() for replica in gone))
        await self._release(gone)
        new: list[_Replica] = []
        try:
            for index in self._free_indices({r.index for r in self._replicas}, replicas - len(self._replicas)):
                new.append(_Replica(self, index, await asyncio.to_thread(self._grant, index)))
        except DeployFailed:
            await self._release(new)
            raise
        self._replicas.extend(new)
        for replica in new:
            replica.start()
        results = await asyncio.gather(*(r.first_start for r in new), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            for replica in new:
                self._replicas.remove(replica)
            await asyncio.gather(*(r.stop() for r in new))
            await self._release(new)
            failure = failures[0]
            if isinstance(failure, DeployFailed):
                raise failure
            raise DeployFailed(f"{type(failure).__name__}: {failure}")
        self.spec.replicas = replicas
        self._replicas_changed()

    async def stop(self) -> None:
        replicas, self._replicas = self._replicas, []
        await asyncio.gather(*(r.stop() for r in replicas))
        await self._release(replicas)
        self._replicas_changed()
        await self._release_template()

    def _ready_links(self) -> list[WorkerLink]:
        return [r.link for r in self._replicas if r.link is not None and r.link.is_open]

    def recycle(self, link: WorkerLink) -> str:
        # The replica's supervisor sees its link close, ends the process and starts a fresh one.
        if isinstance(link, AsyncLink):
            link.close()
        return "the stuck worker was restarted"


def _base_environment(function_environment: dict[str, str]) -> dict[str, str]:
    """A worker's environment before its replica's own variables: the gateway's, less its secrets, with the
    function's `environment:` over it."""
    env = dict(os.environ)
    # A function's code has no business with the gateway's token, nor with the token of its local Ray.
    env.pop(ENV_TOKEN, None)
    env.pop("RAY_AUTH_TOKEN", None)
    env.update(function_environment)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Replica:
    """One worker process, supervised: restarted when it dies until stopped."""

    def __init__(self, deployment: LocalDeployment, index: int, grant: Grant | None = None) -> None:
        self.deployment = deployment
        self.index = index
        self.grant = grant  # its GPUs, kept across restarts of its process
        self.link: AsyncLink | None = None
        self.process: WorkerHandle | None = None
        self._exit: asyncio.Future[int] | None = None
        self.first_start: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._lifeline: int | None = None
        self._stopping = False
        self.socket: Path | None = None  # where its worker serves the link
        self.files: Path | None = None  # its secrets and mesh credential, when it has any

    def start(self) -> None:
        name = f"dcf-replica-{self.deployment.spec.name}-{self.index}"
        self._task = asyncio.create_task(self._supervise(), name=name)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_FIRST_S
        while not self._stopping:
            started = loop.time()
            try:
                await self._launch()
            except DeployFailed as failure:
                self.deployment.last_error = failure.message
                if not self.first_start.done():
                    self.first_start.set_exception(failure)
                    return
                self.note(f"restart failed: {failure.message}")
            else:
                if not self.first_start.done():
                    self.first_start.set_result(None)
                self.deployment._replicas_changed()
                code = await self._wait_exit()
                self.deployment._replicas_changed()
                if self._stopping:
                    return
                self.deployment.last_error = f"replica {self.index} exited with code {code}"
                self.deployment.restarts += 1
                self.note(f"replica {self.index} exited with code {code}; restarting in {backoff:.1f}s")
                if loop.time() - started > HEALTHY_RESET_S:
                    backoff = BACKOFF_FIRST_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def note(self, message: str) -> None:
        note(self.deployment.spec.log_path, message)

    def _environment(self) -> dict[str, str]:
        spec = self.deployment.spec
        env = _base_environment(spec.function.environment)
        env["DCF_FUNCTION_NAME"] = spec.name
        env["DCF_REPLICA"] = str(self.index)
        if self.deployment.extra_site is not None:
            env[ENV_EXTRA_SITE] = str(self.deployment.extra_site)
        env.update(gpu_environment(self.grant))
        env.update(replica_environment(spec, self.files))
        return env

    async def _launch(self) -> None:
        spec = self.deployment.spec
        backend = self.deployment.backend
        self._remove_process_files()  # a restarted process's old one
        stem = f"{spec.name}.{spec.revision}.{self.index}.{secrets.token_hex(3)}"
        sock = backend.socket_dir / f"{stem}.sock"
        self.socket = sock
        if needs_files(spec):
            self.files = backend.socket_dir / f"{stem}.files"
            write_replica_files(self.files, spec)
        worker = WorkerProcess(spec.source_dir, spec.name, python=backend.python, socket=str(sock),
                               max_message=backend.max_message, concurrency=spec.function.concurrency,
                               env=self._environment(), lifeline=True)
        started: StartedWorker[Any] | None = None
        template = self.deployment.template
        try:
            # Its output goes to the function's log through a pipe of its own (logfile.py: kept under a size).
            with log_for(spec.log_path).pipe() as output:
                if template is not None:
                    try:
                        started = await asyncio.to_thread(template.fork, worker, output, spec.source_dir)
                    except LaunchFailed as failure:
                        self.note(f"replica {self.index}: {failure.message}; starting a fresh process instead")
                if started is None:
                    started = worker.start(output, cwd=spec.source_dir)
        except LaunchFailed as failure:
            raise DeployFailed(failure.message) from None
        self.process = started.process
        if self.grant is not None and self.deployment.backend.gpus is not None:
            self.grant = await asyncio.to_thread(self.deployment.backend.gpus.started, self.grant, self.process.pid)
        self._exit = _exit_future(self.process)
        self._close_lifeline()
        self._lifeline = started.lifeline_fd
        status = await asyncio.to_thread(started.read_status, backend.start_timeout)
        if not status.get("ready"):
            await self._kill()
            detail = str(status.get("traceback") or "") or tail_text(spec.log_path, 15).rstrip()
            raise DeployFailed(str(status.get("error") or "the worker did not start"), detail)
        try:
            self.link = await AsyncLink.connect(str(sock), backend.max_message + 1024)
        except OSError as exc:
            await self._kill()
            raise DeployFailed(f"cannot connect to the worker: {exc}") from None

    async def _wait_exit(self) -> int:
        """Wait until the process exits or its link drops (then end the process); its exit code."""
        assert self._exit is not None and self.link is not None
        either: set[asyncio.Future[Any]] = {self._exit, self.link.closed}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not self._exit.done():
            await self._kill()
        self.link.close()
        return await asyncio.shield(self._exit)

    async def _kill(self) -> None:
        process, exited = self.process, self._exit
        if process is None or exited is None or exited.done():
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), STOP_GRACE_S)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(exited)

    def _remove_process_files(self) -> None:
        """Remove what a process of this replica was given: its socket and its files."""
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.unlink()
            self.socket = None
        remove_replica_files(self.files)
        self.files = None

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            with contextlib.suppress(OSError):
                os.close(self._lifeline)
            self._lifeline = None

    async def stop(self) -> None:
        """Stop supervising and end the process: SIGTERM (the worker finishes the calls in its handler and
        their replies still come back over the link), then SIGKILL after a grace period."""
        self._stopping = True
        await self._kill()
        if self.link is not None:
            self.link.close()
        self._close_lifeline()
        self._remove_process_files()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.first_start.done():
            self.first_start.set_exception(DeployFailed("stopped before it was ready"))
            self.first_start.exception()  # retrieved: nobody else may wait on it


def make(around: Surroundings) -> LocalBackend:
    """A gateway's local backend (registry.py names this)."""
    return LocalBackend(around.socket_dir, max_message=around.max_message, gpus=around.gpus)
