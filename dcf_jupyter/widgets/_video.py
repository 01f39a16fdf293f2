"""VideoStream: a video file's frames (read with OpenCV in the kernel) through a DCF function, shown as they return."""

from __future__ import annotations

import html
import io
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import ipywidgets

from ..client import Client
from ..notebook._display import boxes
from ..notebook._session import client_for
from ._frames import Frame, FrameStream
from ._replies import OVERLAYS, render_reply

LATENCY_SAMPLES = 120


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ImportError("VideoStream reads video with OpenCV: pip install opencv-python-headless "
                          "(or dcf-jupyter[widgets])") from None
    return cv2


def open_video(source: str | Path | int) -> Any:
    """An opened cv2.VideoCapture for a file, URL or camera index; a clear error when it cannot be read."""
    cv2 = _cv2()
    if isinstance(source, (str, Path)) and "://" not in str(source) and not Path(source).exists():
        raise FileNotFoundError(f"no video at {source}")
    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot read video from {source!r} (unknown format or codec?)")
    return capture


def _first_frame(capture: Any, quality: int) -> bytes:
    """The first frame of an opened video as JPEG (b"" when it has none): what the widget shows before Start."""
    cv2 = _cv2()
    ok, frame = capture.read()
    if not ok:
        return b""
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes() if ok else b""


def _draw_boxes(request: bytes, reply: bytes) -> bytes:
    """The sent JPEG with the reply's boxes drawn on it (as `dcf_jupyter.boxes` draws them), as JPEG."""
    out = io.BytesIO()
    # Full-resolution colour (no chroma subsampling) keeps thin box lines their colour.
    boxes(request, reply).save(out, "JPEG", quality=85, subsampling=0)
    return out.getvalue()


