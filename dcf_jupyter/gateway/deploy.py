"""Deploys: Deploy and Update unpack a function's source as a new revision and start it on its backend
(the old revision serves until the new one does, then retires in the background); Delete, ReplicaUpdate;
and restoring the registry's functions after a gateway restart."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from pathlib import Path

import grpc

from ..backends.base import DeployFailed, Deployment, DeploymentSpec, MeshAccess
from ..definition.requirements import NODEPS_REQUIREMENTS, REQUIREMENTS, read_requirements
from ..definition.secret_refs import env_secret_keys
from ..definition.source import unpack_source
from ..definition.spec import MAX_REPLICAS, FunctionSpec, GpuRequest, load_config
from ..errors import ConfigError, DcfError, InvalidArgument, brief
from ..host.logfile import note
from ..host.logfile import remove as remove_log
from ..protocol import gateway_pb2 as pb
from .auth import function_credential
from .core import GatewayCore
from .registry import FunctionRecord
from .rpc import Abort, unary_rpc, valid_name, valid_secret_name
from .secret_store import SecretMissing

log = logging.getLogger("dcf.gateway")
# A function's unpacked source may be this many times the largest message: a packed folder of model weights
# barely shrinks, while a source that grows more than this is a compression bomb.
SOURCE_SIZE_FACTOR = 4


class Deployer:
    """The deploy side of the gateway, over its state: Deploy, Update, Delete, ReplicaUpdate, restores."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self._retiring: dict[str, asyncio.Task[None]] = {}  # name -> its replaced revision being stopped
        self.newest_secrets: dict[str, list[str]] = {}  # name -> the secrets its newest revision names

    async def restore(self) -> None:
        """Start every function of the registry again (after a gateway restart), in parallel."""
        await asyncio.gather(*(self._restore_one(r) for r in list(self.core.registry.records.values())))

    async def _restore_one(self, record: FunctionRecord) -> None:
        async with self.core.lock(record.name):
            try:
                spec = await asyncio.to_thread(self._read_spec, record)
                deployment = await self._create(record, spec)
                await deployment.resume()
            except (DeployFailed, KeyError, DcfError) as exc:
                message = exc.message if isinstance(exc, DeployFailed) else str(exc)
                self.core.start_errors[record.name] = message
                log.error("could not restart %s: %s", record.name, message)
                return
            self.core.serve(record, deployment)
            self.core.start_errors.pop(record.name, None)
            log.info("restarted %s (revision %d, %d replica(s))", record.name, record.revision, record.replicas)

    def _read_spec(self, record: FunctionRecord) -> FunctionSpec:
        """The function as its deployed revision's config.yaml says, with its deploy's environment (blocking)."""
        folder = self.core.function_dir(record.name) / f"rev-{record.revision}"
        return _with_deploy_env(load_config(folder / "config.yaml").function(record.name), record)

    def _retire(self, name: str, previous: Deployment | None, folder: Path | None) -> None:
        """Stop a replaced revision and remove its folder in the background: a deploy returns once the new
        revision serves, while the old replicas finish the calls they have."""
        async def retire(after: asyncio.Task[None] | None) -> None:
            if after is not None:
                await asyncio.gather(after, return_exceptions=True)
            if previous is not None:
                await self.core.stop(previous)
            if folder is not None:
                await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)

        task = asyncio.create_task(retire(self._retiring.get(name)), name=f"dcf-retire-{name}")
        self._retiring[name] = task
        task.add_done_callback(lambda done: self._retiring.get(name) is done and self._retiring.pop(name))

    async def retired(self, name: str | None = None) -> None:
        """Wait until the replaced revisions (of `name`, or of all functions) are stopped."""
        tasks = list(self._retiring.values()) if name is None else [t for t in [self._retiring.get(name)] if t]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _create(self, record: FunctionRecord, spec: FunctionSpec) -> Deployment:
        if not self.core.offers(record.backend):
            raise ConfigError(f"backend {record.backend!r} is not available in this gateway")
        backend = await self.core.backend(record.backend)
        self.newest_secrets[record.name] = list(spec.secrets)
        mesh = self.core.mesh
        if backend.replicas_on_cluster:
            cluster = self.core.cluster_mesh
            if cluster is None and spec.secrets:
                raise ConfigError(f"{spec.name} names secrets, and replicas on the {backend.name} backend cannot "
                                  "fetch them from a TLS gateway yet: deploy it on the local or docker backend")
            mesh = MeshAccess(cluster.address, function_credential(cluster.token, spec.name)) if cluster else None
        if spec.autoscaling is not None:  # a restart resumes at the count it had, within the bounds
            record.replicas = spec.autoscaling.clamp(record.replicas)
        return backend.create(
            DeploymentSpec(
                function=spec,
                revision=record.revision,
                source_dir=self.core.function_dir(record.name) / f"rev-{record.revision}",
                log_path=self.core.log_path(record.name),
                image=record.image,
                replicas=record.replicas,
                secrets=await asyncio.to_thread(self._secret_values, spec),
                mesh=mesh,
            )
        )

    def _secret_values(self, spec: FunctionSpec) -> dict[str, dict[str, bytes]]:
        """The values of the secrets `spec` names, from the store (blocking); a missing one fails the deploy in
        one sentence. A key asked for as a variable that cannot be one stays a file only, as the log says (as
        Kubernetes' envFrom skips such keys)."""
        values = {}
        for name in spec.secrets:
            try:
                values[name] = self.core.secrets.get(name)
            except SecretMissing:
                raise ConfigError(f"{spec.name} needs the secret {name!r}, which this gateway does not hold: create "
                                  f"it with `dcf secret create {name} --from-literal KEY=VALUE`") from None
        for name in spec.env_secrets:
            for key in sorted(set(values[name]) - set(env_secret_keys(values[name]))):
                note(self.core.log_path(spec.name), f"secret {name!r}: key {key!r} is a file only "
                     f"($DCF_SECRETS_DIR/{name}/{key}): it cannot be an environment variable (not a variable name, "
                     "or not text)")
        return values

    @unary_rpc
    async def Deploy(self, request: pb.CreateFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        return await self._deploy(request, update=False)

    @unary_rpc
    async def Update(self, request: pb.CreateFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        return await self._deploy(request, update=True)

    async def _deploy(self, request: pb.CreateFunctionRequest, *, update: bool) -> pb.Message:
        started, ok = time.perf_counter(), False
        try:
            reply = await self._deploy_now(request, update=update)
            ok = True
            return reply
        finally:
            self.core.metrics.deployed(ok, time.perf_counter() - started)

    async def _deploy_now(self, request: pb.CreateFunctionRequest, *, update: bool) -> pb.Message:
        name = valid_name(request.Service)
        async with self.core.lock(name):
            old = self.core.registry.records.get(name)
            if old is not None and not update:
                raise Abort(grpc.StatusCode.ALREADY_EXISTS,
                            f"function {name!r} is already deployed; update it (Update RPC, "
                            "`dcf function deploy --update`) or delete it first")
            if old is None and update:
                raise Abort(grpc.StatusCode.NOT_FOUND, f"function {name!r} is not deployed, so it cannot be updated")
            if not request.Source:
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"the request for {name!r} carries no function source (only image {brief(request.Image)}); "
                            "this gateway runs function folders: deploy with `dcf function deploy -f config.yaml`")
            _check_replicas(request.Replicas)
            revision = (old.revision + 1) if old else 1
            source_dir = self.core.function_dir(name) / f"rev-{revision}"
            try:
                # Unpacking a big source takes seconds: off the loop, so calls and health checks go on meanwhile.
                spec = await asyncio.to_thread(self._unpack, name, request.Source, source_dir)
                _check_limits(request, spec)
                record = self._record(name, revision, request, spec, old)
                deployment = await self._start(record, _with_deploy_env(spec, record), source_dir)
            except Exception:
                # A failed deploy leaves nothing behind: its revision, and for a first deploy the function's
                # folder and log too.
                await asyncio.to_thread(self._discard, name, source_dir, first=old is None)
                raise
            backend, replicas = record.backend, record.replicas
            # The new revision is ready: switch calls to it, then retire the old one.
            previous = self.core.serve(record, deployment)
            self.core.start_errors.pop(name, None)
            self.core.registry.put(record)
            self._retire(name, previous, self.core.function_dir(name) / f"rev-{old.revision}" if old else None)
            verb = "Updated" if old else "Deployed"
            log.info("%s %s (revision %d, %d replica(s), %s)", verb.lower(), name, revision, replicas, backend)
            if spec.autoscaling:
                replicas_said = f"{spec.autoscaling.said},"
            else:
                replicas_said = f"{replicas} replica{'s' if replicas != 1 else ''}"
            return pb.Message(Msg=f"{verb}: {name} ({replicas_said} on the {backend} backend{_placement(deployment)})")

    def _unpack(self, name: str, source: bytes, source_dir: Path) -> FunctionSpec:
        """Unpack a deploy's source as a new revision and read its config (blocking: run it in a thread)."""
        shutil.rmtree(source_dir, ignore_errors=True)
        try:
            unpack_source(source, source_dir, max_bytes=SOURCE_SIZE_FACTOR * self.core.max_message)
            spec = load_config(source_dir / "config.yaml").function(name)
            for requirements in (REQUIREMENTS, NODEPS_REQUIREMENTS):
                read_requirements(source_dir / requirements)  # a line pip must not be given is refused now
        except (InvalidArgument, ConfigError) as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc).replace(str(source_dir) + "/", "")) from None
        return spec

    def _discard(self, name: str, source_dir: Path, *, first: bool) -> None:
        """Remove what a failed deploy wrote (blocking: run it in a thread)."""
        shutil.rmtree(source_dir, ignore_errors=True)
        if first:
            shutil.rmtree(self.core.function_dir(name), ignore_errors=True)
            remove_log(self.core.log_path(name))

    def _record(self, name: str, revision: int, request: pb.CreateFunctionRequest, spec: FunctionSpec,
                old: FunctionRecord | None) -> FunctionRecord:
        """The registry's record of a deploy: the request's choices (backend, replicas, image, environment) over
        the config's."""
        backend = request.Backend or spec.backend or self.core.default_backend
        if not self.core.offers(backend):
            offered = ", ".join(sorted({*self.core.backends, *self.core.on_demand}))
            if backend in self.core.missing:
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"this gateway has no {backend} backend: "
                            f"{self.core.missing[backend]} (it has: {offered})")
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"unknown backend {brief(backend)} (this gateway has: {offered})")
        annotations = {"dcf.desc": spec.desc, "dcf.maintainer": spec.maintainer, "dcf.runtime": spec.runtime}
        return FunctionRecord(
            name=name,
            backend=backend,
            revision=revision,
            # An autoscaled function starts min_replicas, and one at least: a deploy proves its Handler loads.
            replicas=(max(1, spec.autoscaling.min_replicas) if spec.autoscaling else
                      request.Replicas or (old.replicas if old else spec.replicas)),
            image=request.Image or spec.image_ref,
            env=dict(request.EnvVars),
            secrets=[valid_secret_name(n) for n in dict.fromkeys(request.Secrets)],
            labels={**spec.labels, **request.Labels},
            annotations={**annotations, **spec.annotations, **request.Annotations},
            invocations=old.invocations if old else 0,
            cold_starts=old.cold_starts if old else 0,
            last_cold_start_s=old.last_cold_start_s if old else 0.0,
            last_cold_start_at=old.last_cold_start_at if old else 0.0,
            created=old.created if old else time.time(),
        )

    async def _start(self, record: FunctionRecord, spec: FunctionSpec, source_dir: Path) -> Deployment:
        """Start a new revision on its backend; its failure as the sentence a client shows."""
        name = record.name
        try:
            deployment = await self._create(record, spec)
            await deployment.start()
        except DcfError as exc:  # the backend could not be joined (Ray absent or unreachable)
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} was not deployed: {exc}") from None
        except DeployFailed as failure:
            log.warning("deploy of %s failed: %s", name, failure.message)
            # Paths inside the function read as in the user's folder (src/handler.py), not in this
            # gateway's copy of it; the client puts its own folder in front.
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} did not start: {failure.message}",
                        detail=failure.detail.replace(f"{source_dir}/", "")) from None
        return deployment

    async def roll(self, name: str) -> None:
        """Start function `name` again as a new revision of the same folder (its secrets were rotated): the old
        replicas serve until the new ones do, as for an update; Abort in one sentence if it cannot start."""
        async with self.core.lock(name):
            old = self.core.registry.records.get(name)
            if old is None:
                return
            record = dataclasses.replace(old, revision=old.revision + 1)
            old_dir = self.core.function_dir(name) / f"rev-{old.revision}"
            source_dir = self.core.function_dir(name) / f"rev-{record.revision}"
            try:
                await asyncio.to_thread(shutil.copytree, old_dir, source_dir, symlinks=True)
                spec = await asyncio.to_thread(self._read_spec, record)
                deployment = await self._start(record, spec, source_dir)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, source_dir, ignore_errors=True)
                raise
            previous = self.core.serve(record, deployment)
            self.core.start_errors.pop(name, None)
            self.core.registry.put(record)
            self._retire(name, previous, old_dir)
            log.info("restarted %s as revision %d (a secret it uses changed)", name, record.revision)

    @unary_rpc
    async def Delete(self, request: pb.DeleteFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = valid_name(request.FunctionName)
        async with self.core.lock(name):
            if name not in self.core.registry.records:
                raise self.core.not_deployed(name)
            deployment = self.core.deployments.pop(name, None)
            if deployment is not None:
                await self.core.stop(deployment)
            await self.retired(name)
            self.core.registry.remove(name)
            self.core.start_errors.pop(name, None)
            self.newest_secrets.pop(name, None)
            await asyncio.to_thread(self._discard, name, self.core.function_dir(name), first=True)
        log.info("deleted %s", name)
        return pb.Message(Msg=f"Deleted: {name}")

    @unary_rpc
    async def ReplicaUpdate(self, request: pb.ScaleServiceRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = valid_name(request.ServiceName)
        _check_replicas(request.Replicas)
        async with self.core.lock(name):
            record, deployment = self.core.route(name)
            autoscaling = deployment.spec.function.autoscaling
            if autoscaling:
                low, high = autoscaling.min_replicas, autoscaling.max_replicas
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"{name} autoscales between {low} and {high} replicas (config.yaml's `autoscaling:`): "
                            "change those and deploy again, or remove `autoscaling:` to scale it by hand")
            try:
                await deployment.scale(request.Replicas)
            except DeployFailed as failure:
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} could not scale: {failure.message}",
                            detail=failure.detail) from None
            record.replicas = request.Replicas
            self.core.registry.put(record)
        log.info("scaled %s to %d replica(s)", name, request.Replicas)
        if request.Replicas == 0:
            return pb.Message(Msg=f"Scaled: {name} to 0 replicas: idle until called (the next call starts one)")
        return pb.Message(Msg=f"Scaled: {name} to {request.Replicas} replica{'s' if request.Replicas != 1 else ''}")



