"""The widgets' kernel side against a real gateway: the frame stream, reply rendering, VideoStream, spectra.

What needs JavaScript runs in tests/test_widgets_browser.py; here everything runs without a browser.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import wave
from pathlib import Path
from typing import Any

import pytest
from support import FUNCTIONS, GatewayHandle

from dcf_jupyter.client import Client

np = pytest.importorskip("numpy", reason="the widgets need NumPy: pip install -e '.[widgets]'")
pytest.importorskip("anywidget", reason="the widgets are anywidgets: pip install -e '.[widgets]'")
cv2 = pytest.importorskip("cv2", reason="the widgets read video with OpenCV: pip install -e '.[widgets]'")
from dcf_jupyter.widgets._frames import Frame, FrameStream  # noqa: E402 - after the skips
from dcf_jupyter.widgets._replies import render_reply  # noqa: E402

SLOW_ECHO = """
    import time

    class Handler:
        def __call__(self, req):
            time.sleep(0.05)
            return req.input
"""
FAILS_ON_THIRD = """
    class Handler:
        def __init__(self):
            self.calls = 0

        def __call__(self, req):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("frame three is bad")
            return req.input
"""
BOXES = """
    class Handler:
        def __call__(self, req):
            return [{"class": 12, "confidence": 0.75, "xmin": 10, "ymin": 20, "xmax": 200, "ymax": 180}]