class VideoStream(ipywidgets.VBox):
    """Frames of `source` (a file, URL or camera index) through `function` over one `Invokes` stream.

    Frames are read and JPEG-encoded in the kernel, at most `window` in flight, so the video
    plays at the rate the function processes it (or at most `fps`, when given); nothing is
    dropped. Replies show in an `ipywidgets.Image`: images as they are, SSD boxes drawn on
    the sent frame, anything else as text under it. `run()` streams without a front end.
    """

    def __init__(self, function: str, source: str | Path | int, *, window: int = 2, fps: float | None = None,
                 overlay: str = "auto", loop: bool = False, quality: int = 85, max_frames: int | None = None,
                 gateway: str | None = None, client: Client | None = None, autostart: bool = False) -> None:
        if overlay not in OVERLAYS:
            raise ValueError(f"overlay must be one of {', '.join(OVERLAYS)}, not {overlay!r}")
        if not 1 <= quality <= 100:
            raise ValueError("quality is a JPEG quality from 1 to 100")
        self.function, self.source = function, source
        self.window, self.fps, self.overlay, self.loop, self.quality = window, fps, overlay, loop, quality
        self.max_frames = max_frames
        capture = open_video(source)  # fail now, in the cell that made the widget, if it cannot be read
        width = int(capture.get(_cv2().CAP_PROP_FRAME_WIDTH) or 0)
        poster = b"" if isinstance(source, int) else _first_frame(capture, quality)  # not a camera's: it is live
        capture.release()
        self._gateway, self._client = gateway, client
        # The frames at their own size, up to the cell's width, aspect kept (not stretched to the cell). Before
        # Start: the clip's first frame, or (a camera) no picture at all, never an empty image (a broken icon).
        self.image = ipywidgets.Image(value=poster, format="jpeg", layout=ipywidgets.Layout(
            width=f"{width}px" if width else "auto", max_width="100%", height="auto",
            display=None if poster else "none"))
        self.text = ipywidgets.HTML()
        self.status = ipywidgets.HTML("stopped")
        compact = {"layout": ipywidgets.Layout(width="auto", min_width="6em")}  # as the camera's buttons
        self.start_button = ipywidgets.Button(description="Start", icon="play", **compact)
        self.stop_button = ipywidgets.Button(description="Stop", icon="stop", disabled=True, **compact)
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        bar = ipywidgets.HBox([self.start_button, self.stop_button, ipywidgets.HTML(f"→ {function}"), self.status])
        super().__init__([bar, self.image, self.text])
        self.sent = self.received = 0
        self.error: str = ""
        self.last: Frame | None = None
        self.replies_in_order = True
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._arrivals: deque[float] = deque(maxlen=60)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if autostart:
            self.start()

    @property
    def running(self) -> bool:
        """True while frames are being streamed."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stats(self) -> dict[str, float]:
        """Frames sent/received, recent fps and p50 round-trip latency (ms, kernel to function and back)."""
        arrivals = list(self._arrivals)
        fps = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 and arrivals[-1] > arrivals[0] \
            else 0.0
        latency = statistics.median(self._latencies) * 1000 if self._latencies else 0.0
        return {"sent": self.sent, "received": self.received, "fps": round(fps, 2), "latency_ms": round(latency, 1)}

    def start(self) -> None:
        """Start streaming in the background (the notebook stays usable)."""
        if self.running:
            return
        self._stop.clear()
        self.error = ""
        self.sent = self.received = 0
        self._latencies.clear()
        self._arrivals.clear()
        self.start_button.disabled, self.stop_button.disabled = True, False
        self._thread = threading.Thread(target=self._pump, name=f"dcf-video-{self.function}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the frames in flight come back."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> dict[str, float]:
        """Wait until the stream ends (end of video, max_frames, stop or error); its stats."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.stats

    def run(self, timeout: float | None = None) -> dict[str, float]:
        """Stream to the end (or max_frames) and return the stats; raises if the stream failed."""
        self.start()
        stats = self.wait(timeout)
        if self.error:
            raise RuntimeError(self.error)
        return stats

    def snapshot(self) -> Any:
        """The frame the widget shows now (its boxes drawn), as a picture a saved notebook keeps (the widget's
        own view needs its kernel to show anything)."""
        from IPython.display import Image

        if self.last is None:  # the clip's first frame shows before Start, but no reply came yet
            raise ValueError("no frame yet: start() or run() the stream first")
        return Image(data=bytes(self.image.value), format=self.image.format)

    def _pump(self) -> None:
        cv2 = _cv2()
        capture = open_video(self.source)
        stream: FrameStream | None = None
        try:
            if self._client is None:
                self._client = client_for(self._gateway)
            stream = FrameStream(self._client, self.function, self._show, self._failed, window=self.window)
            frame_id, interval, next_at = 0, (1.0 / self.fps if self.fps else 0.0), time.monotonic()
            while not self._stop.is_set() and (self.max_frames is None or frame_id < self.max_frames):
                ok, frame = capture.read()
                if not ok:
                    if self.loop and frame_id:
                        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    break
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if interval:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    next_at = max(next_at + interval, time.monotonic() - interval)
                while not stream.put(frame_id, jpeg.tobytes(), timeout=0.5):
                    if self._stop.is_set() or not stream.running:
                        return
                self.sent += 1
                frame_id += 1
                self._update_status()
        except Exception as exc:  # noqa: BLE001 - shown in the widget and raised by run()
            self._failed(exc)
        finally:
            capture.release()
            if stream is not None:
                stream.close(timeout=60)
            self.start_button.disabled, self.stop_button.disabled = False, True
            self._update_status(final=True)

    def _show(self, frame: Frame) -> None:
        if self.image.layout.display == "none":
            self.image.layout.display = None  # the first reply of a camera's stream
        if self.last is not None and frame.id != self.last.id + 1:
            self.replies_in_order = False
        self.last = frame
        self.received += 1
        self._latencies.append(frame.latency_s)
        self._arrivals.append(time.monotonic())
        shown = render_reply(frame.reply, self.overlay)
        if shown.kind == "image":
            self.image.format = shown.fields["mime"].split("/")[1]
            self.image.value = shown.buffers[0]
        elif shown.kind == "boxes":
            self.image.format = "jpeg"
            self.image.value = _draw_boxes(frame.request, frame.reply)
        else:
            self.image.format = "jpeg"
            self.image.value = frame.request
            self.text.value = f"<pre>{html.escape(shown.fields['text'])}</pre>"
        if self.received % 5 == 0:
            self._update_status()

    def _failed(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.text.value = f"<pre style='color: var(--jp-error-color1, #c00)'>{html.escape(self.error)}</pre>"

    def _update_status(self, final: bool = False) -> None:
        s = self.stats
        state = "stopped · " if final else ""
        self.status.value = (f"{state}{s['fps']:.1f} fps · p50 {s['latency_ms']:.0f} ms · "
                             f"{s['received']}/{s['sent']} frames")

