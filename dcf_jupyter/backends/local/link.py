"""The gateway's end of the worker link (format: `dcf_jupyter.protocol.link`)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

from ...protocol.link import (
    CALL,
    CANCEL,
    CREDIT,
    END,
    ERROR,
    FORM_STREAM,
    HEADER,
    ITEM,
    REPLY,
    CallFailed,
    LinkClosed,
)

_END = object()


class AsyncLink(asyncio.Protocol):
    """The gateway's end: one connection to one worker, many concurrent calls."""

    def __init__(self, max_frame: int) -> None:
        self._max_frame = max_frame
        self._buf = bytearray()
        self._pending: dict[int, asyncio.Future[bytes] | asyncio.Queue[object]] = {}
        self._ids = itertools.count(1)
        self._transport: asyncio.Transport | None = None
        self._lost_reason = "the worker closed the connection"
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.on_batch: Callable[[int], None] | None = None  # a REPLY's arg: the size of its batch, once per batch

    @classmethod
    async def connect(cls, path: str, max_frame: int) -> AsyncLink:
        """Open a link to the worker listening on the Unix socket `path`."""
        loop = asyncio.get_running_loop()
        _, link = await loop.create_unix_connection(lambda: cls(max_frame), path)
        return link

    @property
    def is_open(self) -> bool:
        """True until the connection is lost or closed."""
        return self._transport is not None and not self.closed.done()

    # asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Any loop's transport (asyncio's, uvloop's) will do: only write/close/abort are used.
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # Frames are cut straight out of what arrived, one copy each (a reply of 60 KB was copied three times
        # through the buffer); only a frame split across reads waits in the buffer.
        source: bytes | bytearray = data
        if self._buf:
            self._buf += data
            source = self._buf
        offset, size = 0, len(source)
        while size - offset >= HEADER.size:
            length, call_id, kind, arg = HEADER.unpack_from(source, offset)
            if length > self._max_frame:
                self._lost_reason = f"the worker sent a {length}-byte frame, over the {self._max_frame}-byte limit"
                assert self._transport is not None
                self._transport.abort()
                return
            start = offset + HEADER.size
            end = start + length
            if end > size:
                break
            self._dispatch(call_id, kind, arg, bytes(source[start:end]) if source is self._buf else data[start:end])
            offset = end
        if source is self._buf:
            del self._buf[:offset]
        elif offset < size:
            self._buf += data[offset:]

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{self._lost_reason} ({exc})" if exc else self._lost_reason
        error = LinkClosed(reason)
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait(error)
            elif not waiter.done():
                waiter.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def _dispatch(self, call_id: int, kind: int, arg: int, payload: bytes) -> None:
        if kind == ITEM:
            queue = self._pending.get(call_id)
            if isinstance(queue, asyncio.Queue):
                queue.put_nowait(payload)
            return
        waiter = self._pending.pop(call_id, None)
        if waiter is None:  # cancelled meanwhile: drop the late reply
            return
        if isinstance(waiter, asyncio.Queue):
            if kind == ERROR:
                waiter.put_nowait(CallFailed.decode(arg, payload))
                return
            if kind != END:  # the LAST item: it ends the stream too
                waiter.put_nowait(payload)
            waiter.put_nowait(_END)
        elif not waiter.done():
            if kind == REPLY:
                waiter.set_result(payload)
                if arg and self.on_batch is not None:
                    self.on_batch(arg)
            else:
                waiter.set_exception(CallFailed.decode(arg, payload))

    # calls ------------------------------------------------------------------

    def _send(self, call_id: int, kind: int, arg: int, payload: bytes = b"") -> None:
        if not self.is_open:
            raise LinkClosed(self._lost_reason)
        assert self._transport is not None
        self._transport.writelines((HEADER.pack(len(payload), call_id, kind, arg), payload))

    def submit(self, form: int, payload: bytes) -> tuple[int, asyncio.Future[bytes]]:
        """Send a unary call now; return its id and the future of its reply (for pipelining)."""
        call_id = next(self._ids)
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._send(call_id, CALL, form, payload)
        self._pending[call_id] = future
        return call_id, future

    def cancel(self, call_id: int) -> None:
        """Forget a call and tell the worker to skip it if it has not started."""
        if self._pending.pop(call_id, None) is not None and self.is_open:
            self._send(call_id, CANCEL, 0)

    async def call(self, form: int, payload: bytes) -> bytes:
        """One unary call: the serialized reply, or CallFailed / LinkClosed."""
        call_id, future = self.submit(form, payload)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancel(call_id)
            raise

    async def stream(self, payload: bytes) -> AsyncIterator[bytes]:
        """A server-streaming call: each serialized item as it arrives."""
        call_id = next(self._ids)
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._send(call_id, CALL, FORM_STREAM, payload)
        self._pending[call_id] = queue
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, bytes)
                yield item
                if call_id in self._pending and self.is_open:  # our reader took it: one more may come
                    self._send(call_id, CREDIT, 1)
        finally:
            self.cancel(call_id)

    def close(self) -> None:
        """Close the connection; calls in flight fail with LinkClosed."""
        self._lost_reason = "the link was closed"
        if self._transport is not None:
            self._transport.close()
