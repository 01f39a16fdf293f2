"""The tutorial notebooks, executed headless in a real kernel (nbclient), with assertions on their outputs."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

from conftest import ROOT  # noqa: E402 - after the sys.path or importorskip set-up above

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    """Run a copy of the notebook in `workdir`/notebooks (its function folders land there, not in the repo),
    with `workdir`/functions standing for the repository's examples, as "../functions" from the notebook."""
    (workdir / "notebooks").mkdir(exist_ok=True)
    if not (workdir / "functions").exists():
        (workdir / "functions").symlink_to(ROOT / "functions")
    workdir = workdir / "notebooks"
    copy = workdir / path.name
    shutil.copy(path, copy)
    notebook = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode, contains: str) -> list[dict]:
    """The outputs of the first code cell whose source contains `contains`."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and contains in cell.source:
            return cell.outputs
    raise AssertionError(f"no cell contains {contains!r}")


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_unexpected_errors(path: Path, tmp_path: Path) -> None:
    notebook = execute(path, tmp_path)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "raises-exception" not in cell.metadata.get("tags", []):
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"{cell.source!r} raised: {errors[0]['ename']}: {errors[0]['evalue']}"


def test_hello_notebook_outputs(tmp_path: Path) -> None:
    with socket.socket() as probe:
        default_taken = probe.connect_ex(("127.0.0.1", 32222)) == 0
    notebook = execute(ROOT / "notebooks" / "01-hello-dcf.ipynb", tmp_path)
    deployed = text_of(outputs(notebook, "%%dcf_function hello-dcf"))
    if not default_taken:
        assert "Started an embedded DCF gateway" in deployed
    assert "Deployed hello-dcf: 1/1 replica(s) on the local backend" in deployed
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
    drawn = [o for o in outputs(notebook, "dcf_jupyter.boxes(") if "data" in o]
    assert drawn and "image/png" in drawn[0]["data"]
    spectrum = [o for o in outputs(notebook, 'plot_spectrogram(media / "chirp.wav")') if "data" in o]
    assert spectrum and "image/png" in spectrum[0]["data"]
    assert text_of(outputs(notebook, "spectrum.db.shape")) == "'513 frequencies x 64 frames'"
    # Run All leaves the widgets' functions deployed (clean-up waits for `done = True`) and no media beside it.
    assert text_of(outputs(notebook, "done = False")) == ""
    assert sorted(p.name for p in (tmp_path / "notebooks").iterdir()) == ["02-streaming.ipynb", "dcf-functions"]
