"""One `Invokes` bidi stream fed from a bounded window of frames, replies delivered in order on a thread.

The widgets' engine: the kernel's main thread only offers frames (never blocks on the
network), a background thread reads replies, so the notebook stays usable while it streams.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..client import Client

_END = object()


@dataclass(frozen=True)
class Frame:
    """A reply matched with the frame it answers."""

    id: int
    request: bytes
    reply: bytes
    latency_s: float  # kernel-side: offered -> reply read


class FrameStream:
    """Frames to one function over one bidi stream, at most `window` of them in flight.

    `offer()` drops a frame (returns False) when the window is full, for live sources that must
    not queue without bound; `put()` waits for room, for files that should lose nothing.
    Replies come back in request order (the gateway's stream contract) to `on_frame`;
    a failure ends the stream and goes to `on_error` once.
    """

    def __init__(self, client: Client, function: str, on_frame: Callable[[Frame], None],
                 on_error: Callable[[Exception], None] | None = None, *, window: int = 2,
                 on_end: Callable[[], None] | None = None) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.function = function
        self.window = window
        self._client = client
        self._on_frame = on_frame
        self._on_error = on_error
        self._on_end = on_end
        self._requests: queue.Queue[object] = queue.Queue()
        self._pending: collections.deque[tuple[int, bytes, float]] = collections.deque()
        self._room = threading.Semaphore(window)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name=f"dcf-stream-{function}", daemon=True)
        self._thread.start()

    @property
    def in_flight(self) -> int:
        """Frames sent and not answered yet."""
        return len(self._pending)

    @property
    def running(self) -> bool:
        """True until the stream ended (closed, failed or the function ended it)."""
        return self._thread.is_alive()

    def offer(self, frame_id: int, data: bytes) -> bool:
        """Send `data` if the window has room; False (frame dropped) when it is full or the stream ended."""
        if self._closed or not self._room.acquire(blocking=False):
            return False
        self._send(frame_id, data)
        return True

    def put(self, frame_id: int, data: bytes, timeout: float | None = None) -> bool:
        """Send `data`, waiting for room in the window; False if the stream ended or `timeout` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed and self.running:
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if wait <= 0:
                return False
            if self._room.acquire(timeout=wait):
                if self._closed:
                    self._room.release()
                    return False
                self._send(frame_id, data)
                return True
        return False

    def _send(self, frame_id: int, data: bytes) -> None:
        with self._lock:  # pending order must be the order the requests enter the stream
            self._pending.append((frame_id, data, time.perf_counter()))
            self._requests.put(data)

    def close(self, timeout: float | None = 10.0) -> None:
        """Half-close: frames in flight still get their replies, then the stream ends."""
        if not self._closed:
            self._closed = True
            self._requests.put(_END)
        if timeout is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _inputs(self) -> Iterator[bytes]:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def _read(self) -> None:
        try:
            for reply in self._client.stream(self.function, self._inputs()):
                frame_id, request, sent = self._pending.popleft()
                self._room.release()
                self._on_frame(Frame(frame_id, request, reply, time.perf_counter() - sent))
        except Exception as exc:  # noqa: BLE001 - gateway errors, and renderer bugs too, end the stream visibly
            self._fail(exc)
        finally:
            self._closed = True
            self._requests.put(_END)  # unblocks the request iterator if the call ended first
            if self._on_end is not None:
                self._on_end()

    def _fail(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)
