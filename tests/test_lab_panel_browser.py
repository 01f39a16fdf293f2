"""The DCF panel in a real JupyterLab (the prebuilt extension the package installs), in headless Chromium:
a function deployed from a shell shows up, scales, logs, answers the quick call and is deleted; "Deploy DCF
function" from the file browser; a notebook's %%dcf_function under its kernel's own gateway; the status bar.
Screenshots land in tests/artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labdriver import (
    Lab,
    NotebookPage,
    chromium_browser,
    playwright_driver,
    skip_module_without_browser,
    write_notebook,
)
from support import ROOT, GatewayHandle, with_keys

from dcf_jupyter.definition.scaffold import init_function

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # JupyterLab in headless Chromium

skip_module_without_browser()

ARTIFACTS = ROOT / "tests" / "artifacts"
PRINTER = '''
class Handler:
    def __call__(self, req):
        print(f"printed: {req.text}", flush=True)
        return f"got {req.text}"
'''
PANEL = "#dcf-panel"
# Lumino keeps a menu's hidden items in the page (display: none): only a visible one is offered.
DEPLOY_ITEM = '.lm-Menu-itemLabel:text-is("Deploy DCF function")'


@pytest.fixture(scope="module")
def lab(panel_lab: Lab) -> Lab:
    return panel_lab


@pytest.fixture(scope="module")
def page(lab: Lab) -> Iterator[NotebookPage]:
    """JupyterLab with a notebook whose kernel runs a gateway of its own (it ignores the shared one)."""
    write_notebook(lab.root / "mine.ipynb", [
        'import os\nos.environ.pop("DCF_GATEWAY", None)  # this notebook keeps its functions to itself',
        "%load_ext dcf_jupyter",
        "%%dcf_function nbfn\nclass Handler:\n    def __call__(self, req):\n        return 'from the notebook'",
    ])
    with playwright_driver() as driver, chromium_browser(driver) as browser:
        notebook = NotebookPage(browser.new_page(viewport={"width": 1440, "height": 900}), lab, "mine.ipynb")
        notebook.run_all()
        notebook.page.locator('.lm-TabBar-tab[data-id="dcf-panel"]').click()
        notebook.page.wait_for_selector(f"{PANEL} .dcf-gateway")
        yield notebook


def shot(notebook: NotebookPage, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    notebook.page.screenshot(path=str(ARTIFACTS / name))


def row(notebook: NotebookPage, gateway: str, name: str) -> Any:
    return notebook.page.locator(f'{PANEL} [data-gateway="{gateway}"] tr[data-function="{name}"]')


def test_a_function_deployed_from_a_shell_is_managed_in_the_panel(page: NotebookPage, panel_gateway: GatewayHandle,
                                                                  tmp_path: Path) -> None:
    folder = init_function("printer", parent=tmp_path, handler_source=PRINTER)
    panel_gateway.client.deploy(folder)
    deployed = time.monotonic()
    printer = row(page, "shared", "printer")
    printer.wait_for(timeout=5000)
    assert time.monotonic() - deployed < 2.0, "a deploy shows in the panel within 2 s"
    page.page.wait_for_function(
        "() => document.querySelector('.dcf-status-item')?.dataset.functions === '2'", timeout=5000)  # + nbfn
    assert page.page.locator(".dcf-status-item").inner_text().startswith("DCF ●")

    printer.locator(".dcf-scale-up").click()
    page.page.wait_for_function(
        """() => document.querySelector('#dcf-panel [data-gateway="shared"] tr[data-function="printer"] .dcf-ready')
                 ?.textContent === '2/2'""", timeout=30000)

    printer.locator(".dcf-name").click()
    page.page.locator(f"{PANEL} .dcf-call-input").fill("hello panel")
    page.page.locator(f"{PANEL} button.dcf-call").click()
    page.page.wait_for_function(
        "() => document.querySelector('#dcf-panel .dcf-reply-text')?.textContent === 'got hello panel'")
    page.page.wait_for_function(
        "() => (document.querySelector('#dcf-panel .dcf-log')?.textContent || '').includes('printed: hello panel')",
        timeout=10000)
    shot(page, "panel-function.png")

    printer.locator(".dcf-delete").click()
    page.page.locator(".jp-Dialog .jp-mod-warn").click()
    printer.wait_for(state="detached", timeout=10000)
    assert [f.name for f in panel_gateway.client.list()] == []
    assert page.console_errors == []


def test_deploy_from_the_file_browser(page: NotebookPage, panel_gateway: GatewayHandle) -> None:
    """Right-click echo/config.yaml (and then the echo folder itself) -> "Deploy DCF function"."""
    page.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    page.page.locator('.jp-DirListing-item[title^="Name: echo"]').dblclick()
    page.page.locator('.jp-DirListing-item[title^="Name: config.yaml"]').click(button="right")
    page.page.locator('.lm-Menu-itemLabel:text-is("Deploy DCF function")').click()
    page.page.locator(".jp-toast-message", has_text="Deployed: echo").wait_for(timeout=60000)
    assert [f.name for f in panel_gateway.client.list()] == ["echo"]
    page.page.locator('.jp-DirListing-item[title^="Name: src"]').click(button="right")
    page.page.locator(".lm-Menu").first.wait_for()
    assert page.page.locator(f"{DEPLOY_ITEM}:visible").count() == 0, "not offered on a folder that is no function"
    page.page.keyboard.press("Escape")
    page.page.locator('.jp-BreadCrumbs-home').click()
    page.page.locator('.jp-DirListing-item[title^="Name: echo"]').click(button="right")
    assert page.page.locator(f"{DEPLOY_ITEM}:visible").count() == 1, "offered on a function folder"
    page.page.keyboard.press("Escape")
    page.page.locator('.lm-TabBar-tab[data-id="dcf-panel"]').click()
    row(page, "shared", "echo").wait_for(timeout=5000)
    shot(page, "panel-deployed-from-file-browser.png")
    panel_gateway.client.delete("echo")
    assert page.console_errors == []


def test_a_notebooks_function_shows_under_its_kernels_gateway(page: NotebookPage) -> None:
    block = page.page.locator(f'{PANEL} .dcf-gateway:has(.dcf-gateway-label:text-is("mine.ipynb"))')
    block.wait_for(timeout=10000)
    block.locator('tr[data-function="nbfn"]').wait_for(timeout=5000)
    assert block.locator(".dcf-dot").get_attribute("class") == "dcf-dot dcf-up"
    shot(page, "panel-kernel-gateway.png")
    assert page.console_errors == []


MEASURE = """name => {
    const panel = document.querySelector('#dcf-panel');
    const found = panel?.querySelector(`[data-gateway="shared"] tr[data-function="${name}"]`);
    if (!found) { return null; }
    const edge = panel.getBoundingClientRect();
    const buttons = [...found.querySelectorAll('button')].map(button => {
        const box = button.getBoundingClientRect();
        return {name: button.className, shown: box.width > 0 && box.height > 0 && box.bottom <= window.innerHeight,
                inside: box.left >= edge.left && box.right <= edge.right};
    });
    return {buttons, scrolls_sideways: panel.scrollWidth > panel.clientWidth, width: edge.width};
}"""


def test_every_action_shows_at_the_default_sidebar_width_in_light_and_dark(page: NotebookPage,
                                                                         panel_gateway: GatewayHandle,
                                                                         tmp_path: Path) -> None:
    """1440x900, the sidebar as JupyterLab opens it: a function with a long name, image and backend keeps its -, +
    and x in view (the details are cut, not the actions), without sideways scrolling; light and dark themes."""
    long_row_name = "a-function-with-a-rather-long-descriptive-name"
    folder = init_function(long_row_name, parent=tmp_path, handler_source=PRINTER)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("image: a-function-with",
                                                 "image: registry.example.com/team/a-function-with"))
    panel_gateway.client.deploy(folder)
    try:
        long_row = row(page, "shared", "a-function-with-a-rather-long-descriptive-name")
        long_row.wait_for(timeout=5000)
        for theme in ("JupyterLab Light", "JupyterLab Dark"):
            page.page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', "
                               f"{{theme: '{theme}'}})")
            page.page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{theme}'", timeout=10000)
            # Measured in one go in the page (the panel redraws its rows every second).
            seen = page.page.evaluate(MEASURE, "a-function-with-a-rather-long-descriptive-name")
            assert seen is not None and len(seen["buttons"]) == 3, seen
            for button in seen["buttons"]:
                assert button["shown"] and button["inside"], f"cut off or hidden at the sidebar's width: {seen}"
            assert not seen["scrolls_sideways"], seen
            long_row.locator(".dcf-scale-up").click()  # clickable where it shows
            shot(page, f"panel-{theme.split()[-1].lower()}.png")
        ready_is = """([name, ready]) => document.querySelector(
            `#dcf-panel [data-gateway="shared"] tr[data-function="${name}"] .dcf-ready`)?.textContent === ready"""
        page.page.wait_for_function(ready_is, arg=[long_row_name, "3/3"], timeout=60000)
        # Two quick clicks are two steps: the second lands on the row drawn before the first one's answer.
        long_row.locator(".dcf-scale-down").evaluate("button => { button.click(); button.click(); }")
        page.page.wait_for_function(ready_is, arg=[long_row_name, "1/1"], timeout=60000)
    finally:
        page.page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                           "{theme: 'JupyterLab Light'})")
        panel_gateway.client.delete("a-function-with-a-rather-long-descriptive-name")
    assert page.console_errors == []


def test_the_panel_shows_each_gpu_and_what_each_replica_holds(page: NotebookPage, panel_gateway: GatewayHandle,
                                                              tmp_path: Path) -> None:
    """The panel gateway has two declared GPUs: a `gpu: "0.5"` function's replicas show their device and share in
    their row, and each GPU's line says how much of it is held and (in its tooltip) by whom."""
    folder = init_function("half-gpu", parent=tmp_path, handler_source=PRINTER)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("gpu: ''", "gpu: '0.5'"))
    gpu_zero = page.page.locator(f'{PANEL} [data-gateway="shared"] .dcf-gpu[data-gpu="0"]')
    assert gpu_zero.inner_text().startswith("GPU 0 declared GPU · free")
    panel_gateway.client.deploy(folder)
    try:
        half = row(page, "shared", "half-gpu")
        half.wait_for(timeout=5000)
        page.page.wait_for_function(
            """() => document.querySelector('#dcf-panel [data-gateway="shared"] .dcf-gpu[data-gpu="0"]')
                     ?.textContent === 'GPU 0 declared GPU · 0.5 held'""", timeout=5000)
        assert half.locator(".dcf-function-gpus").inner_text() == "GPU 0 (0.5)"
        assert "half-gpu replica 0 (0.5)" in (gpu_zero.get_attribute("title") or "")
        half.locator(".dcf-scale-up").click()  # the second half of GPU 0
        page.page.wait_for_function(
            """() => document.querySelector('#dcf-panel [data-gateway="shared"] .dcf-gpu[data-gpu="0"]')
                     ?.textContent === 'GPU 0 declared GPU · held'""", timeout=30000)
        assert half.locator(".dcf-function-gpus").inner_text() == "GPU 0 (0.5), GPU 0 (0.5)"
        shot(page, "panel-gpus.png")
    finally:
        panel_gateway.client.delete("half-gpu")
    page.page.wait_for_function(
        """() => document.querySelector('#dcf-panel [data-gateway="shared"] .dcf-gpu[data-gpu="0"]')
                 ?.textContent === 'GPU 0 declared GPU · free'""", timeout=5000)
    assert page.console_errors == []


