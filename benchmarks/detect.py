"""detect (CenterNet, 80 COCO classes) through the gateway vs in-process, on the same images; single and batched.

    python benchmarks/detect.py [--calls 30] [--batch 8]

Targets: <= 30 ms an image in-process on a 2-core machine, gateway <= 1.10x in-process. Needs TensorFlow; the
weights ship in functions/detect/model. The camera -> detect -> browser figures: benchmarks/camera.py.
"""

from __future__ import annotations

from _detection import compare

if __name__ == "__main__":
    compare("detect", __doc__.splitlines()[0], in_process_target_ms=30.0)
