"""Calls: Invoke, InvokeBytes, InvokeStream and Invokes route to a replica and pass requests and replies
through as bytes (no decode and re-encode here); `Invokes` pipelines a bounded window of calls per stream
to one replica and returns replies in request order."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from ..backends.base import Deployment, NoReplica
from ..definition.spec import DEFAULT_CALL_TIMEOUT_S
from ..errors import brief
from ..protocol import gateway_pb2 as pb
from ..protocol.link import FORM_MESSAGE, FORM_MESSAGES, CallFailed, LinkClosed
from ..protocol.names import MAX_CALL_DEPTH, ORIGIN_FUNCTION, Status
from ..protocol.wire import WireError, parse_call, time_left_field
from .core import GatewayCore
from .mapping import MAX_RESULTS_PER_MESSAGE, MapRun, first_map_request
from .metrics import GatewayMetrics
from .registry import FunctionRecord
from .rpc import Abort, Deadline, ReplicaLost, expiring, streaming_rpc, unary_rpc, within
from .spawned import CallKeeper

log = logging.getLogger("dcf.gateway")
MAX_CALL_WAIT_S = 60.0  # the longest GetCall waits for a spawned call to finish before it answers
RETRY_AFTER_S = 1.0  # what a refusal for a full queue tells the caller to wait before trying again


def _timed_out(record: FunctionRecord, deployment: Deployment, link: Any, timeout: float) -> Abort:
    """A call ran past the function's timeout: recycle the stuck worker and say what was done."""
    log.warning("%s: a call ran past %gs; recycling its worker", record.name, timeout)
    done = deployment.recycle(link)
    return Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                 f"{record.name!r} did not answer within {timeout:g}s (its config.yaml `timeout`, default "
                 f"{DEFAULT_CALL_TIMEOUT_S:g}s); {done}", origin=ORIGIN_FUNCTION)


@contextlib.contextmanager
def _call_failures(record: FunctionRecord) -> Iterator[None]:
    """A call's failure on the worker link as the Abort its client gets (the one mapping of them)."""
    try:
        yield
    except CallFailed as failure:
        raise Abort.from_call(failure) from None
    except LinkClosed as exc:
        raise _link_lost(record.name, exc) from None


async def _answer(reply: asyncio.Future[bytes], record: FunctionRecord, deployment: Deployment, link: Any) -> bytes:
    """One call's reply within the function's timeout; a timeout recycles the stuck worker. (The failures of
    `_call_failures`, mapped inline: a generator-based context costs microseconds on every call's path.)"""
    timeout = deployment.spec.function.call_timeout
    try:
        return await expiring(reply, timeout)
    except CallFailed as failure:
        raise Abort.from_call(failure) from None
    except LinkClosed as exc:
        raise _link_lost(record.name, exc) from None
    except asyncio.TimeoutError:
        raise _timed_out(record, deployment, link, timeout) from None


async def _reply(record: FunctionRecord, deployment: Deployment, link: Any, form: int, payload: bytes) -> bytes:
    """One call sent on `link` and answered (`_answer`); the worker is told to skip it when its caller went away
    or it ran out of time."""
    try:
        call_id, reply = link.submit(form, payload)
    except LinkClosed as exc:
        raise _link_lost(record.name, exc) from None
    try:
        return await _answer(reply, record, deployment, link)
    except BaseException:
        link.cancel(call_id)
        raise


def _link_lost(name: str, exc: LinkClosed) -> Abort:
    return ReplicaLost(grpc.StatusCode.UNAVAILABLE,
                       f"the worker of {name!r} stopped during the call ({exc}); it is being restarted, try again",
                       origin=ORIGIN_FUNCTION)


def _read(raw: bytes) -> tuple[str, float | None]:
    """The function an InvokeServiceRequest names and the TimeLeft it asks for, without copying its Input; refused
    at the end of a chain of function-to-function calls deeper than MAX_CALL_DEPTH (its Depth, which
    dcf_jupyter.mesh counts)."""
    try:
        service, _, time_left, depth, _ = parse_call(raw)
    except WireError as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed InvokeServiceRequest: {exc}") from None
    if depth > MAX_CALL_DEPTH:
        raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"a chain of {depth} function-to-function calls reached {brief(service)}: at most "
                    f"{MAX_CALL_DEPTH} (does a function call itself, or two functions call each other?)")
    return service, time_left


def _forwarded(raw: bytes, asked: float | None, context: Deadline) -> bytes:
    """The request as the replica gets it: with the caller's time left, when it has a deadline (a replica's own
    calls to other functions get no more than that: dcf_jupyter.mesh). A request's own TimeLeft stands when it is
    the shorter: gRPC rounds the deadlines it carries up, by up to a tenth of a second, and a chain of calls must
    not gain time at each hop."""
    left = context.time_remaining()
    if left is None or (asked is not None and asked <= left):
        return raw
    return raw + time_left_field(max(left, 0.0))


