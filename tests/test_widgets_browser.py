"""The streaming widgets in a real JupyterLab, in headless Chromium with a fake camera and microphone.

A real gateway runs the functions; the notebook's kernel talks to it like a user's would.
Screenshots land in tests/artifacts/ (git-ignored) for CI to keep.
"""

from __future__ import annotations

import io
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labdriver import (
    FAKE_MEDIA,
    Lab,
    NotebookPage,
    chromium_browser,
    jupyter_lab,
    playwright_driver,
    skip_module_without_browser,
    write_notebook,
)
from support import ROOT, GatewayHandle

from dcf_jupyter.definition.scaffold import init_function

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # JupyterLab in headless Chromium

skip_module_without_browser()

ARTIFACTS = ROOT / "tests" / "artifacts"
BOX = {"class": 15, "confidence": 0.9, "xmin": 100, "ymin": 120, "xmax": 300, "ymax": 400}
# Less sure, and so close that its caption, drawn where BOX's goes, would hide BOX's.
NEIGHBOUR = {"class": 12, "confidence": 0.6, "xmin": 130, "ymin": 120, "xmax": 330, "ymax": 300}
RED, BLUE = (255, 0, 0), (0, 0, 255)

BOXES_HANDLER = f"""
    class Handler:
        def __call__(self, req):
            return [{NEIGHBOUR!r}, {BOX!r}]
"""

PROBE_HANDLER = """
    import os

    class Handler:
        def __call__(self, req):
            folder = {folder!r}
            partial = os.path.join(folder, "last.partial")
            with open(partial, "wb") as out:
                out.write(req.input)
            os.replace(partial, os.path.join(folder, "last.jpg"))
            return req.input
"""