"""


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:] = color[::-1]  # OpenCV is BGR
    ok, data = cv2.imencode(".jpg", frame)
    assert ok
    return data.tobytes()


def write_clip(path: Path, frames: int = 40, size: tuple[int, int] = (320, 240)) -> Path:
    """An MJPG clip whose frame i has the grey level 5*i in its top-left corner (left half red, right blue)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, : size[0] // 2] = (0, 0, 255)
        frame[:, size[0] // 2:] = (255, 0, 0)
        frame[:32, :32] = 5 * i
        writer.write(frame)
    writer.release()
    return path


def corner_level(data: bytes) -> int:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return round(float(image[4:28, 4:28].mean()))


class Collector:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.errors: list[Exception] = []
        self.ended = threading.Event()

    def frame(self, frame: Frame) -> None:
        self.frames.append(frame)

    def error(self, exc: Exception) -> None:
        self.errors.append(exc)


def stream_of(client: Client, name: str, collector: Collector, window: int) -> FrameStream:
    return FrameStream(client, name, collector.frame, collector.error, window=window, on_end=collector.ended.set)


# --- the frame stream ---------------------------------------------------------------------


def test_frame_stream_keeps_order_and_loses_nothing_when_waiting(gateway: GatewayHandle) -> None:
    collector = Collector()
    stream = stream_of(gateway.client, "echo", collector, window=3)
    for i in range(200):
        assert stream.put(i, f"frame {i}".encode(), timeout=10)
    stream.close()
    assert collector.ended.wait(10)
    assert [f.id for f in collector.frames] == list(range(200))
    assert all(f.reply == f.request == f"frame {f.id}".encode() for f in collector.frames)
    assert collector.errors == []


def test_frame_stream_drops_instead_of_queueing_when_the_function_is_slow(gateway: GatewayHandle,
                                                                          make_function: Any) -> None:
    gateway.client.deploy(make_function("slow-echo", SLOW_ECHO))
    try:
        collector = Collector()
        stream = stream_of(gateway.client, "slow-echo", collector, window=2)
        offered = [stream.offer(i, b"x") for i in range(50)]  # a burst, far faster than 20 frames/s
        assert offered[:2] == [True, True] and offered.count(True) == 2
        assert stream.in_flight <= 2
        stream.close()
        assert collector.ended.wait(10)
        assert [f.id for f in collector.frames] == [0, 1]
    finally:
        gateway.client.delete("slow-echo")


def test_frame_stream_reports_a_handler_error_once_and_ends(gateway: GatewayHandle, make_function: Any) -> None:
    gateway.client.deploy(make_function("third-fails", FAILS_ON_THIRD))
    try:
        collector = Collector()
        stream = stream_of(gateway.client, "third-fails", collector, window=1)
        for i in range(5):
            if not stream.put(i, b"ok", timeout=5):
                break
        assert collector.ended.wait(10)
        assert [f.id for f in collector.frames] == [0, 1]
        assert len(collector.errors) == 1 and "frame three is bad" in str(collector.errors[0])
        assert not stream.offer(99, b"late")  # an ended stream takes nothing
    finally:
        gateway.client.delete("third-fails")


def test_frame_stream_to_an_unknown_function_fails_clearly(gateway: GatewayHandle) -> None:
    collector = Collector()
    stream = stream_of(gateway.client, "no-such-function", collector, window=2)
    stream.offer(0, b"x")
    assert collector.ended.wait(10)
    assert len(collector.errors) == 1 and "no-such-function" in str(collector.errors[0])


# --- rendering replies -----------------------------------------------------------------------


def test_replies_render_by_content() -> None:
    picture = jpeg((255, 0, 0))
    assert render_reply(picture).kind == "image" and render_reply(picture).buffers == [picture]
    dcf_style = render_reply(base64.b64encode(picture))  # DCF's example handlers return base64 text
    assert dcf_style.kind == "image" and dcf_style.buffers == [picture]
    boxes = render_reply(json.dumps([{"class": "15", "confidence": "0.5", "xmin": "1", "ymin": 2, "xmax": 3,
                                      "ymax": 4}]).encode())
    assert boxes.kind == "boxes"
    assert boxes.fields["boxes"][0]["caption"] == "person 0.50"
    assert (boxes.fields["boxes"][0]["x0"], boxes.fields["boxes"][0]["y1"]) == (1.0, 4.0)
    assert render_reply(b"[]").kind == "boxes"  # nothing detected: the frame, no boxes
    assert render_reply(b'{"fps": 3}').kind == "text"
    assert render_reply(b"\xff\x00 not utf-8").kind == "text"
    assert render_reply(picture, "text").kind == "text"
    assert render_reply(b"x" * 10_000).fields["text"].endswith("(10000 bytes)")
    with pytest.raises(ValueError, match="overlay must be one of"):
        render_reply(b"", "sparkles")


# --- VideoStream --------------------------------------------------------------------------------


def test_video_stream_sends_every_frame_in_order_and_shows_replies(gateway: GatewayHandle, tmp_path: Path) -> None:
    from dcf_jupyter.widgets import VideoStream

    video = VideoStream("echo", write_clip(tmp_path / "clip.avi"), client=gateway.client)
    stats = video.run(timeout=60)
    assert stats["sent"] == stats["received"] == 40
    assert video.replies_in_order
    assert corner_level(video.last.reply) == pytest.approx(5 * 39, abs=6)  # the last frame came back last
    shown = cv2.imdecode(np.frombuffer(video.image.value, np.uint8), cv2.IMREAD_COLOR)
    assert shown[120, 80].tolist() == pytest.approx([0, 0, 255], abs=40)  # left half red (BGR)
    assert shown[120, 240].tolist() == pytest.approx([255, 0, 0], abs=40)
    assert "40/40 frames" in video.status.value


def test_video_stream_draws_boxes_on_the_sent_frame(gateway: GatewayHandle, make_function: Any,
                                                    tmp_path: Path) -> None:
    from dcf_jupyter.notebook._display import box_color
    from dcf_jupyter.widgets import VideoStream

    gateway.client.deploy(make_function("dog-boxes", BOXES))
    try:
        video = VideoStream("dog-boxes", write_clip(tmp_path / "clip.avi", frames=5), client=gateway.client)
        assert video.run(timeout=60)["received"] == 5
    finally:
        gateway.client.delete("dog-boxes")
    from PIL import Image

    shown = Image.open(io.BytesIO(video.image.value)).convert("RGB")
    edge = shown.getpixel((11, 100))  # on the box's left edge (drawn inside it)
    assert all(abs(a - b) < 40 for a, b in zip(edge, box_color("12"), strict=True)), edge
    # The last frame as a saved notebook keeps it: one JPEG, the boxes drawn.
    kept = video.snapshot()
    assert kept.data == bytes(video.image.value) and kept.format == "jpeg" and kept._repr_png_() is None


def test_a_video_snapshot_before_any_frame_says_so(tmp_path: Path) -> None:
    from dcf_jupyter.widgets import VideoStream

    with pytest.raises(ValueError, match="no frame yet"):
        VideoStream("echo", write_clip(tmp_path / "clip.avi", frames=2)).snapshot()


def test_video_stream_errors_are_clear(gateway: GatewayHandle, make_function: Any, tmp_path: Path) -> None:
    from dcf_jupyter.widgets import VideoStream

    with pytest.raises(FileNotFoundError, match="no video at"):
        VideoStream("echo", tmp_path / "missing.mp4", client=gateway.client)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="OpenCV cannot read video"):
        VideoStream("echo", tmp_path / "junk.mp4", client=gateway.client)
    gateway.client.deploy(make_function("third-fails", FAILS_ON_THIRD))
    try:
        video = VideoStream("third-fails", write_clip(tmp_path / "clip.avi"), client=gateway.client, window=1)
        with pytest.raises(RuntimeError, match="frame three is bad"):
            video.run(timeout=60)
        assert "frame three is bad" in video.text.value
        assert not video.running
    finally:
        gateway.client.delete("third-fails")


# --- spectrograms ------------------------------------------------------------------------------


