"""Map: a dataset through one function (the `Map` RPC behind dcf_jupyter's `.map`).

Items arrive with their index, several to a message. Each becomes a call to the least busy ready replica, and
results go back as they finish, several to a message. The run keeps at most `window()` items between reading
and answering: enough to fill every replica the function may have (so the autoscaler, which reads calls in
flight, brings them all up), never more than its queue bound lets in beside other callers. Past that it stops
reading, and gRPC's flow control paces the sender: memory stays flat however long the dataset.

A failed item is tried again up to `Retries` times; an item whose replica died under it is tried again
regardless (up to LOST_REPLICA_TRIES), since the function never answered it. Each item's result is sent
exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
from collections.abc import AsyncIterator
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError

from ..backends.base import Deployment
from ..errors import brief
from ..protocol import gateway_pb2 as pb
from ..protocol.link import FORM_MESSAGES
from .registry import FunctionRecord
from .rpc import Abort, Deadline, ReplicaLost, unexpected

MAX_WINDOW = 1024  # items one map keeps in flight at most, whatever the function's size
PIPELINE = 4  # items queued at each replica beyond those it runs: the next is there when one finishes
LOST_REPLICA_TRIES = 3  # tries again of an item whose replica died under it (not counted in Retries)
MAX_RETRIES = 100
MAX_RESULTS_PER_MESSAGE = 512
RESULT_BYTES_PER_MESSAGE = 1 << 20  # results packed into one message up to this size (one larger goes alone)
FULL_QUEUE_POLL_S = 0.05  # how often a map with nothing in flight looks again at a queue others filled
LOOK_AGAIN_S = 0.02  # how often a map whose replicas are all full looks for a new one
RETRY_PAUSE_S = 0.1  # the first pause before an item is tried again, doubled each try (jittered), at most 5 s


class Caller(Protocol):
    """What a map needs of the invoker (invoke.py's Invoker)."""

    async def call_routed(self, record: FunctionRecord, deployment: Deployment, raw: bytes, asked: float | None,
                          context: Deadline, form: int = ..., *,
                          refuse: bool = ...) -> bytes:
        """One call of a routed function: the reply's bytes."""
        ...


def window(deployment: Deployment) -> int:
    """Items a map keeps in flight: what every replica the function may run takes in at once, plus a queue
    of PIPELINE (or the autoscaler's target) at each."""
    function = deployment.spec.function
    autoscaling = function.autoscaling
    queue = max(function.calls_at_once, PIPELINE, math.ceil(autoscaling.target) if autoscaling else 0)
    replicas = autoscaling.max_replicas if autoscaling is not None else max(deployment.replicas, 1)
    return max(1, min(MAX_WINDOW, replicas * (function.calls_at_once + queue)))


class Detached:
    """The context of calls no RPC waits for (a spawned call's): no deadline but the function's own."""

    @staticmethod
    def time_remaining() -> float | None:
        return None


def _parse(raw: bytes) -> pb.MapRequest:
    try:
        return pb.MapRequest.FromString(raw)
    except DecodeError as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed MapRequest: {exc}") from None


async def first_map_request(requests: AsyncIterator[bytes]) -> pb.MapRequest:
    """The first message of a Map stream, which names the function."""
    async for raw in requests:
        first = _parse(raw)
        if not first.Service:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "a map's first message names the function (Service)")
        if first.Retries > MAX_RETRIES:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"retries={first.Retries}: at most {MAX_RETRIES} tries again of a failed item")
        return first
    raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "a map's stream ended before its first message")


def _failed(index: int, failure: Abort, tries: int) -> pb.MapResult:
    return pb.MapResult(Index=index, Code=failure.code.name, Error=failure.message, Origin=failure.origin,
                        Traceback=failure.detail, Tries=tries)