class _Measured:
    """The metrics of one call, as a context (a class: a generator-based one costs microseconds a call)."""

    __slots__ = ("metrics", "record", "started")

    def __init__(self, metrics: GatewayMetrics, record: FunctionRecord) -> None:
        self.metrics = metrics
        self.record = record
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()
        self.metrics.call_started(self.record.name)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: Any) -> None:
        if kind is None:
            status = Status.OK.name
        elif isinstance(error, Abort):
            status = error.code.name
        elif issubclass(kind, (asyncio.CancelledError, GeneratorExit)):  # the caller went away
            status = Status.CANCELLED.name
        else:
            status = Status.INTERNAL.name
        self.metrics.call_done(self.record.name, self.record.backend, status, time.perf_counter() - self.started)


class Invoker:
    """The invoke RPCs of the gateway, over its state."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.spawned = CallKeeper(core.state_dir, self)

    async def _pick(self, record: FunctionRecord, deployment: Deployment, context: Deadline,
                    *, refuse: bool = True) -> Any:
        """A ready replica's link, held for this call until `deployment.let_go(link)`; at 0 replicas (of an
        autoscaled function, or one scaled to 0 by hand), the one the call starts (a cold start). Refused at once
        when the function's queue is full (unless `refuse` is False: a map keeps its own window within the
        queue): nothing accepted before is dropped for it."""
        if refuse and deployment.refuses_more():
            self.core.metrics.refused(record.name)
            function = deployment.spec.function
            taken = deployment.ready_replicas * function.calls_at_once
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{record.name} has {deployment.queued} calls waiting already, its limit (max_queued_requests "
                        f"{function.max_queued_requests} beyond the {taken} its replicas take in at once); try again "
                        "in a moment", retry_after=RETRY_AFTER_S)
        remaining = context.time_remaining()
        if deployment.replicas == 0 and (waking := self._waking(record, deployment)) is not None:
            # Starting a replica may take as long as the function may answer in (models load), within the
            # caller's own deadline.
            limit = deployment.spec.function.call_timeout
            link = await self._pick_waking(deployment, waking,
                                           limit if remaining is None else min(limit, max(remaining, 0.0)))
        else:
            timeout = (self.core.ready_timeout if remaining is None else
                       min(self.core.ready_timeout, max(remaining, 0.0)))
            try:
                link = await deployment.pick(timeout)
            except NoReplica as exc:
                raise Abort(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        if link.on_batch is None and deployment.spec.function.batching is not None:
            link.on_batch = self.core.metrics.batch_observer(record.name)  # its batches, counted from now on
        return link

    def _waking(self, record: FunctionRecord, deployment: Deployment) -> asyncio.Future[None] | None:
        """At 0 replicas, the start of the one this call will use: the gateway's autoscaler's cold start, or for a
        function scaled to 0 by hand the gateway's own; None where a cluster engine's autoscaler starts it."""
        scaler = self.core.autoscaler(deployment)
        if scaler is not None:
            return scaler.wake()
        return self.core.wake(record, deployment) if deployment.spec.function.autoscaling is None else None

    @staticmethod
    async def _pick_waking(deployment: Deployment, waking: asyncio.Future[None], timeout: float) -> Any:
        """The replica a cold start brings, or the start's failure in a sentence as soon as it fails."""
        picking = asyncio.ensure_future(deployment.pick(timeout))
        either: set[asyncio.Future[Any]] = {picking, waking}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the caller went away: the replica picked meanwhile is not kept for it
            if not picking.cancel() and not picking.cancelled() and picking.exception() is None:
                deployment.let_go(picking.result())
            raise
        failed = waking.done() and not waking.cancelled() and waking.exception() is not None
        if not picking.done() and failed:
            picking.cancel()  # not done, so it holds no replica
            raise Abort(grpc.StatusCode.UNAVAILABLE, f"{deployment.spec.name} had no replica running, and starting "
                                                     f"one failed: {waking.exception()}")
        try:
            return await picking
        except NoReplica as exc:
            raise Abort(grpc.StatusCode.UNAVAILABLE, str(exc)) from None

    def _measured(self, record: FunctionRecord) -> _Measured:
        """Count one call (or stream) of `record`'s function: in flight while it runs, then its status and time."""
        return _Measured(self.core.metrics, record)

    def route(self, service: str) -> tuple[FunctionRecord, Deployment]:
        """The function a request names, counting a request the gateway cannot route under function=""."""
        try:
            return self.core.route(service)
        except Abort as exc:
            self.core.metrics.call_done("", "", exc.code.name, 0.0, started=False)
            raise

    async def _call(self, raw: bytes, context: grpc.aio.ServicerContext, form: int) -> bytes:
        service, asked = _read(raw)
        record, deployment = self.route(service)
        return await self.call_routed(record, deployment, raw, asked, context, form)

    async def call_routed(self, record: FunctionRecord, deployment: Deployment, raw: bytes, asked: float | None,
                          context: Deadline, form: int = FORM_MESSAGES, *,
                          refuse: bool = True) -> bytes:
        """One call of `record`'s function with the serialized request `raw` (whose own TimeLeft is `asked`):
        picked, counted, answered within the function's timeout; the reply's bytes in `form`."""
        with self._measured(record):
            link = await self._pick(record, deployment, context, refuse=refuse)
            try:
                self.core.registry.count(record)
                return await _reply(record, deployment, link, form, _forwarded(raw, asked, context))
            finally:
                deployment.let_go(link)

    @unary_rpc
    async def Invoke(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._call(raw, context, FORM_MESSAGE)

    @unary_rpc
    async def InvokeBytes(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._call(raw, context, FORM_MESSAGES)

    @streaming_rpc
    async def InvokeStream(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        service, asked = _read(raw)
        record, deployment = self.route(service)
        with self._measured(record):
            link = await self._pick(record, deployment, context)
            try:
                self.core.registry.count(record)
                timeout = deployment.spec.function.call_timeout
                items = link.stream(_forwarded(raw, asked, context))
                with _call_failures(record):
                    while True:
                        try:  # a generator may run long, but not sit for longer than `timeout` between items
                            item = await within(items.__anext__(), timeout)
                        except StopAsyncIteration:
                            break
                        except asyncio.TimeoutError:
                            raise _timed_out(record, deployment, link, timeout) from None
                        yield item
            finally:
                deployment.let_go(link)

    @streaming_rpc
    async def Invokes(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Bidi stream: each request is one call, replies in request order.

        The stream is bound to the function (and replica) named by its first
        message. At most `stream_window` calls are in flight: past that the
        gateway stops reading, so gRPC flow control slows the sender instead of
        memory growing.
        """
        window: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.core.stream_window)
        measured = contextlib.ExitStack()  # the stream, counted once it names its function
        bound: tuple[FunctionRecord, Deployment, Any] | None = None  # once the first message arrived
        unanswered: collections.deque[int] = collections.deque()  # call ids sent to the worker, in order

        async def pump() -> None:
            nonlocal bound
            try:
                async for raw in requests:
                    service, asked = _read(raw)
                    if bound is None:
                        record, deployment = self.route(service)
                        measured.enter_context(self._measured(record))
                        bound = (record, deployment, await self._pick(record, deployment, context))
                    record, _, link = bound
                    if service and service != record.name:
                        raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"this stream calls {record.name!r}; open another stream for {brief(service)}")
                    self.core.registry.count(record)
                    self.core.metrics.frame(record.name)
                    call_id, future = link.submit(FORM_MESSAGES, _forwarded(raw, asked, context))
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
                _, deployment, link = bound
                for call_id in unanswered:
                    link.cancel(call_id)
                deployment.let_go(link)  # the stream held its replica from its first message on
            measured.__exit__(*sys.exc_info())


    @streaming_rpc
    async def Map(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """A dataset through one function: each item a call to whichever replica is free, results as they
        finish (gateway/mapping.py)."""
        first = await first_map_request(requests)
        record, deployment = self.route(first.Service)
        async for replies in MapRun(self, record, deployment, context, first.Retries).run(first, requests):
            yield replies

    @unary_rpc
    async def Spawn(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        """Keep and start a call (or a whole map) the gateway runs on its own (gateway/spawned.py)."""
        call = await self.spawned.spawn(await first_map_request(requests), requests)
        return bytes(call.info().SerializeToString())

    @unary_rpc
    async def GetCall(self, request: pb.CallRequest, context: grpc.aio.ServicerContext) -> pb.CallInfo:
        call = self.spawned.get(request.Id)
        await self.spawned.wait(call, min(request.Wait, MAX_CALL_WAIT_S))
        return call.info()

    @streaming_rpc
    async def CallResults(self, request: pb.CallRequest, context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[pb.MapReplies]:
        results = await self.spawned.results(self.spawned.get(request.Id))
        for start in range(0, len(results), MAX_RESULTS_PER_MESSAGE):
            yield pb.MapReplies(Results=results[start:start + MAX_RESULTS_PER_MESSAGE])

    @unary_rpc
    async def CancelCall(self, request: pb.CallRequest, context: grpc.aio.ServicerContext) -> pb.CallInfo:
        call = self.spawned.get(request.Id)
        await self.spawned.cancel(call)
        return call.info()
