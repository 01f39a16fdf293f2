"""Browser camera -> kernel -> function -> browser, at 640x480, in JupyterLab in headless Chromium.

    python benchmarks/camera.py [--seconds 20] [--window 2] [--fps 30] [--functions echo ssd detect]

Baseline, measured in the same run: the same widget with no function (the kernel sends each frame straight
back), i.e. what the browser, Jupyter server and kernel manage on their own. Then each function: `echo`
(the transport alone), `ssd` (DCF's SSD example, the real model, boxes drawn over the frame) and `detect`
(80 COCO classes, the webcam tutorial's detector). The camera
is Chromium's fake device playing a clip made from photos with people in them (the shipped VOC image and the
street scene of ../shared/data/images when present, Grace Hopper from matplotlib's sample data), so the
model finds and draws real boxes.

The round trip is what the user sees: from grabbing a camera frame to its reply drawn, split into encode
(browser), kernel (Jupyter messaging and the kernel's work), function (gateway + worker + model, as the kernel
timed it) and decode and draw (browser).
Targets: echo >= 20 fps and p50 < 100 ms (goal 30 fps / 50 ms); ssd and detect >= 15 fps and p50 < 120 ms.
`DETECT_SIZE=320 python benchmarks/camera.py --functions detect` measures detect at a smaller input (the gateway
and its workers inherit the variable).
On a 2-core machine the browser, Jupyter server, kernel, gateway and worker share the cores (Chromium alone
takes ~1.3 of them); in real use the browser runs on the user's computer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, gateway_with

sys.path.insert(0, str(ROOT / "tests"))
from labdriver import (
    FAKE_MEDIA,
    NotebookPage,
    chromium_browser,
    jupyter_lab,
    missing_browser_tools,
    playwright_driver,
    write_notebook,
    y4m_from_pictures,
)

PHASES = ("encode", "kernel", "function", "draw")
TARGETS = {"echo": (20.0, 100.0), "ssd": (15.0, 120.0), "detect": (15.0, 120.0)}  # fps at least, p50 ms below
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "images"


def camera_clip(path: Path) -> Path:
    """The fake camera's clip: photos with people, a half second each."""
    import matplotlib.cbook
    from PIL import Image

    pictures = [Image.open(SHARED_IMAGES / name) for name in ("000001.jpg", "street.jpg")
                if (SHARED_IMAGES / name).exists()]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as photo:
        pictures.append(Image.open(photo).copy())
    return y4m_from_pictures(path, pictures)


def measure(browser, lab, address: str, function: str, seconds: float, window: int, fps: float) -> dict[str, float]:
    """fps, p50 latency and its phases of one CameraStream over `seconds`, after a warm-up."""
    name = f"bench-{function or 'loopback'}.ipynb"
    write_notebook(lab.root / name, [
        f"%load_ext dcf_jupyter\n%dcf gateway {address}",
        f"from dcf_jupyter.widgets import CameraStream\nCameraStream({function!r}, window={window}, fps={fps})",
    ])
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    notebook = NotebookPage(page, lab, name)
    notebook.run_all()
    page.locator(".dcf-start").click()
    page.wait_for_function("() => +document.querySelector('.dcf-camera').dataset.received >= 30", timeout=120_000)

    def dataset() -> dict[str, str]:
        return page.eval_on_selector(".dcf-camera", "e => ({...e.dataset})")

    first, start = dataset(), time.perf_counter()
    latencies, phases, boxes = [], [], []
    while time.perf_counter() - start < seconds:
        time.sleep(1.0)
        now = dataset()
        latencies.append(float(now["latency"]))
        phases.append([float(now[k]) for k in PHASES])
        boxes.append(int(now.get("boxes", 0)))
    last, elapsed = dataset(), time.perf_counter() - start
    page.locator(".dcf-stop").click()
    page.close()
    received = int(last["received"]) - int(first["received"])
    return {"fps": received / elapsed, "p50_ms": statistics.median(latencies),
            "dropped": int(last["dropped"]) - int(first["dropped"]), "frames": received,
            "errors": len(notebook.console_errors), "boxes": max(boxes, default=0),
            **{k: statistics.median(p[i] for p in phases) for i, k in enumerate(PHASES)}}


def report(label: str, result: dict[str, float]) -> None:
    """One line per measurement: rate, p50 and where the time goes."""
    print(f"{label:28s} {result['fps']:5.1f} fps  p50 {result['p50_ms']:5.1f} ms  "
          f"(encode {result['encode']:.1f} + kernel {result['kernel']:.1f} + function {result['function']:.1f} "
          f"+ draw {result['draw']:.1f}); {result['frames']} frames, {result['dropped']} dropped, "
          f"at most {result['boxes']} boxes drawn, {result['errors']} console errors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--window", type=int, default=2, help="frames in flight")
    parser.add_argument("--fps", type=float, default=30.0, help="capture rate asked of the camera")
    parser.add_argument("--functions", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    args = parser.parse_args()
    missing = missing_browser_tools()
    if missing:
        print(f"camera benchmark needs a browser: {missing}")
        return 2
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="dcf-camera-") as tmp, gateway_with(*args.functions) as address, \
            jupyter_lab(Path(tmp), env={"DCF_STATE_DIR": str(Path(tmp) / "state")}) as lab, \
            playwright_driver() as playwright, \
            chromium_browser(playwright, *FAKE_MEDIA,
                             f"--use-file-for-fake-video-capture={camera_clip(Path(tmp) / 'people.y4m')}") as browser:
        base = measure(browser, lab, address, "", args.seconds, args.window, args.fps)
        for function in args.functions:
            results[function] = measure(browser, lab, address, function, args.seconds, args.window, args.fps)
    report("kernel loopback (baseline)", base)
    for function, result in results.items():
        report(f"{function} through the gateway", result)
    met = True
    for function, result in results.items():
        least_fps, most_ms = TARGETS[function]
        ok = result["fps"] >= least_fps and result["p50_ms"] < most_ms
        met &= ok
        print(f"{function}: ratio to baseline fps {result['fps'] / base['fps']:.2f}x, "
              f"p50 {result['p50_ms'] / base['p50_ms']:.2f}x; target (>= {least_fps:.0f} fps, "
              f"p50 < {most_ms:.0f} ms): {'met' if ok else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
