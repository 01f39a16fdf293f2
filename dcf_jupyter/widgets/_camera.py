"""CameraStream: the notebook user's webcam, through a DCF function, back into the notebook in real time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..client import Client
from ..notebook._session import client_for
from ._frames import Frame, FrameStream
from ._replies import OVERLAYS, render_reply

STATIC = Path(__file__).parent / "static"


class CameraStream(anywidget.AnyWidget):
    """Webcam frames (JPEG, captured in the browser) streamed through `function` over one `Invokes` stream.

    Replies are drawn in the widget: images as they are, SSD boxes over the frame that was
    sent, anything else as text (`overlay` forces one). At most `window` frames are in
    flight; frames captured while it is full are dropped and counted. `function=""` sends
    frames straight back from the kernel, which measures the notebook's own round trip.
    """

    _esm = STATIC / "camera.js"
    _css = STATIC / "stream.css"

    function = traitlets.Unicode("echo").tag(sync=True)
    width = traitlets.Int(640).tag(sync=True)
    height = traitlets.Int(480).tag(sync=True)
    fps = traitlets.Float(30.0).tag(sync=True)
    quality = traitlets.Float(0.8).tag(sync=True)
    overlay = traitlets.Unicode("auto").tag(sync=True)
    window = traitlets.Int(2).tag(sync=True)
    autostart = traitlets.Bool(False).tag(sync=True)
    # Reported by the front end about once a second while streaming.
    frames_sent = traitlets.Int(0).tag(sync=True)
    frames_received = traitlets.Int(0).tag(sync=True)
    frames_dropped = traitlets.Int(0).tag(sync=True)
    fps_measured = traitlets.Float(0.0).tag(sync=True)
    latency_ms = traitlets.Float(0.0).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, function: str = "echo", *, width: int = 640, height: int = 480, fps: float = 30.0,
                 quality: float = 0.8, overlay: str = "auto", window: int = 2, autostart: bool = False,
                 gateway: str | None = None, client: Client | None = None, **kwargs: Any) -> None:
        super().__init__(function=function, width=width, height=height, fps=fps, quality=quality, overlay=overlay,
                         window=window, autostart=autostart, **kwargs)
        self._gateway = gateway
        self._client = client
        self._streams: dict[str, FrameStream] = {}
        self._lock = threading.Lock()
        self.last: Frame | None = None  # the latest reply with the frame it answers
        self.on_msg(self._on_message)

    @traitlets.validate("overlay")
    def _valid_overlay(self, proposal: dict[str, Any]) -> str:
        if proposal["value"] not in OVERLAYS:
            raise traitlets.TraitError(f"overlay must be one of {', '.join(OVERLAYS)}")
        return str(proposal["value"])

    @traitlets.validate("window", "width", "height")
    def _positive(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be at least 1")
        return int(proposal["value"])

    @traitlets.validate("fps", "quality")
    def _positive_float(self, proposal: dict[str, Any]) -> float:
        name, value = proposal["trait"].name, float(proposal["value"])
        if value <= 0 or (name == "quality" and value > 1):
            raise traitlets.TraitError(f"{name} must be in (0, {'1' if name == 'quality' else 'inf'}]")
        return value

    @property
    def stats(self) -> dict[str, float]:
        """Frames sent/received/dropped, fps and p50 round-trip latency (ms) as the browser measured them."""
        return {"sent": self.frames_sent, "received": self.frames_received, "dropped": self.frames_dropped,
                "fps": self.fps_measured, "latency_ms": self.latency_ms}

    def stop(self) -> None:
        """Stop capturing in every view and end the streams."""
        for view in list(self._streams):
            self.send({"type": "stop", "view": view})
            self._end(view)

    # --- kernel side of the front end's messages ------------------------------------------

    def _on_message(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind, view = content.get("type"), str(content.get("view", ""))
        if kind == "frame":
            self._frame(view, int(content["id"]), bytes(buffers[0]) if buffers else b"")
        elif kind == "start":
            self._start(view)
        elif kind == "stop":
            self._end(view)

    def _start(self, view: str) -> None:
        self._end(view)
        self.error = ""
        if not self.function:
            self._streams[view] = _Loopback(view, self)  # type: ignore[assignment]
            self.send({"type": "started", "view": view})
            return
        try:
            if self._client is None:
                self._client = client_for(self._gateway)
            stream = FrameStream(self._client, self.function, lambda frame: self._reply(view, frame),
                                 lambda exc: self._failed(view, exc), window=self.window)
        except Exception as exc:  # noqa: BLE001 - shown in the widget, where the user is looking
            self._failed(view, exc)
            return
        self._streams[view] = stream
        self.send({"type": "started", "view": view})

    def _frame(self, view: str, frame_id: int, data: bytes) -> None:
        stream = self._streams.get(view)
        if stream is None or not stream.offer(frame_id, data):
            self.send({"type": "dropped", "view": view, "id": frame_id})

    def _reply(self, view: str, frame: Frame) -> None:
        self.last = frame
        shown = render_reply(frame.reply, self.overlay)
        # The function's share of the round trip (gateway + worker, as the kernel timed it), so the browser can
        # tell it from Jupyter's messaging.
        self.send({"type": "result", "view": view, "id": frame.id, "kind": shown.kind,
                   "function_ms": round(frame.latency_s * 1000, 2), **shown.fields}, buffers=shown.buffers)

    def _failed(self, view: str, exc: Exception) -> None:
        self.error = str(exc)
        self.send({"type": "error", "view": view, "message": f"{type(exc).__name__}: {exc}"})
        self._streams.pop(view, None)

    def _end(self, view: str) -> None:
        stream = self._streams.pop(view, None)
        if stream is not None:
            stream.close(timeout=None)


class _Loopback:
    """No function: each frame goes straight back (the baseline the camera benchmark compares with)."""

    def __init__(self, view: str, widget: CameraStream) -> None:
        self.view = view
        self.widget = widget

    def offer(self, frame_id: int, data: bytes) -> bool:
        self.widget._reply(self.view, Frame(frame_id, data, data, 0.0))
        return True

    def close(self, timeout: float | None = None) -> None:
        pass
