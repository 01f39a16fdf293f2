"""The worker's end of the link: serves the gateway's framed calls (format: `dcf_jupyter.protocol.link`)."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence

from ..protocol.link import CALL, CANCEL, CREDIT, FORM_STREAM, HEADER, ITEM, STREAM_WINDOW

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

    def __init__(self, path: str, dispatch: Dispatch, *, max_frame: int, concurrency: int = 1,
                 waited_on: Callable[[bytes], bool] | None = None) -> None:
        self.path = path
        self._dispatch = dispatch
        # A call that a call running here waits on runs on a thread of its own: queued behind calls that wait for
        # the same slots, it would never start (worker/slots.py lends it its caller's slot).
        self._waited_on = waited_on
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
        with contextlib.suppress(OSError):
            self._sock.close()
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
                    if self._waited_on is not None and self._waited_on(payload):
                        threading.Thread(target=self._run_call, args=(connection, call_id, arg, payload),
                                         name="dcf-call-lent", daemon=True).start()
                    else:
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
            self._run_call(*item)

    def _run_call(self, connection: _Connection, call_id: int, form: int, payload: bytes) -> None:
        if self._closing or not connection.take(call_id):
            return  # stopping: calls not started yet are dropped (the gateway sees the link close)

        def emit(kind: int, arg: int, parts: Sequence[bytes]) -> None:
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
