"""The tutorial notebooks, executed headless in a real kernel (nbclient), with assertions on their outputs."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

import labdriver  # noqa: E402 - after the importorskips above
import notebook_runner  # noqa: E402
from support import ROOT  # noqa: E402

pytestmark = pytest.mark.slow  # executes the tutorials


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


ARTIFACTS = ROOT / "tests" / "artifacts" / "notebooks"


class Reviewer:
    """Keeps each executed tutorial for a person to look at: its HTML (nbconvert) and a full-page screenshot of
    that HTML in headless Chromium, in tests/artifacts/notebooks/ (CI keeps them). The browser starts on first
    use; without one, the HTML alone is kept and the reason printed."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._browser: Any = None
        self.missing = ""

    def keep(self, notebook: nbformat.NotebookNode, name: str) -> None:
        from nbconvert import HTMLExporter

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        html = ARTIFACTS / f"{Path(name).stem}.html"
        html.write_text(HTMLExporter().from_notebook_node(notebook)[0], encoding="utf-8")
        browser = self._start()
        if browser is None:
            print(f"\nno screenshot of {name}: {self.missing}")
            return
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        try:
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(html.with_suffix(".png")), full_page=True)
        finally:
            page.close()

    def _start(self) -> Any:
        if self._browser is None and not self.missing:
            self.missing = labdriver.missing_browser_tools() or ""
            if not self.missing:
                driver = self._stack.enter_context(labdriver.playwright_driver())
                self._browser = self._stack.enter_context(labdriver.chromium_browser(driver))
        return self._browser

    def close(self) -> None:
        self._stack.close()


REVIEWER = Reviewer()


@pytest.fixture(scope="module", autouse=True)
def _close_the_reviewers_browser() -> Iterator[None]:
    yield
    REVIEWER.close()


def execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    """Run the notebook (see notebook_runner.execute); a cell's error fails the test unless the cell is tagged
    raises-exception. The executed notebook is kept for review (Reviewer)."""
    notebook = notebook_runner.execute(path, workdir)
    REVIEWER.keep(notebook, path.name)
    errors = notebook_runner.unexpected_errors(notebook)
    assert not errors, "\n".join(errors)
    assert_says_each_thing_once(notebook)
    return notebook


def assert_says_each_thing_once(notebook: nbformat.NotebookNode) -> None:
    """No cell's result repeats a line the cell has already shown (a deploy's ✓ line, then the same sentence as
    its `Out`); no red text (stderr) in a cell not tagged raises-exception."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        shown = {line.strip() for output in cell.outputs if output.get("output_type") in ("display_data", "stream")
                 for line in (output.get("text") or output.get("data", {}).get("text/plain", "")).splitlines()
                 if line.strip()}
        for output in cell.outputs:
            if output.get("output_type") == "execute_result":
                result = output["data"].get("text/plain", "").strip()
                repeated = [line for line in shown if result == line or (len(result) > 20 and result in line)]
                assert not repeated, f"{cell.source[:80]!r} shows {result!r} twice"
            if "raises-exception" not in cell.metadata.get("tags", []):
                assert output.get("name") != "stderr", f"{cell.source[:80]!r} wrote to stderr: {output['text'][:300]}"


def outputs(notebook: nbformat.NotebookNode, contains: str) -> list[dict]:
    """The outputs of the first code cell whose source contains `contains`."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and contains in cell.source:
            return cell.outputs
    raise AssertionError(f"no cell contains {contains!r}")


def pictures(items: list[dict]) -> list[str]:
    """The image MIME types among the outputs, once per type per output."""
    return [mime for output in items for mime in output.get("data", {}) if mime.startswith("image/")]


def text_of(items: list[dict]) -> str:
    parts = []
    for output in items:
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
        elif output.get("output_type") == "error":
            parts.append("\n".join(output.get("traceback", [])))
    return "\n".join(parts)


