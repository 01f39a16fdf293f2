"""JupyterLab in headless Chromium, for the widget tests and the camera benchmark (no pytest in here).

Everything Jupyter writes lives in a temp folder; the server binds 127.0.0.1 on a free port
with a random token and is stopped with its whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import eventually

from dcf_jupyter.host.ports import free_port

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")
FAKE_MEDIA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


def chromium() -> str | None:
    """Path of a Chromium this machine has (Debian's package), or None."""
    for candidate in CHROMIUM_CANDIDATES:
        found = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
        if found:
            return found
    return None


def missing_browser_tools() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for module in ("playwright", "jupyterlab", "anywidget"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[dev]')"
    if chromium() is None:
        return "no Chromium found (apt-get install chromium)"
    return None


def skip_module_without_browser() -> None:
    """Skip the calling test module, saying why, when the browser tests cannot run here."""
    import pytest

    missing = missing_browser_tools()
    if missing:
        print(f"\nbrowser tests skipped: {missing}")
        pytest.skip(f"browser tests need Chromium, Playwright and JupyterLab: {missing}", allow_module_level=True)


@dataclass
class Lab:
    """A running JupyterLab server."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def notebook_url(self, name: str) -> str:
        """A fresh workspace per page, so pages never restore each other's open notebooks."""
        return self.url(f"lab/workspaces/w{uuid.uuid4().hex[:10]}/tree/{name}")


def _settings(settings_dir: Path) -> None:
    for name, value in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@contextlib.contextmanager
def jupyter_lab(root: Path, env: dict[str, str] | None = None, timeout: float = 60.0,
                args: list[str] | None = None) -> Iterator[Lab]:
    """JupyterLab serving `root` on 127.0.0.1 (with more command-line `args`); stopped (process group killed) on
    exit."""
    state = root / ".jupyter-state"
    dirs = {name: state / name.lower() for name in (
        "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
        "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    _settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.extension_manager=readonly", "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *(args or []),
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = state / "lab.log"
    process_env = {**os.environ, **dirs, **(env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=process_env,
                                   start_new_session=True, cwd=root)
    lab = Lab(root, port, token, process, log)
    try:
        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with urllib.request.urlopen(lab.url("api/status"), timeout=2) as response:
                return bool(response.status == 200)

        eventually(answers, timeout, "JupyterLab answers", every=0.2, show=lambda: log.read_text()[-3000:],
                   ignoring=(urllib.error.URLError, ConnectionError, TimeoutError))
        yield lab
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells with the python3 kernelspec."""
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": uuid.uuid4().hex[:8], "metadata": {}, "execution_count": None,
                   "outputs": [], "source": source} for source in cells],
    }
    path.write_text(json.dumps(notebook))
    return path


@contextlib.contextmanager
def playwright_driver() -> Iterator[Any]:
    """Playwright's sync driver; one per thread (launch every browser of a test run from it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@contextlib.contextmanager
def chromium_browser(playwright: Any, *args: str) -> Iterator[Any]:
    """Debian's Chromium through Playwright (which cannot download its own browsers here)."""
    executable = chromium()
    if executable is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=executable, args=list(args))
    try:
        yield browser
    finally:
        browser.close()


class NotebookPage:
    """One notebook open in JupyterLab, with its console messages collected."""

    def __init__(self, page: Any, lab: Lab, name: str, timeout_ms: float = 90_000) -> None:
        self.page = page
        self.console_errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        page.set_default_timeout(timeout_ms)
        page.goto(lab.notebook_url(name))
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.sessionContext"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel")
        self.wait_idle()

    def wait_idle(self) -> None:
        """Until the notebook's kernel exists and is idle."""
        self.page.wait_for_function(
            "() => { const c = window.jupyterapp.shell.currentWidget.sessionContext;"
            " return c.session && c.session.kernel && c.session.kernel.status === 'idle'; }")

    def run_all(self) -> None:
        """Run every cell and wait until the kernel is idle again."""
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_function(
            "() => { const n = window.jupyterapp.shell.currentWidget.content;"
            " return n.widgets.every(c => c.model.type !== 'code' || c.model.executionCount !== null); }")
        self.wait_idle()

    def outputs_text(self) -> str:
        """The text of every output area."""
        return "\n".join(self.page.locator(".jp-OutputArea-output").all_inner_texts())


def y4m_from_pictures(path: Path, pictures: list[Any], *, width: int = 640, height: int = 480,
                      frames_each: int = 15) -> Path:
    """A Y4M clip (Chromium's fake camera plays it in a loop) showing each PIL picture, fitted and centre-cropped
    to width x height, for `frames_each` frames: a camera that sees real scenes, with no camera."""
    from PIL import Image, ImageOps

    body = b""
    for picture in pictures:
        fitted = ImageOps.fit(picture.convert("RGB"), (width, height), Image.Resampling.BILINEAR)
        y, cb, cr = fitted.convert("YCbCr").split()  # BT.601 full range, as C420jpeg says
        chroma = [plane.resize((width // 2, height // 2), Image.Resampling.BILINEAR) for plane in (cb, cr)]
        body += (b"FRAME\n" + y.tobytes() + chroma[0].tobytes() + chroma[1].tobytes()) * frames_each
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode() + body)
    return path
