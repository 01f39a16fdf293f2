"""detect's model on OpenVINO's runtime vs TensorFlow, in-process, same images, same canvas, in one run.

    python benchmarks/detect_openvino.py [--calls 30] [--rounds 3] [--size 512]

Loads functions/detect's model as the function does on each runtime (centernet.load_tensorflow, load_openvino:
OpenVINO's default precision, bf16 on CPUs with AMX or AVX-512 BF16, f32 elsewhere), plus OpenVINO forced to f32,
and prints the median ms an image (batch of 1, and a batch of 8), speed as a multiple of TensorFlow's, each one's
load time from a warm cache, and whether each finds TensorFlow's detections (above 0.3: the same classes, and how
far its boxes and scores are from them). Run it on each CPU kind (AVX-512, AVX2). On an AVX-512 CPU,
ONEDNN_MAX_CPU_ISA=AVX2 stands in for an AVX2-only one (both runtimes' oneDNN kernels keep to AVX2; OpenVINO's
default precision still reads bf16 from the CPU's own flags, cannot run then and is left out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _detection import images
from _harness import ROOT, cpu, median_seconds

sys.path.insert(0, str(ROOT / "functions" / "detect" / "src"))
import centernet  # detect's own modules, beside its handler
import openvino_model
from image_request import fit_image

if not centernet.openvino_installed():
    sys.exit("benchmarks/detect_openvino.py needs OpenVINO: pip install openvino")

Model = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def median_ms(run: Callable[[], object], calls: int) -> float:
    """Median milliseconds of `calls` runs, after a warm-up (a runtime's second call may still be setting up)."""
    run()
    return median_seconds(run, calls) * 1e3


def detections(peaks: np.ndarray, sides: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """The rows detect would reply (x1, y1, x2, y2 in canvas pixels, score, class index), as detect decodes them."""
    rows = centernet.decode(peaks, sides)
    return centernet.suppress(rows[rows[:, 4] >= threshold])


def difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float] | None:
    """The largest box-corner (pixels) and score difference between two images' detections, or None when they do
    not find the same classes in the same order."""
    if len(ours) != len(theirs) or not np.array_equal(ours[:, 5], theirs[:, 5]):
        return None
    if not len(ours):
        return 0.0, 0.0
    return float(np.max(np.abs(ours[:, :4] - theirs[:, :4]))), float(np.max(np.abs(ours[:, 4] - theirs[:, 4])))


def loaded(cache: Path) -> dict[str, Model]:
    """Each runtime's model, loaded twice (the first fills `cache`; the second, timed, is a replica's start)."""
    ov = openvino_model.import_openvino()
    models: dict[str, Model] = {}
    for label, load in (("TensorFlow", centernet.load_tensorflow), ("OpenVINO default", centernet.load_openvino)):
        load(centernet.MODEL_DIR, cache)
        started = time.perf_counter()
        model, how = load(centernet.MODEL_DIR, cache)
        try:
            model(np.zeros((1, 512, 512, 3), np.float32))
        except RuntimeError as error:  # what detect's "auto" falls back to TensorFlow from
            print(f"  {label}: cannot run here ({str(error).strip().splitlines()[-1]}); left out")
            continue
        models[label] = model
        print(f"  {label}: {time.perf_counter() - started:.2f} s to load from the cache and answer a first "
              f"image ({how})")
    ir = centernet.openvino_path(centernet.saved_model_path(centernet.MODEL_DIR, cache)) / openvino_model.IR_NAME
    core = ov.Core()
    models["OpenVINO f32"] = openvino_model.OpenVinoModel(core.compile_model(
        core.read_model(str(ir)), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    canvases = [fit_image(picture, args.size).pixels for picture in images()]
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for pixels in canvases:
        by_shape.setdefault(pixels.shape, []).append(pixels)
    shape, same_shape = max(by_shape.items(), key=lambda item: len(item[1]))
    one = same_shape[0][None]
    eight = np.stack([same_shape[i % len(same_shape)] for i in range(8)])

    print(f"{cpu()}:")
    with tempfile.TemporaryDirectory(prefix="detect-openvino-") as cache:
        runtimes = loaded(Path(cache))
    tensorflow = runtimes["TensorFlow"]
    for label, run in list(runtimes.items())[1:]:
        differences = []
        for pixels in canvases:
            tf_out, ov_out = tensorflow(pixels[None]), run(pixels[None])
            differences.append(difference(detections(tf_out[0][0], tf_out[1][0]),
                                          detections(ov_out[0][0], ov_out[1][0])))
        if None in differences:
            print(f"  {label}: other detections than TensorFlow's above 0.3 on {differences.count(None)} of "
                  f"{len(canvases)} images")
        else:
            print(f"  {label}: TensorFlow's detections above 0.3 on all {len(canvases)} images, boxes within "
                  f"{max(d[0] for d in differences if d):.1f} px, scores within "
                  f"{max(d[1] for d in differences if d):.3f}")
    results: dict[tuple[str, int], list[float]] = {(label, size): [] for label in runtimes for size in (1, 8)}
    for _ in range(args.rounds):  # alternating, so drift hits all alike
        for label, run in runtimes.items():
            results[label, 1].append(median_ms(lambda run=run: run(one), args.calls))
            results[label, 8].append(median_ms(lambda run=run: run(eight), max(3, args.calls // 4)) / 8)
    best = {key: min(values) for key, values in results.items()}
    print(f"detect's CenterNet on a {shape[1]}x{shape[0]} canvas, ms an image, best of {args.rounds} rounds:")
    for size in (1, 8):
        tf_ms = best["TensorFlow", size]
        figures = ", ".join(f"{label} {best[label, size]:.1f} ({tf_ms / best[label, size]:.2f}x)"
                            for label in runtimes)
        print(f"  batch of {size}: {figures}")


if __name__ == "__main__":
    main()
