"""The gateway: DCF's gRPC service `pb.Gateway`, routing calls to function replicas on a backend.

Invoke replies travel as the bytes the worker serialized (no decode/re-encode
here); `Invokes` pipelines a bounded window of frames per stream to one replica
and returns replies in request order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import grpc

from .._version import __version__
from ..backends.base import Backend, DeployFailed, Deployment, DeploymentSpec, NoReplica
from ..definition.source import unpack_source
from ..definition.spec import MAX_REPLICAS, load_config, validate_name
from ..errors import ConfigError, InvalidArgument, InvalidName, brief
from ..logfile import tail_text
from ..protocol import gateway_pb2 as pb
from ..protocol.link import FORM_MESSAGE, FORM_MESSAGES, CallFailed, LinkClosed
from ..protocol.names import ORIGIN_KEY, SERVICE, TRACEBACK_KEY, grpc_status
from ..protocol.wire import WireError, parse_invoke_request
from .control import DEFAULT_STREAM_WINDOW
from .registry import FunctionRecord, Registry

log = logging.getLogger("dcf.gateway")

DEFAULT_LOG_LINES = 200
DEFAULT_CALL_TIMEOUT_S = 300.0  # a call's limit when config.yaml sets no `timeout`
MAX_LOG_LINES = 100_000


class Abort(Exception):
    """Ends an RPC with a status; `origin` tells clients whether the gateway or the function failed."""

    def __init__(self, code: grpc.StatusCode, message: str, *, detail: str = "", origin: str = "gateway") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.origin = origin

    @classmethod
    def from_call(cls, failure: CallFailed) -> Abort:
        return cls(grpc_status(failure.code), failure.message,
                   detail=failure.detail, origin="function")

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        md: tuple[tuple[str, str | bytes], ...] = ((ORIGIN_KEY, self.origin),)
        if self.detail:
            md += ((TRACEBACK_KEY, self.detail.encode("utf-8")),)
        return md


def _unexpected(exc: BaseException) -> Abort:
    log.exception("internal error")
    return Abort(grpc.StatusCode.INTERNAL, f"gateway error: {type(exc).__name__}: {exc}")


async def _end_rpc(context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
    """End the RPC with the status of `exc`: an Abort as it says, anything else as INTERNAL with one line
    (never a bare traceback as a status)."""
    failure = exc if isinstance(exc, Abort) else _unexpected(exc)
    await context.abort(failure.code, failure.message, trailing_metadata=failure.metadata())
    raise AssertionError("context.abort raises")


def _unary(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(self: Gateway, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, see _end_rpc
            await _end_rpc(context, exc)

    return wrapper


def _streaming(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(method)
    async def wrapper(self: Gateway, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, see _end_rpc
            await _end_rpc(context, exc)

    return wrapper


if sys.version_info >= (3, 11):
    async def _within(awaitable: Awaitable[Any], timeout: float) -> Any:
        """`awaitable`'s result, or TimeoutError after `timeout` s (no extra task per call, unlike wait_for)."""
        async with asyncio.timeout(timeout):
            return await awaitable
else:  # pragma: no cover - Python 3.10
    _within = asyncio.wait_for


def _timed_out(record: FunctionRecord, deployment: Deployment, link: Any, timeout: float) -> Abort:
    """A call ran past the function's timeout: recycle the stuck worker and say so."""
    log.warning("%s: a call ran past %gs; recycling its worker", record.name, timeout)
    deployment.recycle(link)
    return Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                 f"{record.name!r} did not answer within {timeout:g}s (its config.yaml `timeout`, default "
                 f"{DEFAULT_CALL_TIMEOUT_S:g}s); the stuck worker was restarted", origin="function")


@contextlib.contextmanager
def _call_failures(record: FunctionRecord) -> Iterator[None]:
    """A call's failure on the worker link as the Abort its client gets (the one mapping of them)."""
    try:
        yield
    except CallFailed as failure:
        raise Abort.from_call(failure) from None
    except LinkClosed as exc:
        raise _link_lost(record.name, exc) from None


