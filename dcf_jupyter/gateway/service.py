"""The gateway: DCF's gRPC service `pb.Gateway`, put together from its invoke side (invoke.py) and its
deploy side (deploy.py) over their shared state (core.py), plus the read-only RPCs and the wiring."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

import grpc

from .._version import __version__
from ..backends.base import OtherFunction
from ..backends.gpus.allocator import memory_by_holder
from ..backends.gpus.allocator import status as gpu_status
from ..host.logfile import tail_text
from ..protocol import gateway_pb2 as pb
from ..protocol.names import DEPLOYED_BY, HEALTHY, SERVICE
from .core import GatewayCore
from .deploy import Deployer
from .invoke import Invoker
from .registry import FunctionRecord, Registry
from .rpc import Abort, unary_rpc, valid_name
from .schedules import Scheduler
from .secrets import SecretKeeper

log = logging.getLogger("dcf.gateway")

DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 100_000


class Gateway:
    """DCF's gRPC service `pb.Gateway`: one instance per gateway process, wiring the invoker and the deployer over
    the state they share, and answering the read-only RPCs itself."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.invoker = Invoker(self.core)
        self.deployer = Deployer(self.core)
        self.secrets = SecretKeeper(self.core, self.deployer)
        self.scheduler = Scheduler(self.core, self.invoker.spawned)
        self._scheduling: asyncio.Task[None] | None = None

    @property
    def registry(self) -> Registry:
        """The registry of deployed functions."""
        return self.core.registry

    async def restore(self) -> None:
        """Start the registry's functions again (after a restart), then the spawned calls they did not finish."""
        for warning in self.invoker.spawned.load():
            log.warning("%s", warning)
        await self.deployer.restore()
        self.invoker.spawned.resume()
        self._scheduling = asyncio.create_task(self.scheduler.run())

    async def close(self) -> None:
        """Stop every replica this gateway runs (a cluster's keep serving, for the next gateway to re-attach)
        and save the registry."""
        if self._scheduling is not None:
            self._scheduling.cancel()
        await self.scheduler.close()
        await self.invoker.spawned.close()
        deployments, self.core.deployments = self.core.deployments, {}
        await asyncio.gather(self.deployer.retired(), *(self.core.stop(d, release=True) for d in deployments.values()),
                             return_exceptions=True)
        self.core.registry.flush()
        for backend in self.core.backends.values():
            await backend.close()
        if self.core.gpus is not None:
            self.core.gpus.close()

    async def _gpu_memory(self, names: list[str]) -> dict[int, int]:
        """Bytes used on their GPUs by the replicas of `names`, by process (asks the driver: in a thread)."""
        grants = [g for n in names if (d := self.core.deployments.get(n)) is not None for g in d.gpu_grants()]
        if self.core.gpus is None or not grants:
            return {}
        return await asyncio.to_thread(memory_by_holder, self.core.gpus, grants)

    def _function(self, record: FunctionRecord, gpu_memory: dict[int, int]) -> pb.Function:
        deployment = self.core.deployments.get(record.name)
        error = self.core.start_errors.get(record.name, "")
        if deployment is None:
            status = "Failed" if error else "Not Ready"
        elif deployment.ready_replicas == 0 and deployment.replicas == 0 and deployment.wakes_on_call:
            status = "Idle"  # scaled to zero: the next call starts a replica
        else:
            status = "Ready" if deployment.ready_replicas > 0 else "Not Ready"
            error = "" if status == "Ready" else deployment.last_error
        spec = deployment.spec.function if deployment is not None else None
        autoscaling = spec.autoscaling if spec is not None else None
        return pb.Function(
            Name=record.name,
            Image=record.image,
            InvocationCount=record.invocations,
            Replicas=deployment.replicas if deployment else record.replicas,  # an autoscaler's count
            AvailableReplicas=deployment.ready_replicas if deployment else 0,
            Annotations=record.annotations,
            Labels=record.labels,
            Status=status,
            Backend=record.backend,
            Error=error,
            Gpus=[pb.ReplicaGpus(Replica=g.replica, Devices=g.devices, Share=g.share,
                                 MemoryUsed=gpu_memory.get(g.pid, 0))
                  for g in (deployment.gpu_grants() if deployment else [])],
            Autoscaled=autoscaling is not None,
            MinReplicas=autoscaling.min_replicas if autoscaling else 0,
            MaxReplicas=autoscaling.max_replicas if autoscaling else 0,
            ColdStarts=record.cold_starts,
            LastColdStartSeconds=record.last_cold_start_s,
            LastColdStartAt=record.last_cold_start_at,
            Queued=deployment.queued if deployment else 0,
            MaxQueued=spec.max_queued_requests if spec is not None else 0,
            MaxBatchSize=spec.batching.max_batch_size if spec is not None and spec.batching is not None else 0,
            Schedule=spec.schedule if spec is not None else "",
            NextRun=self.scheduler.next_run(record.name),
        )

    @unary_rpc
    async def List(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Functions:
        memory = await self._gpu_memory(list(self.core.registry.records))
        records = self.core.registry.records.values()
        functions: list[pb.Function] = [self._function(record, memory) for record in records]
        for backend in list(self.core.backends.values()):
            functions += [self._others_function(backend.name, other) for other in
                          await backend.others(self.core.registry.records)]
        functions.sort(key=lambda function: function.Name)
        return pb.Functions(Functions=functions)

    @staticmethod
    def _others_function(backend: str, other: OtherFunction) -> pb.Function:
        """A function another gateway deployed on a shared backend, marked as such."""
        return pb.Function(Name=other.name, Replicas=other.replicas, AvailableReplicas=other.ready_replicas,
                           Status="Ready" if other.ready_replicas else "Not Ready", Backend=backend,
                           Error=other.message, Annotations={DEPLOYED_BY: "another gateway"})

    @unary_rpc
    async def GetMeta(self, request: pb.FunctionRequest, context: grpc.aio.ServicerContext) -> pb.Function:
        name = valid_name(request.FunctionName)
        record = self.core.registry.records.get(name)
        if record is None:
            for backend in list(self.core.backends.values()):  # another gateway's, on a shared cluster
                for other in await backend.others(self.core.registry.records):
                    if other.name == name:
                        return self._others_function(backend.name, other)
            raise Abort(grpc.StatusCode.NOT_FOUND, f"function {name!r} is not deployed")
        return self._function(record, await self._gpu_memory([name]))

    @unary_rpc
    async def GetLog(self, request: pb.FunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = valid_name(request.FunctionName)
        # A function being deployed has a log already (its requirement installs, its first start).
        if name not in self.core.registry.records and not self.core.lock(name).locked():
            raise self.core.not_deployed(name)
        lines = min(request.Lines or DEFAULT_LOG_LINES, MAX_LOG_LINES)
        deployment = self.core.deployments.get(name)
        text = await deployment.logs(lines) if deployment is not None else None
        if text is None:
            text = await asyncio.to_thread(tail_text, self.core.log_path(name), lines)
        return pb.Message(Msg=text)

    @unary_rpc
    async def Info(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Message:
        info = {
            "name": "dcf-jupyter gateway",
            "version": __version__,
            "address": self.core.address,
            "http_address": self.core.http_address,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.core.started, 1),
            "state_dir": str(self.core.state_dir),
            "backends": sorted(self.core.backends),
            "default_backend": self.core.default_backend,
            "functions": len(self.core.registry.records),
            "max_message_size": self.core.max_message,
            "gpus": await asyncio.to_thread(gpu_status, self.core.gpus) if self.core.gpus is not None else [],
            "gpu_source": self.core.gpus.inventory.source if self.core.gpus is not None else "none",
        }
        return pb.Message(Msg=json.dumps(info))

    @unary_rpc
    async def HealthCheck(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Message:
        return pb.Message(Msg=HEALTHY)

    # --- wiring -----------------------------------------------------------------

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        """The generic handler serving pb.Gateway; invoke replies are passed through unserialized."""
        req = None  # invoke requests stay serialized: only their Service field is read here

        def unary(fn: Any, deserializer: Any, serializer: Any = None) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, deserializer, serializer)

        message = pb.Message.SerializeToString
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Invoke": unary(self.invoker.Invoke, req),
                "InvokeBytes": unary(self.invoker.InvokeBytes, req),
                "InvokeStream": grpc.unary_stream_rpc_method_handler(self.invoker.InvokeStream, req, None),
                "Invokes": grpc.stream_stream_rpc_method_handler(self.invoker.Invokes, req, None),
                "Map": grpc.stream_stream_rpc_method_handler(self.invoker.Map, req, None),
                "Spawn": grpc.stream_unary_rpc_method_handler(self.invoker.Spawn, req, None),
                "GetCall": unary(self.invoker.GetCall, pb.CallRequest.FromString, pb.CallInfo.SerializeToString),
                "CallResults": grpc.unary_stream_rpc_method_handler(self.invoker.CallResults, pb.CallRequest.FromString,
                                                                    pb.MapReplies.SerializeToString),
                "CancelCall": unary(self.invoker.CancelCall, pb.CallRequest.FromString,
                                    pb.CallInfo.SerializeToString),
                "List": unary(self.List, pb.Empty.FromString, pb.Functions.SerializeToString),
                "Deploy": unary(self.deployer.Deploy, pb.CreateFunctionRequest.FromString, message),
                "Update": unary(self.deployer.Update, pb.CreateFunctionRequest.FromString, message),
                "Delete": unary(self.deployer.Delete, pb.DeleteFunctionRequest.FromString, message),
                "GetMeta": unary(self.GetMeta, pb.FunctionRequest.FromString, pb.Function.SerializeToString),
                "GetLog": unary(self.GetLog, pb.FunctionRequest.FromString, message),
                "ReplicaUpdate": unary(self.deployer.ReplicaUpdate, pb.ScaleServiceRequest.FromString, message),
                "Info": unary(self.Info, pb.Empty.FromString, message),
                "HealthCheck": unary(self.HealthCheck, pb.Empty.FromString, message),
                "CreateSecret": unary(self.secrets.CreateSecret, pb.SecretRequest.FromString, message),
                "ListSecrets": unary(self.secrets.ListSecrets, pb.Empty.FromString, pb.SecretList.SerializeToString),
                "DeleteSecret": unary(self.secrets.DeleteSecret, pb.SecretRequest.FromString, message),
                "ReplicaSecrets": unary(self.secrets.ReplicaSecrets, pb.FunctionRequest.FromString,
                                        pb.SecretValues.SerializeToString),
            },
        )