def _check_replicas(replicas: int) -> None:
    if replicas > MAX_REPLICAS:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_REPLICAS} replicas, asked for {replicas}")


def _with_deploy_env(spec: FunctionSpec, record: FunctionRecord) -> FunctionSpec:
    """The function with its deploy request's environment over config.yaml's, and its Secrets beside them."""
    if not record.env and not record.secrets:
        return spec
    return dataclasses.replace(spec, environment={**spec.environment, **record.env},
                               secrets=list(dict.fromkeys([*spec.secrets, *record.secrets])))


def _check_limits(request: pb.CreateFunctionRequest, spec: FunctionSpec) -> None:
    """A request's Limits must say what the folder's config.yaml says: it is the one source of what a replica
    gets (DCF's own clients fill Limits from it; an empty field means not given)."""
    if not request.HasField("Limits"):
        return
    given = request.Limits
    try:
        gpu_differs = bool(given.GPU.strip()) and GpuRequest.parse(given.GPU) != spec.limits.gpu
    except ValueError as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Limits.GPU: {exc}") from None
    for key, value, differs in (("memory", given.Memory, given.Memory.strip() not in ("", spec.limits.memory)),
                                ("cpu", given.CPU, given.CPU.strip() not in ("", spec.limits.cpu)),
                                ("gpu", given.GPU, gpu_differs)):
        if differs:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"the request's Limits.{key.upper() if key != 'memory' else 'Memory'} {brief(value)} differs "
                        f"from config.yaml's limits.{key} {brief(spec.limits.as_dcf()[key])}: the function folder's "
                        "config.yaml says what a replica gets; change it there and deploy again")


def _placement(deployment: Deployment) -> str:
    """Where a deploy's replicas got their GPUs, for its message ('' when it asks for none)."""
    request = deployment.spec.function.limits.gpu
    grants = deployment.gpu_grants()
    if not request or not deployment.allocates_gpus:
        return ""
    if not grants:
        return "; no GPU to give here, so on the CPU" if deployment.spec.replicas else ""
    said = []
    for grant in sorted(grants, key=lambda g: g.replica):
        devices = ",".join(map(str, grant.devices))
        share = f" ({grant.share:g})" if grant.share < 1 else ""
        said.append(f"replica {grant.replica} on GPU{'s' if len(grant.devices) > 1 else ''} {devices}{share}")
    return "; " + ", ".join(said)