def test_hello_notebook_outputs(tmp_path: Path) -> None:
    with socket.socket() as probe:
        default_taken = probe.connect_ex(("127.0.0.1", 32222)) == 0
    notebook = execute(ROOT / "notebooks" / "01-hello-dcf.ipynb", tmp_path)
    deployed = text_of(outputs(notebook, "%%dcf_function hello-dcf"))
    if not default_taken:
        assert "Started an embedded DCF gateway" in deployed
    assert "Deployed hello-dcf: 1 replica on the local backend" in deployed
    assert text_of(outputs(notebook, 'hello_dcf(b"Hello")')) == "'Hello DCF'"
    image = [o for o in outputs(notebook, "gray = grayscale") if "data" in o]
    assert image and "image/png" in image[0]["data"]
    assert text_of(outputs(notebook, "shout.stream")) == "['A', 'B', 'C']"
    failure = text_of(outputs(notebook, 'picky(b"")'))
    # Bad input (a ValueError) is its sentence alone; the traceback is one -v away.
    assert "FunctionError: ValueError: send me some bytes [INVALID_ARGUMENT]" in failure
    assert "Traceback" not in failure and "-v" in failure
    assert text_of(outputs(notebook, 'picky(b"four")')) == "4"
    assert "hello-dcf" in text_of(outputs(notebook, "%dcf list"))
    assert (tmp_path / "notebooks" / "dcf-functions" / "hello-dcf" / "config.yaml").exists()


def test_streaming_notebook_outputs(tmp_path: Path) -> None:
    notebook = execute(ROOT / "notebooks" / "02-streaming.ipynb", tmp_path)
    camera = [o for o in outputs(notebook, 'CameraStream("mirror")') if "data" in o]
    assert camera and "application/vnd.jupyter.widget-view+json" in camera[0]["data"]
    run = text_of(outputs(notebook, "video.run()"))
    assert "'sent': 75, 'received': 75" in run
    assert "'sent': 75, 'received': 75" in text_of(outputs(notebook, "balls.run()"))
    assert pictures(outputs(notebook, "dcf_jupyter.boxes(")) == ["image/jpeg"]  # drawn, saved once
    assert pictures(outputs(notebook, 'notes = recorder.analyze(media / "notes.wav")')) == ["image/png"]
    loudest = text_of(outputs(notebook, "middles = [notes.db")).split(": ")[1].split(" (")[0].split(", ")
    found = [float(hz.removesuffix(" Hz")) for hz in loudest]  # C5, E5, G5 within a bin (15.6 Hz)
    assert all(abs(hz - note) < 16 for hz, note in zip(found, (523.25, 659.25, 783.99), strict=True)), loudest
    # Run All leaves the widgets' functions deployed (clean-up waits for `done = True`) and no media beside it.
    assert text_of(outputs(notebook, "done = False")) == ""
    assert sorted(p.name for p in (tmp_path / "notebooks").iterdir()) == ["02-streaming.ipynb", "dcf-functions",
                                                                          "images"]