def tone_wav(hz: float, seconds: float = 1.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stft_gateway(gateway: GatewayHandle) -> Any:
    gateway.client.deploy(FUNCTIONS / "stft", "stft-data")
    gateway.client.deploy(FUNCTIONS / "stft", "stft")
    yield gateway
    gateway.client.delete("stft-data")
    gateway.client.delete("stft")


def test_spectrum_of_a_tone_peaks_at_the_tone(stft_gateway: GatewayHandle, tmp_path: Path) -> None:
    from dcf_jupyter.widgets._spectrogram import Spectrum, analyze

    (tmp_path / "tone.wav").write_bytes(tone_wav(1000.0))
    spectrum = analyze(tmp_path / "tone.wav", client=stft_gateway.client)
    assert isinstance(spectrum, Spectrum)
    assert spectrum.db.shape == (len(spectrum.freqs), len(spectrum.times)) and len(spectrum.freqs) == 513
    assert spectrum.peak_hz == pytest.approx(1000.0, abs=16_000 / 1024)
    assert spectrum._repr_png_().startswith(b"\x89PNG")
    picture = analyze(tone_wav(440.0), function="stft", client=stft_gateway.client)
    assert picture.format == "png" and picture.data.startswith(b"\x89PNG")


def test_spectrogram_widget_shows_a_wav_file(stft_gateway: GatewayHandle, tmp_path: Path) -> None:
    from dcf_jupyter.widgets import Spectrogram

    (tmp_path / "a440.wav").write_bytes(tone_wav(440.0))
    widget = Spectrogram(client=stft_gateway.client)
    spectrum = widget.analyze(tmp_path / "a440.wav")
    assert widget.image.startswith(b"\x89PNG") and widget.plots == 1
    assert "a440.wav: loudest at" in widget.status
    assert spectrum.peak_hz == pytest.approx(440.0, abs=16_000 / 1024)
    with pytest.raises(Exception, match=r"(?i)wav"):
        widget.analyze(b"definitely not a wav file")
    assert "wav" in widget.error.lower() and widget.plots == 1


# --- the magic ---------------------------------------------------------------------------------


def test_dcf_stream_magic_makes_the_widgets(gateway: GatewayHandle, tmp_path: Path) -> None:
    from IPython import get_ipython
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import start_ipython

    from dcf_jupyter.widgets import CameraStream, VideoStream

    shell = start_ipython() or get_ipython()  # one test shell per process: test_magics may have started it
    shell.run_line_magic("load_ext", "dcf_jupyter")
    shell.run_line_magic("dcf", f"gateway {gateway.address}")
    camera = shell.run_line_magic("dcf", "stream echo --camera --fps 12 --overlay boxes")
    assert isinstance(camera, CameraStream) and (camera.function, camera.fps, camera.overlay) == ("echo", 12, "boxes")
    clip = write_clip(tmp_path / "clip.avi", frames=3)
    video = shell.run_line_magic("dcf", f"stream echo --video {clip}")
    assert isinstance(video, VideoStream)
    assert video.run(timeout=30)["received"] == 3
    with pytest.raises(UsageError, match="no video at"):
        shell.run_line_magic("dcf", f"stream echo --video {tmp_path / 'nope.mp4'}")
    with pytest.raises(UsageError, match=r"give --camera or --video PATH \(one of them\)"):
        shell.run_line_magic("dcf", "stream echo")
    with pytest.raises(UsageError, match="window must be at least 1"):
        shell.run_line_magic("dcf", "stream echo --camera --window 0")


def test_the_camera_places_captions_where_boxes_does(tmp_path: Path) -> None:
    """camera.js places captions in the browser (it measures the text there); the same rules as
    dcf_jupyter.boxes(), checked on random crowds of boxes by running its function in Node."""
    import json
    import random
    import shutil
    import subprocess

    from dcf_jupyter.notebook._display import place_captions

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed here: camera.js's caption placement is checked where it is")
    source = (Path(__file__).resolve().parent.parent / "dcf_jupyter" / "widgets" / "static" / "camera.js").read_text()
    placement = source[source.index("function overlap"):source.index("function drawBoxes")]
    rng = random.Random(7)
    cases = []
    for _ in range(60):
        boxes = []
        for _ in range(rng.randint(1, 12)):
            x0, y0 = rng.randint(-20, 600), rng.randint(-20, 440)
            boxes.append((float(x0), float(y0), float(x0 + rng.randint(5, 300)), float(y0 + rng.randint(5, 300))))
        sizes = [(float(rng.randint(30, 120)), float(rng.randint(14, 30))) for _ in boxes]
        cases.append({"boxes": boxes, "sizes": sizes, "bounds": (640.0, 480.0)})
    script = tmp_path / "place.js"
    script.write_text(placement + """
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map(({boxes, sizes, bounds}) => placeCaptions(
    boxes.map(([x0, y0, x1, y1]) => ({x0, y0, x1, y1})), sizes, bounds[0], bounds[1]))));
""")
    ran = subprocess.run([node, str(script)], input=json.dumps(cases), capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    in_browser = json.loads(ran.stdout)
    in_python = [[list(spot) for spot in place_captions(case["boxes"], case["sizes"], case["bounds"])]
                 for case in cases]
    assert in_browser == in_python