BOXES = '''
class Handler:
    def __call__(self, req):
        return [{"class": "15", "label": "person", "confidence": 0.9, "xmin": 300, "ymin": 100, "xmax": 420,
                 "ymax": 380}]
'''


def test_a_detection_drawn_in_the_sidebar_opens_at_full_size(page: NotebookPage, panel_gateway: GatewayHandle,
                                                             tmp_path: Path) -> None:
    """The quick call's Call button is the panel's primary button; boxes drawn on the photo sent (~220 px wide in
    the sidebar, captions unreadable) open at the photo's own size in a main-area tab."""
    panel_gateway.client.deploy(init_function("boxer", parent=tmp_path, handler_source=BOXES))
    photo = ROOT / "notebooks" / "images" / "street.jpg"
    try:
        boxer = row(page, "shared", "boxer")
        boxer.wait_for(timeout=5000)
        boxer.locator(".dcf-name").click()
        call = page.page.locator(f"{PANEL} button.dcf-call")
        assert "jp-mod-accept" in (call.get_attribute("class") or ""), "a primary button, not a greyed-out one"
        page.page.locator(f"{PANEL} .dcf-call-file").set_input_files(str(photo))
        call.click()
        drawn = page.page.locator(f"{PANEL} canvas.dcf-boxes.dcf-openable")
        drawn.wait_for(timeout=10000)
        assert drawn.bounding_box()["width"] < 400  # the sidebar's copy
        drawn.click()
        opened = page.page.locator(".jp-MainAreaWidget .dcf-picture-tab img.dcf-picture")
        opened.wait_for(timeout=10000)
        page.page.wait_for_function("() => document.querySelector('.dcf-picture-tab img')?.naturalWidth > 0")
        from PIL import Image

        width = Image.open(photo).width
        seen = opened.evaluate("i => ({natural: i.naturalWidth, shown: i.getBoundingClientRect().width})")
        assert seen["natural"] == width and abs(seen["shown"] - width) < 2, seen  # at its own size
        assert page.page.locator(".lm-DockPanel .lm-TabBar-tab.lm-mod-current").inner_text().startswith("boxer: ")
        shot(page, "panel-picture.png")
        page.page.keyboard.press("Alt+w")  # close the tab again (JupyterLab's close-tab shortcut)
    finally:
        panel_gateway.client.delete("boxer")
    assert page.console_errors == []


def test_a_scheduled_function_says_when_it_runs_next(page: NotebookPage, panel_gateway: GatewayHandle,
                                                     tmp_path: Path) -> None:
    """A function with a `schedule:` says in its row when it runs next, on a line of its own that wraps instead of
    being cut at the default sidebar width; its tooltip says on what schedule."""
    folder = with_keys(init_function("nightly", parent=tmp_path, handler_source=PRINTER), schedule="0 30 3 * * *")
    panel_gateway.client.deploy(folder)
    try:
        nightly = row(page, "shared", "nightly")
        nightly.wait_for(timeout=5000)
        said = nightly.locator(".dcf-scaling")
        said.wait_for(timeout=5000)
        assert re.fullmatch(r"next run \d\d:30:00", said.inner_text()), said.inner_text()
        sizes = said.evaluate("line => [line.scrollWidth, line.clientWidth, line.scrollHeight, line.clientHeight]")
        assert sizes[0] <= sizes[1] and sizes[2] <= sizes[3], f"cut at the default sidebar width: {sizes}"
        assert "schedule: 0 30 3 * * *" in (said.get_attribute("title") or "")
        shot(page, "panel-schedule.png")
    finally:
        panel_gateway.client.delete("nightly")
    assert page.console_errors == []
