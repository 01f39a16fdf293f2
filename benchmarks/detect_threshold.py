"""detect's confidence threshold, measured: precision, recall and F1 on photos with published labels.

    python benchmarks/detect_threshold.py [--sizes 512 768]

Runs functions/detect's Handler in-process over benchmarks/data/voc2007 (PASCAL VOC 2007 test photos with their
ground truth; scoring in benchmarks/_labelled.py) once per size at a low threshold, then scores every threshold
from 0.15 to 0.5. The default (0.3) is the best F1 at the default size; the README of functions/detect says so.
"""

from __future__ import annotations

import argparse
import base64
import json

from _harness import ROOT, cpu
from _labelled import FOLDER, labelled, score

from dcf_jupyter.worker.handler import Request, load_handler

THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def detections(size: int) -> dict[str, list[dict[str, object]]]:
    """detect's boxes down to 0.1 confidence for each labelled photo, at `size`."""
    handler = load_handler(ROOT / "functions" / "detect" / "src")
    found = {}
    for name in labelled():
        photo = base64.b64encode((FOLDER / name).read_bytes()).decode()
        found[name] = handler(Request(json.dumps({"image": photo, "threshold": 0.1, "size": size}).encode()))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    args = parser.parse_args()
    objects = sum(len(found) for found in labelled().values())
    print(f"{cpu()}; {len(labelled())} photos, {objects} labelled objects (IoU >= 0.5, VOC's classes)")
    for size in args.sizes:
        found = detections(size)
        scores = {threshold: score(found, threshold) for threshold in THRESHOLDS}
        best = max(scores, key=lambda threshold: scores[threshold].f1)
        print(f"size {size}: threshold  right wrong missed  precision  recall    F1")
        for threshold, result in scores.items():
            mark = "  <- best F1" if threshold == best else ""
            print(f"           {threshold:9.2f} {result.right:6d} {result.wrong:5d} {result.missed:6d} "
                  f"{result.precision:10.2f} {result.recall:7.2f} {result.f1:5.2f}{mark}")


if __name__ == "__main__":
    main()
