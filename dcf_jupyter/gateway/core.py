"""The gateway's state, which its invoker and deployer are given: backends, registry, running deployments,
where function sources and logs live, and which deployment serves a name."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from ..backends.base import Backend, DeployFailed, Deployment, MeshAccess
from ..backends.gpus.allocator import GpuAllocator
from ..host.logfile import note
from ..settings import DEFAULT_STREAM_WINDOW
from .auth import TokenPolicy
from .autoscaler import Autoscaler, ColdStarts
from .metrics import GatewayMetrics
from .registry import FunctionRecord, Registry
from .rpc import Abort, valid_name
from .secret_store import SecretStore


class GatewayCore:
    """The state one gateway process keeps."""

    def __init__(
        self,
        state_dir: Path,
        backends: dict[str, Backend],
        *,
        default_backend: str = "local",
        max_message: int,
        address: str = "",
        ready_timeout: float = 30.0,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        on_demand: dict[str, Callable[[], Backend]] | None = None,
        missing: dict[str, str] | None = None,
        gpus: GpuAllocator | None = None,
        metrics: bool = True,
    ) -> None:
        self.state_dir = state_dir
        self.backends = backends
        # Backends joined on first use (a cluster engine that takes seconds to reach): name -> a blocking connect.
        self.on_demand = dict(on_demand or {})
        self.missing = dict(missing or {})  # backends it could not offer: name -> why, in words
        self.default_backend = default_backend
        self.max_message = max_message
        self.address = address
        self.ready_timeout = ready_timeout
        self.stream_window = stream_window
        self.gpus = gpus  # the GPUs the local and docker backends hand out
        self.registry = Registry(state_dir)
        self.secrets = SecretStore(state_dir)
        self.deployments: dict[str, Deployment] = {}
        self._autoscalers: dict[int, Autoscaler] = {}  # by id() of the deployment it scales
        self._waking: dict[int, asyncio.Future[None]] = {}  # by id() of a deployment scaled to 0 by hand
        self.start_errors: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.started = time.time()
        self.http_address = ""  # its HTTP face, once serving
        self.mesh: MeshAccess | None = None  # how its replicas call other functions, once serving
        self.cluster_mesh: MeshAccess | None = None  # the same for replicas on a cluster: TCP, function credentials
        self.policy: TokenPolicy | None = None  # who may call what, once serving
        self.metrics = GatewayMetrics(enabled=metrics)
        self.metrics.watch(self)

    # --- paths --------------------------------------------------------------

    def function_dir(self, name: str) -> Path:
        """Where a function's unpacked revisions live (name already validated)."""
        return self.state_dir / "functions" / name

    def log_path(self, name: str) -> Path:
        """The function's log file (all replicas and revisions)."""
        return self.state_dir / "logs" / f"{name}.log"

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that orders deploys, deletes and scaling of one function (or of a backend's joining)."""
        return self._locks.setdefault(name, asyncio.Lock())

    def offers(self, backend: str) -> bool:
        """True when deploys may name `backend` (running now, or joined on first use)."""
        return backend in self.backends or backend in self.on_demand

    async def backend(self, name: str) -> Backend:
        """The backend `name`, joining it first if it is started on demand; DcfError (one sentence) if that
        fails, KeyError if this gateway has no such backend."""
        if name not in self.backends:
            connect = self.on_demand[name]
            async with self.lock(f"backend {name}"):
                if name not in self.backends:
                    self.backends[name] = await asyncio.to_thread(connect)
        return self.backends[name]

    def not_deployed(self, name: str, listing: str = "") -> Abort:
        """NOT_FOUND for a name this gateway has not deployed, saying so when another gateway runs it on a
        shared cluster (it is listed here, but managed there)."""
        for backend in self.backends.values():
            if backend.runs_others(name):
                return Abort(grpc.StatusCode.NOT_FOUND,
                             f"function {name!r} was deployed by another gateway on the {backend.name} backend's "
                             "cluster: this gateway lists it but leaves it alone; call and manage it through that "
                             "gateway")
        return Abort(grpc.StatusCode.NOT_FOUND, f"function {name!r} is not deployed{listing}")

    # --- serving ---------------------------------------------------------------

    def serve(self, record: FunctionRecord, deployment: Deployment) -> Deployment | None:
        """Route `record.name`'s calls to `deployment` (started), with an autoscaler of the gateway's own when
        its config.yaml asks for `autoscaling:` and its backend does not scale by itself; the deployment it
        replaces, if any (to stop with `stop`)."""
        previous = self.deployments.get(record.name)
        self.deployments[record.name] = deployment
        policy = deployment.spec.function.autoscaling
        backend = self.backends.get(record.backend)
        if policy is None:
            deployment.wakes_on_call = True  # scaled to 0 by hand, it is idle until called (`wake`)
        if policy is not None and backend is not None and not backend.autoscales:
            scaler = Autoscaler(
                deployment, policy,
                cold_starts=ColdStarts(record.cold_starts, record.last_cold_start_s, record.last_cold_start_at),
                on_change=lambda: self._scaled(record.name, deployment),
                note=lambda line: note(self.log_path(record.name), line))
            self._autoscalers[id(deployment)] = scaler
            scaler.start()
        return previous

    def autoscaler(self, deployment: Deployment) -> Autoscaler | None:
        """The gateway's autoscaler of `deployment`, if it has one."""
        return self._autoscalers.get(id(deployment))

    def wake(self, record: FunctionRecord, deployment: Deployment) -> asyncio.Future[None]:
        """Done once a replica runs or is starting: at 0 replicas of a function scaled there by hand, a call
        starts one (one for all the calls that wait meanwhile), as a cold start of an autoscaled function does;
        the function then stays at 1 replica, as after a scale to 1. DeployFailed in it when that replica cannot
        start."""
        waking = self._waking.get(id(deployment))
        if waking is None or waking.done():
            waking = self._waking[id(deployment)] = asyncio.ensure_future(self._wake(record, deployment))
        return waking

    async def _wake(self, record: FunctionRecord, deployment: Deployment) -> None:
        started = time.monotonic()
        async with self.lock(record.name):  # after a scale or deploy under way
            if deployment.replicas > 0 or self.deployments.get(record.name) is not deployment:
                return
            try:
                await deployment.scale(1)
            except DeployFailed as failure:
                deployment.last_error = failure.message
                note(self.log_path(record.name), f"a call arrived at 0 replicas, and starting one failed: "
                                                 f"{failure.message}")
                raise
            took = time.monotonic() - started
            record.replicas = 1
            record.cold_starts, record.last_cold_start_s, record.last_cold_start_at = \
                record.cold_starts + 1, took, time.time()
            self.registry.put(record)
        note(self.log_path(record.name), f"a call arrived at 0 replicas (scaled there by hand): started 1 in "
                                         f"{took:.2f}s; it stays at 1 (with `autoscaling: {{min_replicas: 0}}` a "
                                         "function goes back to 0 replicas by itself when idle)")

    def _scaled(self, name: str, deployment: Deployment) -> None:
        """Remember an autoscaler's replica count and cold starts, for List and for a restart."""
        record = self.registry.records.get(name)
        scaler = self.autoscaler(deployment)
        if record is None or scaler is None or self.deployments.get(name) is not deployment:
            return
        record.replicas = deployment.replicas
        cold = scaler.cold_starts
        record.cold_starts, record.last_cold_start_s, record.last_cold_start_at = cold.count, cold.last_seconds, \
            cold.last_at
        self.registry.save()

    async def stop(self, deployment: Deployment, *, release: bool = False) -> None:
        """Stop `deployment`'s autoscaler, then its replicas (`release`: the gateway is stopping, so a cluster
        engine's replicas keep serving)."""
        self._waking.pop(id(deployment), None)
        scaler = self._autoscalers.pop(id(deployment), None)
        if scaler is not None:
            await scaler.close()
        await (deployment.release() if release else deployment.stop())

    def route(self, name: str) -> tuple[FunctionRecord, Deployment]:
        """The record and serving deployment of `name`; an Abort saying why when there is none."""
        if not name:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "no function named: set InvokeServiceRequest.Service")
        record = self.registry.records.get(name)
        if record is None:
            valid_name(name)
            deployed = ", ".join(sorted(self.registry.records)) or "none"
            raise self.not_deployed(name, f" (deployed: {deployed})")
        deployment = self.deployments.get(name)
        if deployment is None:
            error = self.start_errors.get(name)
            if error:
                raise Abort(grpc.StatusCode.UNAVAILABLE, f"function {name!r} failed to start: {error}")
            raise Abort(grpc.StatusCode.UNAVAILABLE, f"function {name!r} is still starting; try again shortly")
        return record, deployment

