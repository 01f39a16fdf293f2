"""The gateway <-> local worker link: length-prefixed frames over a Unix socket.

Every call crosses this hop, so it is kept lean: one long-lived connection per
worker, calls multiplexed by id, payloads forwarded as they are (the worker
replies with the serialized protobuf the gateway sends on unchanged).

Frame: ``<u32 payload length><u64 call id><u8 kind><u8 arg>`` then the payload.

gateway -> worker: CALL (arg = reply form; payload = the serialized
pb.InvokeServiceRequest as the client sent it), CANCEL, CREDIT (arg = how many
more ITEMs of that streamed call the worker may send).
worker -> gateway: REPLY (a serialized pb.Message / pb.Messages), ITEM (one
pb.Messages of a streamed reply), END (stream done), ERROR (arg = gRPC status
code, payload = UTF-8 message, NUL, traceback).

A streamed call starts with STREAM_WINDOW credits and the gateway returns one
per item its client has taken, so a generator handler runs at most that far
ahead of a slow reader instead of filling the gateway's memory; a CANCEL stops
the generator at its next item.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence

HEADER = struct.Struct("<IQBB")

CALL, CANCEL, CREDIT = 1, 2, 3
REPLY, ITEM, END, ERROR = 16, 17, 18, 19

FORM_MESSAGE = 0  # Invoke: one pb.Message (string reply)
FORM_MESSAGES = 1  # InvokeBytes, Invokes: one pb.Messages (bytes reply)
FORM_STREAM = 2  # InvokeStream: several pb.Messages, then END

STREAM_WINDOW = 32  # items of a streamed reply the worker may send before the gateway's client took them

# gRPC status codes used on the link (grpc.StatusCode values, kept numeric so the
# worker side needs no grpc import to speak the link).
INTERNAL, INVALID_ARGUMENT, UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED = 13, 3, 14, 4, 1


class CallFailed(Exception):
    """A call ended with an error status: the handler raised, or the worker failed."""

    def __init__(self, code: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail  # the handler's traceback

    def encode(self) -> bytes:
        """The ERROR frame payload."""
        return self.message.encode("utf-8", "replace") + b"\0" + self.detail.encode("utf-8", "replace")

    @classmethod
    def decode(cls, code: int, payload: bytes) -> CallFailed:
        """Rebuild from an ERROR frame."""
        message, _, tb = payload.partition(b"\0")
        return cls(code, message.decode("utf-8", "replace"), tb.decode("utf-8", "replace"))


class LinkClosed(ConnectionError):
    """The worker's connection went away (it exited or crashed)."""


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
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

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
        buf = self._buf
        buf += data
        offset, size = 0, len(buf)
        while size - offset >= HEADER.size:
            length, call_id, kind, arg = HEADER.unpack_from(buf, offset)
            if length > self._max_frame:
                self._lost_reason = f"the worker sent a {length}-byte frame, over the {self._max_frame}-byte limit"
                assert self._transport is not None
                self._transport.abort()
                return
            start = offset + HEADER.size
            end = start + length
            if end > size:
                break
            self._dispatch(call_id, kind, arg, bytes(buf[start:end]))
            offset = end
        if offset:
            del buf[:offset]

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
            waiter.put_nowait(_END if kind == END else CallFailed.decode(arg, payload) if kind == ERROR else payload)
        elif not waiter.done():
            if kind == REPLY:
                waiter.set_result(payload)
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
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
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


# --- worker side -------------------------------------------------------------

Emit = Callable[[int, int, Sequence[bytes]], None]  # (kind, arg, payload parts) for one call
Dispatch = Callable[[int, bytes, Emit], None]  # (form, payload, emit)