async def _answer(reply: Awaitable[bytes], record: FunctionRecord, deployment: Deployment, link: Any) -> bytes:
    """One call's reply within the function's timeout; a timeout recycles the stuck worker."""
    timeout = record.timeout or DEFAULT_CALL_TIMEOUT_S
    with _call_failures(record):
        try:
            return await _within(reply, timeout)
        except asyncio.TimeoutError:
            raise _timed_out(record, deployment, link, timeout) from None


def _link_lost(name: str, exc: LinkClosed) -> Abort:
    return Abort(grpc.StatusCode.UNAVAILABLE,
                 f"the worker of {name!r} stopped during the call ({exc}); it is being restarted, try again",
                 origin="function")


class Gateway:
    """Routes calls and manages functions; one instance per gateway process."""

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
    ) -> None:
        self.state_dir = state_dir
        self.backends = backends
        self.default_backend = default_backend
        self.max_message = max_message
        self.address = address
        self.ready_timeout = ready_timeout
        self.stream_window = stream_window
        self.registry = Registry(state_dir)
        self.deployments: dict[str, Deployment] = {}
        self.start_errors: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: dict[str, asyncio.Task[None]] = {}  # name -> its replaced revision being stopped
        self.started = time.time()

    # --- paths --------------------------------------------------------------

    def function_dir(self, name: str) -> Path:
        """Where a function's unpacked revisions live (name already validated)."""
        return self.state_dir / "functions" / name

    def log_path(self, name: str) -> Path:
        """The function's log file (all replicas and revisions)."""
        return self.state_dir / "logs" / f"{name}.log"

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # --- lifecycle ------------------------------------------------------------

    async def restore(self) -> None:
        """Start every function of the registry again (after a gateway restart), in parallel."""
        await asyncio.gather(*(self._restore_one(r) for r in list(self.registry.records.values())))

    async def _restore_one(self, record: FunctionRecord) -> None:
        async with self._lock(record.name):
            try:
                deployment = self._create(record)
                await deployment.start()
            except (DeployFailed, KeyError, ConfigError) as exc:
                message = exc.message if isinstance(exc, DeployFailed) else str(exc)
                self.start_errors[record.name] = message
                log.error("could not restart %s: %s", record.name, message)
                return
            self.deployments[record.name] = deployment
            self.start_errors.pop(record.name, None)
            log.info("restarted %s (revision %d, %d replica(s))", record.name, record.revision, record.replicas)

    def _retire(self, name: str, previous: Deployment | None, folder: Path | None) -> None:
        """Stop a replaced revision and remove its folder in the background: a deploy returns once the new
        revision serves, while the old replicas finish the calls they have."""
        async def retire(after: asyncio.Task[None] | None) -> None:
            if after is not None:
                await asyncio.gather(after, return_exceptions=True)
            if previous is not None:
                await previous.stop()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

        task = asyncio.create_task(retire(self._retiring.get(name)), name=f"dcf-retire-{name}")
        self._retiring[name] = task
        task.add_done_callback(lambda done: self._retiring.get(name) is done and self._retiring.pop(name))

    async def _retired(self, name: str | None = None) -> None:
        """Wait until the replaced revisions (of `name`, or of all functions) are stopped."""
        tasks = list(self._retiring.values()) if name is None else [t for t in [self._retiring.get(name)] if t]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop every replica and save the registry."""
        deployments, self.deployments = self.deployments, {}
        await asyncio.gather(self._retired(), *(d.stop() for d in deployments.values()), return_exceptions=True)
        self.registry.flush()
        for backend in self.backends.values():
            await backend.close()

    def _create(self, record: FunctionRecord) -> Deployment:
        backend = self.backends.get(record.backend)
        if backend is None:
            raise ConfigError(f"backend {record.backend!r} is not available in this gateway")
        return backend.create(
            DeploymentSpec(
                name=record.name,
                revision=record.revision,
                source_dir=self.function_dir(record.name) / f"rev-{record.revision}",
                log_path=self.log_path(record.name),
                image=record.image,
                runtime=record.annotations.get("dcf.runtime", "python"),
                env=dict(record.env),
                limits=record.resources,
                replicas=record.replicas,
                concurrency=record.concurrency,
            )
        )

    # --- routing --------------------------------------------------------------

    def _route(self, name: str) -> tuple[FunctionRecord, Deployment]:
        if not name:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "no function named: set InvokeServiceRequest.Service")
        record = self.registry.records.get(name)
        if record is None:
            try:
                validate_name(name)
            except InvalidName as exc:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            deployed = ", ".join(sorted(self.registry.records)) or "none"
            raise Abort(grpc.StatusCode.NOT_FOUND, f"function {name!r} is not deployed (deployed: {deployed})")
        deployment = self.deployments.get(name)
        if deployment is None:
            error = self.start_errors.get(name)
            if error:
                raise Abort(grpc.StatusCode.UNAVAILABLE, f"function {name!r} failed to start: {error}")
            raise Abort(grpc.StatusCode.UNAVAILABLE, f"function {name!r} is still starting; try again shortly")
        return record, deployment

    async def _pick(self, record: FunctionRecord, deployment: Deployment, context: grpc.aio.ServicerContext) -> Any:
        remaining = context.time_remaining()
        timeout = self.ready_timeout if remaining is None else min(self.ready_timeout, max(remaining, 0.0))
        try:
            return await deployment.pick(timeout)
        except NoReplica as exc:
            raise Abort(grpc.StatusCode.UNAVAILABLE, str(exc)) from None

    async def _call(self, raw: bytes, context: grpc.aio.ServicerContext, form: int) -> bytes:
        record, deployment = self._route(_service_of(raw))
        link = await self._pick(record, deployment, context)
        self.registry.count(record)
        return await _answer(link.call(form, raw), record, deployment, link)

    # --- invoke RPCs: requests and replies pass through as bytes --------------

    @_unary
    async def Invoke(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._call(raw, context, FORM_MESSAGE)

    @_unary
    async def InvokeBytes(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._call(raw, context, FORM_MESSAGES)

    @_streaming
    async def InvokeStream(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        record, deployment = self._route(_service_of(raw))
        link = await self._pick(record, deployment, context)
        self.registry.count(record)
        with _call_failures(record):
            async for item in link.stream(raw):
                yield item

    @_streaming
    async def Invokes(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Bidi stream: each request is one call, replies in request order.

        The stream is bound to the function (and replica) named by its first
        message. At most `stream_window` calls are in flight: past that the
        gateway stops reading, so gRPC flow control slows the sender instead of
        memory growing.
        """
        window: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.stream_window)
        bound: tuple[FunctionRecord, Deployment, Any] | None = None  # once the first message arrived
        unanswered: collections.deque[int] = collections.deque()  # call ids sent to the worker, in order

        async def pump() -> None:
            nonlocal bound
            try:
                async for raw in requests:
                    service = _service_of(raw)
                    if bound is None:
                        record, deployment = self._route(service)
                        bound = (record, deployment, await self._pick(record, deployment, context))
                    record, _, link = bound
                    if service and service != record.name:
                        raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"this stream calls {record.name!r}; open another stream for {brief(service)}")
                    self.registry.count(record)
                    call_id, future = link.submit(FORM_MESSAGES, raw)
                    unanswered.append(call_id)
                    await window.put(future)
                await window.put(None)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the replying side
                await window.put(exc)

        pumping = asyncio.create_task(pump())
        try:
            while True:
                item = await window.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, LinkClosed) and bound is not None:
                        raise _link_lost(bound[0].name, item)
                    raise item
                assert bound is not None  # a future in the window means the pump bound the stream
                record, deployment, link = bound
                reply = await _answer(item, record, deployment, link)
                unanswered.popleft()
                yield reply
        finally:
            # Cancelled, failed or refused: the worker skips the calls it has not started.
            pumping.cancel()
            if bound is not None:
                _, _, link = bound
                for call_id in unanswered:
                    link.cancel(call_id)

    # --- management RPCs ----------------------------------------------------------

    @_unary
    async def Deploy(self, request: pb.CreateFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        return await self._deploy(request, update=False)

    @_unary
    async def Update(self, request: pb.CreateFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        return await self._deploy(request, update=True)

    async def _deploy(self, request: pb.CreateFunctionRequest, *, update: bool) -> pb.Message:
        name = _valid_name(request.Service)
        async with self._lock(name):
            old = self.registry.records.get(name)
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
            source_dir = self.function_dir(name) / f"rev-{revision}"
            shutil.rmtree(source_dir, ignore_errors=True)
            try:
                unpack_source(request.Source, source_dir, max_bytes=16 * self.max_message)
                spec = load_config(source_dir / "config.yaml").function(name)
            except (InvalidArgument, ConfigError) as exc:
                shutil.rmtree(source_dir, ignore_errors=True)
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc).replace(str(source_dir) + "/", "")) from None
            backend = request.Backend or spec.backend or self.default_backend
            if backend not in self.backends:
                shutil.rmtree(source_dir, ignore_errors=True)
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"unknown backend {brief(backend)} (this gateway has: {', '.join(self.backends)})")
            limits = request.Limits if request.HasField("Limits") else None
            replicas = request.Replicas or (old.replicas if old else spec.replicas)
            annotations = {"dcf.desc": spec.desc, "dcf.maintainer": spec.maintainer, "dcf.runtime": spec.runtime}
            record = FunctionRecord(
                name=name,
                backend=backend,
                revision=revision,
                replicas=replicas,
                image=request.Image or spec.image_ref,
                env={**spec.environment, **request.EnvVars},
                labels={**spec.labels, **request.Labels},
                annotations={**annotations, **spec.annotations, **request.Annotations},
                limits={"memory": limits.Memory, "cpu": limits.CPU, "gpu": limits.GPU} if limits else
                {"memory": spec.limits.memory, "cpu": spec.limits.cpu, "gpu": spec.limits.gpu},
                concurrency=spec.concurrency,
                timeout=spec.timeout,
                invocations=old.invocations if old else 0,
                created=old.created if old else time.time(),
            )
            try:
                deployment = self._create(record)
                await deployment.start()
            except DeployFailed as failure:
                shutil.rmtree(source_dir, ignore_errors=True)
                log.warning("deploy of %s failed: %s", name, failure.message)
                # Paths inside the function read as in the user's folder (src/handler.py), not in this
                # gateway's copy of it; the client puts its own folder in front.
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} did not start: {failure.message}",
                            detail=failure.detail.replace(f"{source_dir}/", "")) from None
            # The new revision is ready: switch calls to it, then retire the old one.
            previous = self.deployments.get(name)
            self.deployments[name] = deployment
            self.start_errors.pop(name, None)
            self.registry.put(record)
            self._retire(name, previous, self.function_dir(name) / f"rev-{old.revision}" if old else None)
            verb = "Updated" if old else "Deployed"
            log.info("%s %s (revision %d, %d replica(s), %s)", verb.lower(), name, revision, replicas, backend)
            plural = "s" if replicas != 1 else ""
            return pb.Message(Msg=f"{verb}: {name} ({replicas} replica{plural} on the {backend} backend)")

    @_unary
    async def Delete(self, request: pb.DeleteFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = _valid_name(request.FunctionName)
        async with self._lock(name):
            if name not in self.registry.records:
                raise Abort(grpc.StatusCode.NOT_FOUND, f"function {name!r} is not deployed")
            deployment = self.deployments.pop(name, None)
            if deployment is not None:
                await deployment.stop()
            await self._retired(name)
            self.registry.remove(name)
            self.start_errors.pop(name, None)
            shutil.rmtree(self.function_dir(name), ignore_errors=True)
            for path in (self.log_path(name), self.log_path(name).with_suffix(".log.1")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        log.info("deleted %s", name)
        return pb.Message(Msg=f"Deleted: {name}")

    @_unary
    async def ReplicaUpdate(self, request: pb.ScaleServiceRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = _valid_name(request.ServiceName)
        _check_replicas(request.Replicas)
        async with self._lock(name):
            record, deployment = self._route(name)
            try:
                await deployment.scale(request.Replicas)
            except DeployFailed as failure:
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} could not scale: {failure.message}",
                            detail=failure.detail) from None
            record.replicas = request.Replicas
            self.registry.put(record)
        log.info("scaled %s to %d replica(s)", name, request.Replicas)
        return pb.Message(Msg=f"Scaled: {name} to {request.Replicas} replica{'s' if request.Replicas != 1 else ''}")

    def _function(self, record: FunctionRecord) -> pb.Function:
        deployment = self.deployments.get(record.name)
        error = self.start_errors.get(record.name, "")
        if deployment is None:
            status = "Failed" if error else "Not Ready"
        else:
            status = "Ready" if deployment.ready_replicas > 0 else "Not Ready"
            error = "" if status == "Ready" else deployment.last_error
        return pb.Function(
            Name=record.name,
            Image=record.image,
            InvocationCount=record.invocations,
            Replicas=record.replicas,
            AvailableReplicas=deployment.ready_replicas if deployment else 0,
            Annotations=record.annotations,
            Labels=record.labels,
            Status=status,
            Backend=record.backend,
            Error=error,
        )

    @_unary
    async def List(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Functions:
        return pb.Functions(Functions=[self._function(r) for _, r in sorted(self.registry.records.items())])

    @_unary
    async def GetMeta(self, request: pb.FunctionRequest, context: grpc.aio.ServicerContext) -> pb.Function:
        name = _valid_name(request.FunctionName)
        record = self.registry.records.get(name)
        if record is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"function {name!r} is not deployed")
        return self._function(record)

    @_unary
    async def GetLog(self, request: pb.FunctionRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = _valid_name(request.FunctionName)
        # A function being deployed has a log already (its requirement installs, its first start).
        if name not in self.registry.records and not self._lock(name).locked():
            raise Abort(grpc.StatusCode.NOT_FOUND, f"function {name!r} is not deployed")
        lines = min(request.Lines or DEFAULT_LOG_LINES, MAX_LOG_LINES)
        deployment = self.deployments.get(name)
        text = await deployment.logs(lines) if deployment is not None else None
        if text is None:
            text = await asyncio.to_thread(tail_text, self.log_path(name), lines)
        return pb.Message(Msg=text)

    @_unary
    async def Info(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Message:
        info = {
            "name": "dcf-jupyter gateway",
            "version": __version__,
            "address": self.address,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "state_dir": str(self.state_dir),
            "backends": sorted(self.backends),
            "default_backend": self.default_backend,
            "functions": len(self.registry.records),
            "max_message_size": self.max_message,
        }
        return pb.Message(Msg=json.dumps(info))

    @_unary
    async def HealthCheck(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Message:
        return pb.Message(Msg="OK")

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
                "Invoke": unary(self.Invoke, req),
                "InvokeBytes": unary(self.InvokeBytes, req),
                "InvokeStream": grpc.unary_stream_rpc_method_handler(self.InvokeStream, req, None),
                "Invokes": grpc.stream_stream_rpc_method_handler(self.Invokes, req, None),
                "List": unary(self.List, pb.Empty.FromString, pb.Functions.SerializeToString),
                "Deploy": unary(self.Deploy, pb.CreateFunctionRequest.FromString, message),
                "Update": unary(self.Update, pb.CreateFunctionRequest.FromString, message),
                "Delete": unary(self.Delete, pb.DeleteFunctionRequest.FromString, message),
                "GetMeta": unary(self.GetMeta, pb.FunctionRequest.FromString, pb.Function.SerializeToString),
                "GetLog": unary(self.GetLog, pb.FunctionRequest.FromString, message),
                "ReplicaUpdate": unary(self.ReplicaUpdate, pb.ScaleServiceRequest.FromString, message),
                "Info": unary(self.Info, pb.Empty.FromString, message),
                "HealthCheck": unary(self.HealthCheck, pb.Empty.FromString, message),
            },
        )


def _service_of(raw: bytes) -> str:
    """The function an InvokeServiceRequest names, without copying its Input."""
    try:
        return parse_invoke_request(raw)[0]
    except WireError as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed InvokeServiceRequest: {exc}") from None


def _valid_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None


def _check_replicas(replicas: int) -> None:
    if replicas > MAX_REPLICAS:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_REPLICAS} replicas, asked for {replicas}")