@pytest.fixture(scope="module")
def widget_gateway(gateway: GatewayHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The session gateway plus `boxes` (fixed SSD boxes), `probe` (keeps the last frame) and stft-data."""
    parent = tmp_path_factory.mktemp("widget-functions")
    received = parent / "received"
    received.mkdir()
    folders = [
        init_function("boxes", parent=parent, handler_source=textwrap.dedent(BOXES_HANDLER)),
        init_function("probe", parent=parent,
                      handler_source=textwrap.dedent(PROBE_HANDLER.format(folder=str(received)))),
    ]
    for folder in folders:
        gateway.client.deploy(folder)
    gateway.client.deploy(ROOT / "functions" / "stft", "stft-data")
    yield {"address": gateway.address, "received": received}
    for name in ("boxes", "probe", "stft-data"):
        gateway.client.delete(name)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    with jupyter_lab(root, env={"DCF_STATE_DIR": str(root / "dcf-state"), "DCF_GATEWAY": "", "DCF_TOKEN": ""}) as lab:
        yield lab


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with playwright_driver() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    with chromium_browser(playwright, *FAKE_MEDIA) as browser:
        yield browser


def open_notebook(browser: Any, lab: Lab, name: str, address: str, cells: list[str]) -> NotebookPage:
    write_notebook(lab.root / name, [f"%load_ext dcf_jupyter\n%dcf gateway {address}", *cells])
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    notebook = NotebookPage(page, lab, name)
    notebook.run_all()
    return notebook


def screenshot(notebook: NotebookPage, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    notebook.page.screenshot(path=str(ARTIFACTS / name))


def wait_received(notebook: NotebookPage, frames: int, selector: str = ".dcf-camera") -> dict[str, str]:
    """Until the widget has shown `frames` replies; its data attributes (sent, received, fps, …)."""
    notebook.page.wait_for_function(
        f"() => {{ const e = document.querySelector('{selector}'); return e && +e.dataset.received >= {frames}; }}")
    return notebook.page.eval_on_selector(selector, "e => ({...e.dataset})")


def canvas_pixel(notebook: NotebookPage, x: int, y: int) -> tuple[int, int, int]:
    rgba = notebook.page.eval_on_selector(
        ".dcf-output", f"c => Array.from(c.getContext('2d').getImageData({x}, {y}, 1, 1).data)")
    return tuple(rgba[:3])


def close_to(color: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 60) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected, strict=True))


def test_camera_streams_webcam_through_echo(browser: Any, lab: Lab, widget_gateway: dict[str, Any]) -> None:
    notebook = open_notebook(browser, lab, "camera-echo.ipynb", widget_gateway["address"], [
        "from dcf_jupyter.widgets import CameraStream\ncam = CameraStream('echo')\ncam",
    ])
    notebook.page.locator(".dcf-start").click()
    stats = wait_received(notebook, 100)
    assert int(stats["received"]) >= 100
    assert float(stats["fps"]) > 0
    shown = notebook.page.locator(".dcf-stats").inner_text()
    assert " fps · p50 " in shown and " dropped" in shown, shown
    screenshot(notebook, "camera-echo.png")
    # The notebook stays usable while it streams, and the kernel sees the browser's figures.
    notebook.page.locator(".dcf-stop").click()
    notebook.page.wait_for_function("() => document.querySelector('.dcf-camera').dataset.running === '0'")
    time.sleep(0.3)
    run_cell(notebook, "print('kernel-stats', cam.stats['received'] >= 100, cam.error == '', len(cam.last.reply) > 0)")
    assert "kernel-stats True True True" in notebook.outputs_text()
    assert notebook.console_errors == []


def run_cell(notebook: NotebookPage, source: str) -> None:
    """Append a cell with `source` at the end of the notebook and run it."""
    notebook.page.evaluate(
        """source => {
            const panel = window.jupyterapp.shell.currentWidget;
            const model = panel.content.model;
            model.sharedModel.insertCell(model.cells.length, {cell_type: 'code', source});
            panel.content.activeCellIndex = model.cells.length - 1;
            return window.jupyterapp.commands.execute('notebook:run-cell');
        }""", source)
    notebook.page.wait_for_function(
        "() => { const n = window.jupyterapp.shell.currentWidget.content;"
        " return n.widgets[n.widgets.length - 1].model.executionCount !== null; }")
    notebook.wait_idle()


def test_camera_draws_ssd_boxes_over_the_frame(browser: Any, lab: Lab, widget_gateway: dict[str, Any]) -> None:
    notebook = open_notebook(browser, lab, "camera-boxes.ipynb", widget_gateway["address"], [
        "from dcf_jupyter.widgets import CameraStream\nCameraStream('boxes', autostart=True)",
    ])
    wait_received(notebook, 10)
    notebook.page.wait_for_function("() => document.querySelector('.dcf-camera').dataset.boxes === '2'")
    screenshot(notebook, "camera-boxes.png")
    from dcf_jupyter.notebook._display import box_color

    # On the box's left edge, half way down: the stroke in the class colour, over the camera picture.
    assert canvas_pixel(notebook, BOX["xmin"], (BOX["ymin"] + BOX["ymax"]) // 2) == box_color(str(BOX["class"]))
    # Captions: the surer box's above its top left; the neighbour's, which would have covered it there, moved to
    # above its own top right. Sampled in the captions' top padding row (no text there).
    height = notebook.page.eval_on_selector(".dcf-output", "c => c.height")
    row = BOX["ymin"] - (max(12, round(height / 32)) + 6) + 1
    assert canvas_pixel(notebook, NEIGHBOUR["xmin"] + 5, row) == box_color(str(BOX["class"]))
    assert canvas_pixel(notebook, NEIGHBOUR["xmax"] - 5, row) == box_color(str(NEIGHBOUR["class"]))
    caption = notebook.page.locator(".dcf-text").inner_text()
    assert caption == ""  # boxes are drawn, not printed
    assert notebook.console_errors == []


def y4m_halves(path: Path, width: int = 640, height: int = 480, frames: int = 15) -> Path:
    """A Y4M clip whose left half is red and right half blue (BT.601 full-range YCbCr, 4:2:0)."""
    def plane(left: int, right: int, w: int, h: int) -> bytes:
        return (bytes([left]) * (w // 2) + bytes([right]) * (w // 2)) * h

    red, blue = (76, 85, 255), (29, 255, 107)
    frame = b"FRAME\n" + plane(red[0], blue[0], width, height) + plane(red[1], blue[1], width // 2, height // 2) \
        + plane(red[2], blue[2], width // 2, height // 2)
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return path


def test_known_frames_survive_the_round_trip(playwright: Any, lab: Lab, widget_gateway: dict[str, Any],
                                             tmp_path: Path) -> None:
    clip = y4m_halves(tmp_path / "halves.y4m")
    with chromium_browser(playwright, *FAKE_MEDIA, f"--use-file-for-fake-video-capture={clip}") as browser:
        notebook = open_notebook(browser, lab, "camera-halves.ipynb", widget_gateway["address"], [
            "from dcf_jupyter.widgets import CameraStream\nCameraStream('probe', autostart=True)",
        ])
        wait_received(notebook, 20)
        shown_left, shown_right = canvas_pixel(notebook, 160, 240), canvas_pixel(notebook, 480, 240)
        screenshot(notebook, "camera-halves.png")
        errors = notebook.console_errors
    assert close_to(shown_left, RED) and close_to(shown_right, BLUE), (shown_left, shown_right)
    from PIL import Image

    received = Image.open(io.BytesIO((widget_gateway["received"] / "last.jpg").read_bytes())).convert("RGB")
    assert received.size == (640, 480)
    assert close_to(received.getpixel((160, 240)), RED) and close_to(received.getpixel((480, 240)), BLUE)
    assert errors == []


def test_spectrogram_records_the_microphone(browser: Any, lab: Lab, widget_gateway: dict[str, Any]) -> None:
    notebook = open_notebook(browser, lab, "spectrogram.ipynb", widget_gateway["address"], [
        "from dcf_jupyter.widgets import Spectrogram\nspec = Spectrogram('stft-data', seconds=1)\nspec",
    ])
    notebook.page.locator(".dcf-record").click()
    notebook.page.wait_for_function("() => +document.querySelector('.dcf-spectrogram').dataset.plots >= 1")
    notebook.page.wait_for_function("() => document.querySelector('.dcf-plot img').naturalWidth > 0")
    screenshot(notebook, "spectrogram.png")
    status = notebook.page.locator(".dcf-status").inner_text()
    assert "s recording: loudest at" in status and "recording…" not in status, status
    run_cell(notebook, "print('spectrum', spec.last.db.shape[0], len(spec.last_wav) > 44, spec.error == '')")
    assert "spectrum 513 True True" in notebook.outputs_text()
    assert notebook.console_errors == []


def test_no_camera_is_one_sentence_pointing_to_videostream(playwright: Any, lab: Lab,
                                                           widget_gateway: dict[str, Any]) -> None:
    """A browser that sees no camera (the permission given, no fake device): Start says so once, and how to
    stream a clip instead; the hint about Start gives way to it."""
    with chromium_browser(playwright, "--use-fake-ui-for-media-stream") as bare:
        notebook = open_notebook(bare, lab, "no-camera.ipynb", widget_gateway["address"], [
            "from dcf_jupyter.widgets import CameraStream\nCameraStream('echo')"])
        notebook.page.locator(".dcf-camera .dcf-start").click()
        notebook.page.wait_for_function("() => document.querySelector('.dcf-camera .dcf-error').textContent")
        said = notebook.page.eval_on_selector(".dcf-camera", "e => ({error: e.querySelector('.dcf-error')"
                                              ".textContent, stats: e.querySelector('.dcf-stats').textContent})")
        screenshot(notebook, "camera-none.png")
    assert said == {"error": "No camera was found: this browser sees none. Stream a video file's frames with "
                             'VideoStream("echo", "clip.mp4") instead.', "stats": "stopped"}, said


def test_dcf_stream_magic_opens_the_camera(browser: Any, lab: Lab, widget_gateway: dict[str, Any]) -> None:
    notebook = open_notebook(browser, lab, "magic-stream.ipynb", widget_gateway["address"], [
        "%dcf stream echo --camera --start --fps 15",
    ])
    stats = wait_received(notebook, 15)
    assert int(stats["received"]) >= 15
    assert notebook.console_errors == []


LOOKS = """() => {
    const camera = document.querySelector('.dcf-camera');
    const video = document.querySelector('.widget-image');
    return {camera_height: camera.getBoundingClientRect().height,
            camera_buttons: [...camera.querySelectorAll('button')].map(b => b.classList.contains('widget-button')),
            chooser: camera.querySelector('.dcf-chooser').textContent,
            video_width: video.getBoundingClientRect().width, video_height: video.getBoundingClientRect().height,
            cell_width: document.querySelector('.jp-OutputArea-output').getBoundingClientRect().width};
}"""


def test_widgets_look_finished_before_start_and_show_media_at_its_own_size(
        browser: Any, lab: Lab, widget_gateway: dict[str, Any]) -> None:
    """Before Start the camera widget is its toolbar only (labelled camera choice, ipywidgets' buttons as the
    video widget has); a 320x240 clip shows at 320x240, not stretched to the cell; light and dark themes."""
    import cv2
    import numpy as np

    clip = lab.root / "small.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for index in range(10):
        writer.write(np.full((240, 320, 3), (40 * index) % 255, np.uint8))
    writer.release()
    notebook = open_notebook(browser, lab, "looks.ipynb", widget_gateway["address"], [
        "from dcf_jupyter.widgets import CameraStream, VideoStream\nCameraStream('echo')",
        "video = VideoStream('echo', 'small.avi')\nvideo.run()\nvideo",
        "VideoStream('echo', 'small.avi')  # not started",
    ])
    notebook.page.locator(".widget-image").nth(1).wait_for()
    # Before Start a video widget shows its clip's first frame: a picture, not an empty image's broken icon.
    poster = notebook.page.eval_on_selector_all(".widget-image", "images => images.map(i => ({complete: i.complete, "
                                                "width: i.naturalWidth, source: i.getAttribute('src') || ''}))")[1]
    assert poster["complete"] and poster["width"] == 320 and poster["source"].startswith("blob:"), poster
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        notebook.page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', "
                               f"{{theme: '{theme}'}})")
        notebook.page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{theme}'", timeout=10000)
        looks = notebook.page.evaluate(LOOKS)
        assert looks["camera_height"] < 60, f"blank space before Start: {looks}"
        assert looks["camera_buttons"] == [True, True] and looks["chooser"].startswith("camera"), looks
        assert abs(looks["video_width"] - 320) < 2 and abs(looks["video_height"] - 240) < 2, looks
        assert looks["cell_width"] > 400, looks
        screenshot(notebook, f"widgets-{theme.split()[-1].lower()}.png")
    notebook.page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                           "{theme: 'JupyterLab Light'})")
    assert notebook.console_errors == []