class _FrameWriter:
    """Writes whole frames to one connection from any thread."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def write(self, call_id: int, kind: int, arg: int, parts: Sequence[bytes]) -> None:
        """One frame whose payload is `parts` joined; sent scatter-gather, parts are not copied."""
        buffers = [HEADER.pack(sum(len(p) for p in parts), call_id, kind, arg), *parts]
        with self._lock:
            sent = self._conn.sendmsg(buffers)
            for buffer in buffers:  # a large frame on a full socket buffer: send the rest
                if sent >= len(buffer):
                    sent -= len(buffer)
                    continue
                self._conn.sendall(memoryview(buffer)[sent:])
                sent = 0


class StreamStopped(Exception):
    """The gateway cancelled a streamed call, or its connection closed, while the handler generated items."""


class _Connection:
    """One accepted connection: its writer, the calls read but not started, the credits of streamed calls."""

    def __init__(self, conn: socket.socket) -> None:
        self.writer = _FrameWriter(conn)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.waiting: set[int] = set()  # read, not started
        self.cancelled: set[int] = set()  # of those, cancelled by the gateway
        self.credits: dict[int, int] = {}  # streamed calls not ended or cancelled: items they may still send
        self.open = True

    def received(self, call_id: int, form: int) -> None:
        """A CALL was read: it waits for a runner (a streamed one with its first window of credits)."""
        with self.lock:
            self.waiting.add(call_id)
            if form == FORM_STREAM:
                self.credits[call_id] = STREAM_WINDOW

    def cancel(self, call_id: int) -> None:
        with self.changed:
            if call_id in self.waiting:
                self.cancelled.add(call_id)
            if self.credits.pop(call_id, None) is not None:
                self.changed.notify_all()

    def grant(self, call_id: int, count: int) -> None:
        with self.changed:
            if call_id in self.credits:
                self.credits[call_id] += count
                self.changed.notify_all()

    def spend(self, call_id: int) -> None:
        """Wait for a credit to send one item of a streamed call; StreamStopped if it will never come."""
        with self.changed:
            while self.open and self.credits.get(call_id) == 0:
                self.changed.wait()
            if not self.open or call_id not in self.credits:
                raise StreamStopped(call_id)
            self.credits[call_id] -= 1

    def ended(self, call_id: int) -> None:
        with self.lock:
            self.credits.pop(call_id, None)

    def close(self) -> None:
        with self.changed:
            self.open = False
            self.changed.notify_all()

    def take(self, call_id: int) -> bool:
        """Mark a call started; False if it was cancelled before it could start."""
        with self.lock:
            self.waiting.discard(call_id)
            if call_id in self.cancelled:
                self.cancelled.discard(call_id)
                return False
            return True


_STOP = None  # tells a runner thread to end


class LinkServer:
    """The worker's end: accepts the gateway's connection(s) on a Unix socket and serves frames.

    A reader thread per connection only reads frames, so a CANCEL is seen while
    the handler is busy: calls cancelled before they start are skipped (a call
    already running in the handler runs to its end; Python cannot stop a
    thread, and the gateway drops its reply). `concurrency` runner threads run
    `dispatch(form, payload, emit)`, which reports through `emit`.
    """

    def __init__(self, path: str, dispatch: Dispatch, *, max_frame: int, concurrency: int = 1) -> None:
        self.path = path
        self._dispatch = dispatch
        self._max_frame = max_frame
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(8)
        self._calls: queue.SimpleQueue[tuple[_Connection, int, int, bytes] | None] = queue.SimpleQueue()
        self._runners = [
            threading.Thread(target=self._run_calls, name=f"dcf-call-{i}", daemon=True) for i in range(concurrency)
        ]
        self._closing = False

    def serve_in_background(self) -> None:
        """Accept connections and run calls on daemon threads."""
        for runner in self._runners:
            runner.start()
        threading.Thread(target=self._accept_loop, name="dcf-link-accept", daemon=True).start()

    def close(self, drain_s: float | None = None) -> None:
        """Stop accepting and starting calls; wait up to `drain_s` seconds (None: no limit) for the calls
        already in the handler to finish and send their replies. Connections end when the process does."""
        self._closing = True
        try:
            self._sock.close()
        except OSError:
            pass
        for _ in self._runners:
            self._calls.put(_STOP)
        deadline = None if drain_s is None else time.monotonic() + drain_s
        for runner in self._runners:
            if runner.is_alive():
                runner.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), name="dcf-link-conn", daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        connection = _Connection(conn)
        rfile = conn.makefile("rb", buffering=1 << 18)
        try:
            while True:
                header = rfile.read(HEADER.size)
                if len(header) < HEADER.size:
                    return
                length, call_id, kind, arg = HEADER.unpack(header)
                if length > self._max_frame:
                    return  # a broken peer; closing tells the gateway
                payload = rfile.read(length) if length else b""
                if len(payload) < length:
                    return
                if kind == CALL:
                    connection.received(call_id, arg)
                    self._calls.put((connection, call_id, arg, payload))
                elif kind == CREDIT:
                    connection.grant(call_id, arg)
                elif kind == CANCEL:
                    connection.cancel(call_id)
        except (OSError, ValueError):
            return
        finally:
            connection.close()
            rfile.close()
            conn.close()

    def _run_calls(self) -> None:
        while (item := self._calls.get()) is not _STOP:
            connection, call_id, form, payload = item
            if self._closing or not connection.take(call_id):
                continue  # stopping: calls not started yet are dropped (the gateway sees the link close)

            def emit(kind: int, arg: int, parts: Sequence[bytes], call_id: int = call_id,
                     connection: _Connection = connection) -> None:
                if kind == ITEM:
                    connection.spend(call_id)  # raising here unwinds (and so closes) the handler's generator
                connection.writer.write(call_id, kind, arg, parts)

            try:
                self._dispatch(form, payload, emit)
            except StreamStopped:
                pass  # cancelled: nobody reads the rest
            except OSError:
                pass  # the gateway went away mid-reply
            finally:
                if form == FORM_STREAM:  # only streamed calls hold credits; unary ones skip the lock
                    connection.ended(call_id)
