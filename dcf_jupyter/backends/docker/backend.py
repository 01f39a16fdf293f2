"""The docker backend: each replica is a container of the function's image, reached over gRPC.

Limits map to Docker's memory and CPU limits, and `gpu:` to a device request naming the
devices the gateway's allocator granted the replica (NVIDIA). Docker restarts a crashed
container (restart policy on-failure) at the same loopback port, and the gRPC link
reconnects by itself. The docker SDK is blocking, so its calls run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from pathlib import Path, PurePosixPath
from typing import Any

from ...build.image import docker_client
from ...errors import DcfError
from ...host.logfile import size_limits
from ...host.ports import free_port
from ...protocol.names import ENV_MESH_ADDRESS
from ..base import Backend, DeployFailed, Deployment, DeploymentSpec, WorkerLink
from ..gpus.allocator import GpuAllocator, Grant, gpu_environment
from ..launcher import LaunchFailed, WorkerContainer, wait_until_serving
from ..registry import Surroundings
from ..replica_files import needs_files, remove_replica_files, replica_environment, write_replica_files
from .grpc_link import GrpcLink

READY_POLL_S = 0.2
LABEL_FUNCTION, LABEL_GATEWAY, LABEL_REVISION = "dcf.function", "dcf.gateway", "dcf.revision"
CONTAINER_FILES = PurePosixPath("/run/dcf")  # a replica's secrets and mesh credential (read-only)
CONTAINER_MESH_SOCKET = PurePosixPath("/run/dcf-gateway.sock")  # the gateway's replica socket


def _log_config() -> dict[str, Any]:
    """Docker keeps a container's output under the size the gateway's own logs keep (its json-file driver
    rotates, and `docker logs --tail` reads across its files)."""
    max_bytes, backups = size_limits()
    return {"type": "json-file", "config": {"max-size": f"{max(1, max_bytes // 1024)}k", "max-file": str(backups + 1)}}


class DockerBackend(Backend):
    """Runs replicas as containers on the Docker Engine the gateway can reach."""

    name = "docker"

    def __init__(self, client: Any, *, gateway_id: str, max_message: int, start_timeout: float = 600.0,
                 gpus: GpuAllocator | None = None, files_dir: Path | None = None) -> None:
        self.client = client
        self.gpus = gpus
        self.files_dir = files_dir  # where replicas' secret files are written, to be mounted (the socket folder)
        self.gateway_id = gateway_id
        self.max_message = max_message
        self.start_timeout = start_timeout

    @classmethod
    def connect(cls, state_dir: Any, *, max_message: int, gpus: GpuAllocator | None = None,
                files_dir: Path | None = None) -> DockerBackend:
        """A backend on the daemon from the environment (DockerUnavailable if none answers); removes
        containers an earlier run of this gateway left behind (they are started anew on restore)."""
        gateway_id = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
        backend = cls(docker_client(timeout=30), gateway_id=gateway_id, max_message=max_message, gpus=gpus,
                      files_dir=files_dir)
        for container in backend.client.containers.list(all=True, filters={"label": f"{LABEL_GATEWAY}={gateway_id}"}):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        return backend

    def create(self, spec: DeploymentSpec) -> DockerDeployment:
        return DockerDeployment(self, spec)


class _Container:
    """One replica: its container and the gRPC link to its worker."""

    def __init__(self, index: int, container: Any, port: int, link: GrpcLink, grant: Grant | None,
                 files: Path | None) -> None:
        self.index = index
        self.container = container
        self.grant = grant
        self.port = port
        self.link = link
        self.files = files  # its secrets and mesh credential, mounted read-only
        self.ready = False
        self.restarting = False


class DockerDeployment(Deployment):
    """The containers of one function revision."""

    def __init__(self, backend: DockerBackend, spec: DeploymentSpec) -> None:
        super().__init__(spec)
        self.backend = backend
        self._containers: list[_Container] = []
        self._watcher: asyncio.Task[None] | None = None
        self._restarts: set[asyncio.Task[None]] = set()

    @property
    def replicas(self) -> int:
        return len(self._containers)

    @property
    def ready_replicas(self) -> int:
        return sum(1 for c in self._containers if c.ready)

    def _ready_links(self) -> list[WorkerLink]:
        return [c.link for c in self._containers if c.ready]

    async def start(self) -> None:
        await asyncio.to_thread(self._ensure_image)
        await self.scale(self.spec.replicas)
        self._watcher = asyncio.create_task(self._watch())

    def _ensure_image(self) -> None:
        from docker.errors import ImageNotFound

        image = self.spec.image
        if not image:
            raise DeployFailed(f"{self.spec.name} has no image to run; build one with `dcf function build`")
        try:
            self.backend.client.images.get(image)
        except ImageNotFound:
            if "/" not in image.split(":")[0]:
                raise DeployFailed(f"image {image!r} is not on this gateway's Docker daemon; build it with "
                                   "`dcf function build` (or set docker_registry and deploy to push it)") from None
            try:
                self.backend.client.images.pull(image)
            except Exception as exc:  # noqa: BLE001 - any pull failure ends the deploy with its reason
                raise DeployFailed(f"image {image!r} is not here and pulling it failed: {exc}") from None

    def _grant(self, index: int) -> Grant | None:
        """The GPUs of a new replica; DeployFailed with a sentence when none can be had (a container cannot run
        a GPU function on the CPU as a process can: its image and device request need one)."""
        request = self.spec.function.limits.gpu
        if not request:
            return None
        if self.backend.gpus is None:
            raise DeployFailed(f"{self.spec.name} asks for {request} GPU, and this gateway hands out none")
        return self._book_gpus(self.backend.gpus, index)

    allocates_gpus = True

    def gpu_grants(self) -> list[Grant]:
        return [c.grant for c in self._containers if c.grant is not None]

    def _run_container(self, index: int, grant: Grant | None, files: Path | None) -> tuple[Any, int]:
        spec = self.spec
        port = free_port()
        env = {**spec.function.environment, "DCF_REPLICA": str(index), **gpu_environment(grant, in_container=True)}
        mounts: dict[str, dict[str, str]] = {}
        if files is not None:
            write_replica_files(files, spec)
            mounts[str(files)] = {"bind": str(CONTAINER_FILES), "mode": "ro"}
            env.update(replica_environment(spec, CONTAINER_FILES))  # secrets' variables only if the function asks
            if spec.mesh is not None and spec.mesh.address.startswith("unix:"):
                # The gateway's replica socket, so its functions are one hop away (containers run as root: the
                # socket in the gateway's 0700 folder is theirs to connect to, no other user's).
                mounts[spec.mesh.address.removeprefix("unix:")] = {"bind": str(CONTAINER_MESH_SOCKET), "mode": "rw"}
                env[ENV_MESH_ADDRESS] = f"unix:{CONTAINER_MESH_SOCKET}"
        launch = WorkerContainer(
            spec.image, port,
            env=env,
            gpu_ids=tuple(str(i) for i in grant.devices) if grant else (),
            memory_bytes=spec.function.limits.memory_bytes,
            cpus=spec.function.limits.cpus,
            extra={"name": f"dcf-{spec.name}-r{spec.revision}-{index}-{self.backend.gateway_id[:6]}",
                   "labels": {LABEL_FUNCTION: spec.name, LABEL_GATEWAY: self.backend.gateway_id,
                              LABEL_REVISION: str(spec.revision)},
                   "restart_policy": {"Name": "on-failure"}, "volumes": mounts, "log_config": _log_config()},
        )
        try:
            container = launch.start(self.backend.client)
            with contextlib.suppress(Exception):  # its host pid, for the memory it uses on its GPUs
                container.reload()
            return container, port
        except LaunchFailed as failure:
            raise DeployFailed(failure.message) from None

    async def _start_one(self, index: int) -> _Container:
        grant = await asyncio.to_thread(self._grant, index)  # booking waits on a lock other gateways share
        files = None
        if needs_files(self.spec) and self.backend.files_dir is not None:
            stem = f"{self.spec.name}.{self.spec.revision}.{index}.{secrets.token_hex(3)}"
            files = self.backend.files_dir / f"{stem}.files"
        try:
            container, port = await asyncio.to_thread(self._run_container, index, grant, files)
        except BaseException:
            await self._release(grant)
            remove_replica_files(files)
            raise
        if grant is not None and self.backend.gpus is not None:
            grant = await asyncio.to_thread(self.backend.gpus.started, grant,
                                            int(container.attrs.get("State", {}).get("Pid") or 0))
        replica = _Container(index, container, port, GrpcLink(f"127.0.0.1:{port}", self.backend.max_message), grant,
                             files)
        loop = asyncio.get_running_loop()

        def healthy() -> bool:  # asked from the waiting thread, answered on the loop that owns the link
            return asyncio.run_coroutine_threadsafe(replica.link.healthy(timeout=1.0), loop).result()

        try:
            await asyncio.to_thread(wait_until_serving, container, healthy, self.backend.start_timeout, READY_POLL_S)
        except LaunchFailed as failure:
            await self._remove(replica)
            raise DeployFailed(f"replica {index} of {self.spec.name} did not become ready: {failure.message}",
                               failure.detail) from None
        replica.ready = True
        return replica

    async def scale(self, replicas: int) -> None:
        gone = self._take_out(self._containers, len(self._containers) - replicas, lambda replica: replica.link)
        await asyncio.gather(*(self._remove(replica) for replica in gone))
        indices = self._free_indices({c.index for c in self._containers}, replicas - len(self._containers))
        started = await asyncio.gather(*(self._start_one(i) for i in indices), return_exceptions=True)
        failures = [r for r in started if isinstance(r, BaseException)]
        for outcome in started:
            if isinstance(outcome, _Container):
                if failures:
                    await self._remove(outcome)
                else:
                    self._containers.append(outcome)
        if failures:
            failure = failures[0]
            raise failure if isinstance(failure, DeployFailed) else DeployFailed(f"{type(failure).__name__}: {failure}")
        self.spec.replicas = replicas
        self._replicas_changed()

    async def _watch(self) -> None:
        """Mark replicas (not) ready as their workers stop answering and come back."""
        while True:
            await asyncio.sleep(1.0)
            for replica in list(self._containers):
                if replica.restarting:
                    continue
                healthy = await replica.link.healthy(timeout=1.0)
                if healthy != replica.ready:
                    replica.ready = healthy
                    if not healthy:
                        self.last_error = f"replica {replica.index} stopped answering"
                    self._replicas_changed()

    def recycle(self, link: WorkerLink) -> str:
        for replica in self._containers:
            if replica.link is link and not replica.restarting:
                replica.ready, replica.restarting = False, True
                self.last_error = f"replica {replica.index} was stuck in a call; restarting its container"
                self.restarts += 1
                self._replicas_changed()
                task = asyncio.create_task(self._restart(replica))
                self._restarts.add(task)
                task.add_done_callback(self._restarts.discard)
        return "the stuck worker's container is being restarted"

    async def _restart(self, replica: _Container) -> None:
        # The watcher marks it ready again once its worker answers health checks.
        try:
            await asyncio.to_thread(replica.container.restart, timeout=1)
        except Exception as exc:  # noqa: BLE001 - a failed restart leaves the replica not ready, with the reason
            self.last_error = f"restarting a stuck replica failed: {exc}"
        finally:
            replica.restarting = False

    async def _remove(self, replica: _Container) -> None:
        await replica.link.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(replica.container.remove, force=True)
        await self._release(replica.grant)
        remove_replica_files(replica.files)

    async def _release(self, grant: Grant | None) -> None:
        if self.backend.gpus is not None and grant is not None:
            await asyncio.to_thread(self.backend.gpus.release, grant)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        for task in list(self._restarts):
            task.cancel()
        containers, self._containers = self._containers, []
        await asyncio.gather(*(self._remove(c) for c in containers))
        self._replicas_changed()

    async def logs(self, lines: int) -> str | None:
        def read() -> str:
            parts = []
            for replica in self._containers:
                text = replica.container.logs(tail=lines).decode("utf-8", "replace")
                parts.append(text if len(self._containers) == 1 else f"--- replica {replica.index} ---\n{text}")
            return "".join(parts)

        try:
            return await asyncio.to_thread(read)
        except Exception as exc:  # noqa: BLE001 - Docker SDK and HTTP errors alike: one sentence
            raise DcfError(f"cannot read the containers' logs: {exc}") from None


def make(around: Surroundings) -> DockerBackend:
    """A gateway's docker backend, on the daemon of the environment (DockerUnavailable when none answers)."""
    return DockerBackend.connect(around.state_dir, files_dir=around.socket_dir, max_message=around.max_message,
                                 gpus=around.gpus)
