"""detect's model on OpenVINO's runtime vs TensorFlow, in-process, same images, same canvas, in one run.

    pip install openvino && python benchmarks/detect_openvino.py [--calls 30] [--rounds 3] [--size 512]

OpenVINO converts the TensorFlow function functions/detect runs (its SavedModel, made from its TF.js weights on
first load). Prints the
median ms an image (batch of 1, and a batch of 8) for TensorFlow and two OpenVINO builds (f32, and OpenVINO's
default precision: bf16 on CPUs with AMX or AVX-512 BF16), speed as a multiple of TensorFlow's, and whether each
finds TensorFlow's detections (above 0.3: the same classes, and how far its boxes and scores are from them).
Run it on each CPU kind (AVX-512, AVX2): #44 keeps OpenVINO only where it is clearly faster.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from _detection import images
from _harness import ROOT, cpu, median_seconds

sys.path.insert(0, str(ROOT / "functions" / "detect" / "src"))
from centernet import CenterNetDetector, decode, suppress  # detect's own modules, beside its handler
from image_request import fit_image

try:
    import openvino as ov
except ImportError:
    sys.exit("benchmarks/detect_openvino.py needs OpenVINO: pip install openvino")


def median_ms(run: Callable[[], object], calls: int) -> float:
    """Median milliseconds of `calls` runs, after two warm-ups (a runtime's second call may still be setting up)."""
    run()
    return median_seconds(run, calls) * 1e3


def detections(peaks: np.ndarray, sides: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """The rows detect would reply (x1, y1, x2, y2 in canvas pixels, score, class index), as detect decodes them."""
    rows = decode(peaks, sides)
    return suppress(rows[rows[:, 4] >= threshold])


def difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float] | None:
    """The largest box-corner (pixels) and score difference between two images' detections, or None when they do
    not find the same classes in the same order."""
    if len(ours) != len(theirs) or not np.array_equal(ours[:, 5], theirs[:, 5]):
        return None
    if not len(ours):
        return 0.0, 0.0
    return float(np.max(np.abs(ours[:, :4] - theirs[:, :4]))), float(np.max(np.abs(ours[:, 4] - theirs[:, 4])))


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

    detector = CenterNetDetector()  # makes the SavedModel cache when there is none
    tf_model = detector._model  # the loaded SavedModel, called as detect_batch calls it
    started = time.perf_counter()
    # From the SavedModel's function (it has no serving signature for OpenVINO to find on its own). Two builds:
    # f32 as TensorFlow computes, and OpenVINO's default precision, which is bf16 on CPUs with AMX or AVX-512 BF16.
    function = tf_model.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.float32))
    started = time.perf_counter()
    converted = ov.convert_model(function)
    core = ov.Core()
    builds = {"OpenVINO f32": core.compile_model(converted, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                                     "INFERENCE_PRECISION_HINT": "f32"}),
              "OpenVINO default": core.compile_model(converted, "CPU", {"PERFORMANCE_HINT": "LATENCY"})}
    precision = builds["OpenVINO default"].get_property("INFERENCE_PRECISION_HINT")
    print(f"OpenVINO {ov.__version__}: converted and compiled twice in {time.perf_counter() - started:.1f} s; its "
          f"default precision on this CPU: {precision}")

    def with_tf(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        peaks, sides = tf_model(tf.constant(batch))
        return np.asarray(peaks), np.asarray(sides)

    def with_openvino(compiled: ov.CompiledModel) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            result = compiled(batch)
            peaks, sides = (np.asarray(result[output]) for output in compiled.outputs)
            return peaks, sides
        return run

    runtimes = {"TensorFlow": with_tf, **{label: with_openvino(build) for label, build in builds.items()}}
    for label, run in list(runtimes.items())[1:]:
        differences = []
        for pixels in canvases:
            tf_out, ov_out = with_tf(pixels[None]), run(pixels[None])
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
    print(f"detect's CenterNet on a {shape[1]}x{shape[0]} canvas, {cpu()}, ms an image, best of {args.rounds} "
          "rounds:")
    for size in (1, 8):
        tf_ms = best["TensorFlow", size]
        figures = ", ".join(f"{label} {best[label, size]:.1f} ({tf_ms / best[label, size]:.2f}x)"
                            for label in runtimes)
        print(f"  batch of {size}: {figures}")


if __name__ == "__main__":
    main()
