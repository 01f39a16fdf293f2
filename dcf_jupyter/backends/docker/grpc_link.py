"""The gateway's link to a remote worker (a container, a cluster replica) over the DCF gRPC protocol.

Requests and replies pass through as bytes, as on the local link; one HTTP/2
connection per worker carries every call, and reconnects by itself when the
worker restarts at the same address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from ...protocol.link import FORM_MESSAGE, CallFailed, LinkClosed
from ...protocol.names import BATCH_KEY, HEALTH_CHECK, INVOKE, INVOKE_BYTES, INVOKE_STREAM, ORIGIN_KEY, TRACEBACK_KEY
from ...settings import grpc_options
from ..base import TaskCalls


def _failure(error: grpc.aio.AioRpcError, address: str) -> Exception:
    """A worker's error status as the local link would report it."""
    metadata = dict(error.trailing_metadata() or ())
    if error.code() == grpc.StatusCode.UNAVAILABLE and ORIGIN_KEY not in metadata:
        return LinkClosed(f"the worker at {address} is unreachable ({error.details()})")
    traceback = metadata.get(TRACEBACK_KEY, b"")
    if isinstance(traceback, bytes):
        traceback = traceback.decode("utf-8", "replace")
    return CallFailed(error.code().value[0], error.details() or error.code().name, traceback)


class GrpcLink(TaskCalls):
    """One remote worker, many concurrent calls."""

    def __init__(self, address: str, max_message: int) -> None:
        super().__init__()
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=grpc_options(max_message))
        self._unary = {
            FORM_MESSAGE: self._channel.unary_unary(INVOKE),
        }
        self._bytes = self._channel.unary_unary(INVOKE_BYTES)
        self._stream = self._channel.unary_stream(INVOKE_STREAM)
        self._health = self._channel.unary_unary(HEALTH_CHECK)
        self._closed = False

    @property
    def is_open(self) -> bool:
        """False once closed; a restarting worker still counts (the channel reconnects)."""
        return not self._closed

    async def healthy(self, timeout: float = 2.0) -> bool:
        """True if the worker answers HealthCheck (its Handler is loaded)."""
        try:
            return await self._health(b"", timeout=timeout) == b"\n\x02OK"
        except grpc.aio.AioRpcError:
            return False

    async def call(self, form: int, payload: bytes) -> bytes:
        """One unary call: the serialized reply, or CallFailed / LinkClosed."""
        method = self._unary.get(form, self._bytes)
        try:
            if self.on_batch is None:
                return await method(payload)
            call = method(payload)  # a batched function's: its trailing metadata may say a batch's size
            reply = await call
            batch = dict(await call.trailing_metadata() or ()).get(BATCH_KEY)
        except grpc.aio.AioRpcError as error:
            raise _failure(error, self.address) from None
        if batch:
            self.on_batch(int(batch))
        return reply


    async def stream(self, payload: bytes) -> AsyncIterator[bytes]:
        """A server-streaming call: each serialized item as it arrives."""
        call = self._stream(payload)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as error:
            raise _failure(error, self.address) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        """Close the channel; calls in flight fail."""
        self._closed = True
        await self._channel.close()