class MapRun:
    """One Map stream: reads items into calls (`_read`), and writes their results back (`run`)."""

    def __init__(self, invoker: Caller, record: FunctionRecord, deployment: Deployment,
                 context: Deadline, retries: int) -> None:
        self.invoker = invoker
        self.record = record
        self.deployment = deployment
        self.context = context
        self.retries = retries
        function = deployment.spec.function
        self.per_replica = function.calls_at_once + PIPELINE  # calls a replica holds: those it runs, and the next
        self.outbox: list[pb.MapResult] = []
        self.open = 0  # items taken in whose result is not written yet
        # Items read but not yet called: counted as callers waiting, so the autoscaler sees them, and called as
        # replicas have room (a replica that comes up then takes its share instead of all waiting on the first).
        self.backlog: collections.deque[tuple[int, bytes]] = collections.deque()
        self.results_ready = asyncio.Event()  # set when the outbox fills or reading ends
        self.room = asyncio.Event()  # set when a result is written: the window has room again
        self.calls: set[asyncio.Task[None]] = set()
        self.reading: asyncio.Task[None] | None = None
        self._look_again: asyncio.TimerHandle | None = None

    async def run(self, first: pb.MapRequest, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The serialized MapReplies of the stream, as results come, until every item read is answered."""
        async for results in self.results(first, requests):
            yield pb.MapReplies(Results=results).SerializeToString()

    async def results(self, first: pb.MapRequest, requests: AsyncIterator[bytes]) -> AsyncIterator[
            list[pb.MapResult]]:
        """The results of the items of `first` and `requests`, several at a time, as they come, until every item
        read is answered; the next are taken once these are handled (the window moves on)."""
        self.reading = asyncio.create_task(self._read(first, requests))
        try:
            while True:
                if not self.outbox:
                    if self.reading.done():
                        if (failure := self.reading.exception()) is not None:
                            raise failure
                        if self.open == 0:
                            return
                    self.results_ready.clear()
                    await self.results_ready.wait()
                    continue
                results = self._take_results()
                yield results
                self.open -= len(results)
                self.room.set()
        finally:
            # The caller went away or the stream failed: nothing more is called for it.
            self.reading.cancel()
            for call in list(self.calls):
                call.cancel()
            self.deployment.add_waiting(-len(self.backlog))
            self.backlog.clear()
            if self._look_again is not None:
                self._look_again.cancel()

    def _take_results(self) -> list[pb.MapResult]:
        """The results for one message: all that wait, up to a count and a size."""
        outbox = self.outbox
        count = size = 0
        for result in outbox:
            size += len(result.Reply.Output)
            if count and (count >= MAX_RESULTS_PER_MESSAGE or size > RESULT_BYTES_PER_MESSAGE):
                break
            count += 1
        taken, self.outbox = outbox[:count], outbox[count:]
        return taken

    async def _read(self, message: pb.MapRequest, requests: AsyncIterator[bytes]) -> None:
        name = self.record.name
        try:
            while True:
                for item in message.Items:
                    await self._wait_for_room()
                    self.open += 1
                    request = pb.InvokeServiceRequest(Service=name, Input=item.Input).SerializeToString()
                    self.backlog.append((item.Index, request))
                    self.deployment.add_waiting(1)
                    self._call_waiting()
                raw = await anext(aiter(requests), None)
                if raw is None:
                    return
                message = _parse(raw)
                if message.Service and message.Service != name:
                    raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"this map calls {name!r}; start another map for {brief(message.Service)}")
        finally:
            self.results_ready.set()

    async def _wait_for_room(self) -> None:
        """Until the window has room and the function's queue takes another call (others' calls count too)."""
        while self.open >= window(self.deployment) or self.deployment.refuses_more():
            if self.open:
                self.room.clear()
                await self.room.wait()
            else:  # others filled the queue: nothing of ours will free room, so look again shortly
                await asyncio.sleep(FULL_QUEUE_POLL_S)

    def _call_waiting(self) -> None:
        """Call the backlog's items while a replica has room for them (Serve's handle queues them itself); with
        no replica up, one item, whose call starts one; else look again shortly, as replicas come up."""
        self._look_again = None
        deployment = self.deployment
        loop = asyncio.get_running_loop()
        while self.backlog:
            ready = deployment.ready_replicas
            # Its own calls count as they are made (a call holds its replica only once its task runs).
            full = len(self.calls) >= ready * self.per_replica or not deployment.has_room(self.per_replica)
            if deployment.queues_at_replicas and full and (ready or self.calls):
                if self._look_again is None:
                    self._look_again = loop.call_later(LOOK_AGAIN_S, self._call_waiting)
                return
            index, request = self.backlog.popleft()
            deployment.add_waiting(-1)
            call = loop.create_task(self._call(index, request))
            self.calls.add(call)
            call.add_done_callback(self._called)

    def _called(self, call: asyncio.Task[None]) -> None:
        self.calls.discard(call)
        if self.backlog:
            self._call_waiting()

    async def _call(self, index: int, request: bytes) -> None:
        """One item, tried until it has a result, which goes to the outbox."""
        tries = lost = 0
        while True:
            tries += 1
            try:
                reply = await self.invoker.call_routed(self.record, self.deployment, request, None, self.context,
                                                       FORM_MESSAGES, refuse=False)
                result = pb.MapResult(Index=index, Reply=pb.Messages.FromString(reply), Tries=tries)
                break
            except ReplicaLost as failure:
                if lost < LOST_REPLICA_TRIES:
                    lost += 1
                    tries -= 1
                    continue
                result = _failed(index, failure, tries)
                break
            except Exception as exc:  # noqa: BLE001 - every item gets a result, a failure included
                if tries > self.retries:
                    result = _failed(index, exc if isinstance(exc, Abort) else unexpected(exc), tries)
                    break
                await asyncio.sleep(min(5.0, RETRY_PAUSE_S * 2 ** (tries - 1)) * random.uniform(0.5, 1.0))
        self.outbox.append(result)
        self.results_ready.set()