def test_stft_notebook_outputs(tmp_path: Path) -> None:
    notebook = execute(ROOT / "notebooks" / "03-stft.ipynb", tmp_path)
    deployed = text_of(outputs(notebook, 'dcf_jupyter.deploy(folder, "stft")'))
    assert "Deployed: stft (1 replica" in deployed and "Deployed: stft-data (1 replica" in deployed
    picture = outputs(notebook, 'dcf_jupyter.call("stft"')
    assert "characters of base64 text (a str: True), starting 'iVBORw0KGgoA'" in text_of(picture)  # a PNG header
    assert pictures(picture) == ["image/png"], "the base64 PNG displays as a picture"
    plotted = outputs(notebook, "spectrum = plot_spectrogram(chirp)")
    assert pictures(plotted) == ["image/png"]
    # One drawing for both: the function's PNG and plot_spectrogram's, alike but for their titles.
    from PIL import Image

    drawn = [Image.open(io.BytesIO(base64.b64decode(next(o["data"]["image/png"] for o in cell if "data" in o))))
             for cell in (picture, plotted)]
    assert drawn[0].size == drawn[1].size, [d.size for d in drawn]
    import numpy as np

    below_title = [np.asarray(d.convert("RGB"), float)[d.height // 10:] for d in drawn]
    assert np.abs(below_title[0] - below_title[1]).mean() < 0.5, "the two spectrograms are drawn differently"
    compared = text_of(outputs(notebook, "signal.stft(x, rate"))
    difference = float(compared.split("max |function - scipy| = ")[1].split(" dB")[0])
    assert difference < 1e-3, compared  # the reply carries float32 dB: equal to its precision
    stereo = text_of(outputs(notebook, "both = plot_spectrogram(stereo)"))
    found = stereo.split("mid-file: ")[1].split(", the bins")[0].split(" Hz and ")
    low, high = float(found[0]), float(found[1].removesuffix(" Hz"))
    assert abs(low - 440) < 44 and abs(high - 1000) < 44, stereo  # within a bin (44100 / 1024 Hz) of each tone
    assert "bins are 43.1 Hz apart" in stereo, stereo
    rising = compared.split("rises from ")[1].split(" Hz (second frame) to ")
    assert float(rising[0]) < 400 and float(rising[1].split(" Hz")[0]) > 3400, compared  # the sweep, start to end
    assert "bins are 15.6 Hz apart" in compared, compared
    widget = [o for o in outputs(notebook, 'Spectrogram("stft-data"') if "data" in o]
    assert widget and "application/vnd.jupyter.widget-view+json" in widget[0]["data"]
    assert text_of(outputs(notebook, "done = False")) == ""


def test_text_streaming_notebook_outputs(tmp_path: Path) -> None:
    notebook = execute(ROOT / "notebooks" / "04-text-streaming.ipynb", tmp_path)
    live = outputs(notebook, "typewriter.call_stream(")
    final = [o for o in live if o.get("output_type") in ("display_data", "update_display_data")]
    assert final and final[-1]["data"]["text/markdown"].startswith("Streams let a slow function show its work")
    summary = text_of(live)
    pieces = int(summary.split(" pieces;")[0].split()[-1])
    first = int(summary.split("the first after ")[1].split(" ms")[0])
    last = int(summary.split("the last after ")[1].split(" ms")[0])
    assert pieces == 13 and last - first >= 400, "pieces arrive while the handler works, not all at the end"
    assert text_of(outputs(notebook, 'typewriter("folded into one reply")')) == "'folded into one reply'"
    moods = text_of(outputs(notebook, "for reply in mood.stream(")).splitlines()
    assert [line.split()[0] for line in moods] == ["happy", "sad", "neutral", "happy", "sad"]
    import ast

    paced = text_of(outputs(notebook, "pace.stream(")).splitlines()
    finished, returned = (ast.literal_eval(line[line.index("["):]) for line in paced)
    assert returned == list(range(9)), paced  # the order the lines went out...
    assert sorted(finished) == returned and finished != returned, paced  # ...though they finished out of order
    assert text_of(outputs(notebook, "done = False")) == ""


def test_shell_notebook_outputs(tmp_path: Path) -> None:
    notebook = execute(ROOT / "notebooks" / "05-from-the-shell.ipynb", tmp_path)
    started = text_of(outputs(notebook, "dcf gateway start --detach"))
    assert "DCF gateway started" in started and "env: DCF_GATEWAY=127.0.0.1:" in started, started
    assert "Directory: hello-dcf is created." in text_of(outputs(notebook, "dcf function init hello-dcf"))
    written = text_of(outputs(notebook, "!cat hello-dcf/config.yaml"))
    assert "image: hello-dcf" in written and "class Handler:" in written, written
    built = text_of(outputs(notebook, "dcf function build"))
    assert "Building function (hello-dcf) ..." in built and "Base image: python:" in built, built
    run = text_of(outputs(notebook, "echo Hello | dcf function run hello-dcf"))
    assert "Handler reply: Hello DCF" in run, run
    assert run.index("hello-dcf was sent 6 bytes") < run.index("Handler reply") < run.index("[dcf-worker] stopping")
    assert "Deployed: hello-dcf" in text_of(outputs(notebook, "!dcf function deploy -f hello-dcf/config.yaml"))
    assert text_of(outputs(notebook, "!echo Hello | dcf function call hello-dcf")).strip() == "Hello DCF"
    assert "hello-dcf" in text_of(outputs(notebook, "!dcf function list"))
    assert "hello-dcf was sent 6 bytes" in text_of(outputs(notebook, "!dcf function log hello-dcf")), "the call"
    # %%bash's output comes in pieces that may cut a line: joined as they came.
    over_http = "".join(o.get("text", "") for o in outputs(notebook, "dcf gateway address --http"))
    if "curl is not installed here" not in over_http:
        lines = [line for line in over_http.splitlines() if line.strip()]
        refused = json.loads(lines[0])
        assert refused["code"] == "UNAUTHENTICATED" and "--open-loopback" in refused["message"], over_http
        assert lines[1] == "Hello DCF" and '"Name": "hello-dcf"' in lines[2], over_http
        counted = next(line for line in lines if line.startswith("dcf_calls_total{"))
        assert 'function="hello-dcf"' in counted and 'status="OK"' in counted and counted.endswith(" 2.0"), counted
    secret = text_of(outputs(notebook, "!dcf function deploy -f greeter/config.yaml"))
    assert "Hello DCF, from a function holding a 23-character key" in secret, secret
    assert "weather-api  API_KEY" in secret and "demo-key-not-a-real-one" not in secret, secret
    assert "Deleted: secret weather-api" in secret, secret
    docker = text_of(outputs(notebook, "--backend docker"))
    assert "Hello DCF" in docker or "no docker backend: when it started, no Docker daemon answers" in docker, docker
    assert "Base image: nvidia/cuda:" in text_of(outputs(notebook, "gpu-hello/config.yaml"))
    cleaned = text_of(outputs(notebook, "!dcf function delete hello-dcf"))
    assert "Deleted: hello-dcf" in cleaned and "Stopped the gateway" in cleaned, cleaned


def test_object_detection_notebook_outputs(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="functions/ssd runs on TensorFlow (the [tf] extra, in [dev])")
    notebook = execute(ROOT / "notebooks" / "06-object-detection.ipynb", tmp_path)
    deployed = text_of(outputs(notebook, "dcf_jupyter.deploy(Path"))
    assert "Deployed: ssd (1 replica" in deployed and ("on the GPU" in deployed or "on the CPU" in deployed)
    street = outputs(notebook, 'found = dcf_jupyter.call("ssd", street)')
    people = [line for line in text_of(street).splitlines() if line.startswith("person 0.")]
    assert len(people) >= 3, text_of(street)
    shares = [float(line.split(": ")[-1].removesuffix("% of the photo")) for line in people]
    assert max(shares) < 80, people  # boxes around the people in the street, not around the photo
    assert pictures(street) == ["image/jpeg"], "the boxes are drawn on the photo, saved once"
    batch = text_of(outputs(notebook, "batch = json.dumps("))
    assert "people per photo: {'street.jpg': 4, 'person.jpg': 1, '000001.jpg': 1, 'dog.jpg': 0}" in batch, batch
    assert "The batch saves " in batch or "No gain here: " in batch, batch  # the figures, with why
    labelled = outputs(notebook, 'labelled = dcf_jupyter.call("detect", request)')
    kinds = text_of(labelled).split(" kinds of thing: ")
    assert int(kinds[0]) >= 4 and "person" in kinds[1], kinds  # "7 kinds of thing: 9 person, 3 car, ..."
    assert pictures(labelled) == ["image/jpeg"], "detect's boxes are drawn with their labels"
    assert pictures(outputs(notebook, 'dog = Path("images/dog.jpg")')) == ["image/jpeg"]
    strip = [o["data"]["image/jpeg"] for o in outputs(notebook, "people(street)") if "image/jpeg" in o.get("data", {})]
    assert strip, "people's reply is a picture"
    from PIL import Image

    crops = Image.open(io.BytesIO(base64.b64decode(strip[0])))  # asked detect through the mesh, cropped them
    # At least the two people detect is surest of (0.68 each here; a third at 0.55), about 77 px wide at 160 high.
    assert crops.height == 160 and crops.width >= 140, crops.size
    assert "30 of 30 frames came back" in text_of(outputs(notebook, "stats = video.run()"))
    assert pictures(outputs(notebook, "video.snapshot()")) == ["image/jpeg"], "the video's last frame is kept"
    streams = text_of(outputs(notebook, "import threading"))
    assert "Deployed: detect-single" in streams and "two streams of 90 frames into one replica: " in streams, streams
    assert " frames a second one frame at a time, " in streams and " batched (" in streams, streams
    mapped = outputs(notebook, 'found = list(client.map("detect", dataset))')
    counted = re.search(r"(\d+) images, (\d+) things found", text_of(mapped))
    assert counted and int(counted[1]) == 4 + 30 and int(counted[2]) >= 30, text_of(mapped)  # a person a frame
    assert pictures(mapped) == ["image/png"], "the chart of what was found"
    camera = [o for o in outputs(notebook, 'CameraStream("detect")') if "data" in o]
    assert camera and "application/vnd.jupyter.widget-view+json" in camera[0]["data"]
    assert text_of(outputs(notebook, "done = False")) == ""
    size = len(nbformat.writes(notebook).encode())
    assert size < 1.5e6, f"the executed notebook is {size / 1e6:.2f} MB"


def test_every_notebook_opens_with_dcf_what_it_teaches_and_the_extra_it_needs() -> None:
    import re

    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        opening = cells[0].source
        assert "(https://github.com/DigitalCompanion-KETI/DCFramework) (DCF)" in opening, path.name
        assert "**After this notebook** you can " in opening, path.name
        named = re.search(r"\*\*Needs\*\* `pip install 'dcf-jupyter\[(\w+)\]'`", opening)
        assert named, path.name
        asked = re.search(r"%dcf needs [^\n]*", cells[1].source)
        if asked:  # the extra the notebook's own check names, when it lacks a module
            extra = re.search(r"--extra (\w+)", asked.group(0))
            assert named.group(1) == (extra.group(1) if extra else "tutorials"), (path.name, asked.group(0))
        assert "It needs nothing but this notebook" not in opening, path.name


def test_every_notebook_has_its_output_test() -> None:
    source = Path(__file__).read_text()
    untested = [p.name for p in NOTEBOOKS if f'"{p.name}"' not in source]
    assert not untested, f"notebooks without an output test here: {untested}"


@pytest.mark.timeout(600)
def test_scale_out_notebook_outputs(tmp_path: Path) -> None:
    notebook = execute(ROOT / "notebooks" / "07-scale-out.ipynb", tmp_path)
    local = text_of(outputs(notebook, 'local = dcf_jupyter.function("slow"'))
    assert "slow: " in local and re.search(r"from 1 replica\b", local) and "from 2 replicas" in local, local
    assert "(data)" not in local, "function() binds no name, so its messages name none"
    # 50 ms calls from 8 clients: one replica does ~20/s, two ~40/s (the sleep, not this machine, sets it).
    assert float(local.split("2 replicas give ")[1].split("x")[0]) >= 1.5, local
    gpus = text_of(outputs(notebook, "SEES_ITS_GPU = "))
    assert "GPUs" in gpus and "Deployed: gpu-first" in gpus and "it sees CUDA_VISIBLE_DEVICES=" in gpus, gpus
    if "GPUs: none" in gpus:  # no GPU here: both run on the CPU, and say so
        assert "Deployed: gpu-second (1 replica on the local backend; no GPU to give here, so on the CPU)" in gpus
    naps = text_of(outputs(notebook, "NAPS = "))
    assert "after 3 s without a call: Idle, idle (0 replicas)" in naps, naps
    assert "now: 1/1 (autoscaled 0-2); 1 cold start, the last " in naps, naps
    assert "[dcf-gateway] no call for 2s: scaled from 1 to 0 replicas" in naps, naps
    assert "[dcf-gateway] a call arrived at 0 replicas: started 1 in " in naps, naps
    assert "Deleted: nap" in text_of(outputs(notebook, 'for name in ("slow", "slow-ray", "nap")'))
    on_ray = text_of(outputs(notebook, 'on_ray = dcf_jupyter.function("slow-ray"'))
    placed = text_of(outputs(notebook, "WHERE = "))
    try:
        import ray  # noqa: F401 - only whether it is installed
    except ImportError:
        assert "Ray is not installed here" in on_ray
        return
    # The gateway's own Ray (a supervised `ray start --head`, tried again when it times out) starts here.
    assert re.search(r"from 1 replica\b", on_ray) and "from 2 replicas" in on_ray, on_ray
    assert float(on_ray.split("2 replicas give ")[1].split("x")[0]) >= 1.5, on_ray
    import shutil

    if shutil.which("nvidia-smi") is None:  # the refusal, said as the expected outcome it is here
        assert "where was not placed, as expected on a machine without a GPU: " in placed, placed
        assert "no node of the Ray cluster can place a replica" in placed, placed
    # Two nodes: the GPU function on the node with the GPU, the 3 one-CPU replicas over both.
    two = text_of(outputs(notebook, 'NODE = """'))
    assert "on-gpu runs on the second node" in two, two
    spread = two.split("spread's 40 calls were answered on ")[1].splitlines()[0]
    assert "the head (" in spread and "the second node (" in spread, two
    assert "Stopped the gateway" in two, two
