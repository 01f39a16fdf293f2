"""The detector's graph on OpenVINO's CPU runtime: about 2x TensorFlow's speed for one frame on an AVX-512 CPU with
bf16, 1.3x on AVX2 (benchmarks/detect_openvino.py; functions/detect/README.md has the figures).

OpenVINO's TensorFlow frontend reads the graph tfjs_graph builds (any_input_size applied, cut at PEAKS and SIDES)
from a GraphDef file; the result is cached as OpenVINO IR beside the SavedModel, so later replicas read it without
TensorFlow. Compiled with OpenVINO's own defaults for the CPU it runs on: bf16 where the CPU has AMX or AVX-512 BF16
(the same detections on the labelled photos as f32), f32 elsewhere.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tfjs_graph import ModelError

IR_NAME = "centernet.xml"  # with centernet.bin beside it
OUTPUT_CHANNELS = (80, 4)  # PEAKS' classes, SIDES' box sides: how the compiled model's outputs are told apart


def import_openvino() -> Any:
    """The openvino module, imported without its usage telemetry: `import openvino` sends an event to Google
    Analytics and writes a client id under ~/intel unless the `openvino_telemetry` package cannot be imported, in
    which case OpenVINO uses its own no-op stub. A function on a shared server has no business calling home."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    blocked = "openvino_telemetry" not in sys.modules
    if blocked:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes its import raise ImportError
    try:
        import openvino
    finally:
        if blocked:
            del sys.modules["openvino_telemetry"]  # others may still import it; OpenVINO has bound the stub
    return openvino


class OpenVinoModel:
    """images [B, H, W, 3] float32 -> (peaks, sides) as NumPy arrays, like the TensorFlow model; callable from
    any thread (each thread infers with its own request: a compiled model's shared one is not thread-safe)."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        channels = [output.get_partial_shape()[3].get_length() for output in compiled.outputs]
        if sorted(channels) != sorted(OUTPUT_CHANNELS) or len(channels) != 2:
            raise ModelError(f"the detector's OpenVINO model has outputs of {channels} channels, not peaks (80) "
                             "and box sides (4)")
        self._outputs = [compiled.outputs[channels.index(count)] for count in OUTPUT_CHANNELS]
        self._requests = threading.local()
        self.precision = str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        result = request.infer({0: images})
        peaks, sides = (result[output] for output in self._outputs)
        return peaks, sides


def convert(graph: Any, outputs: list[str]) -> Any:
    """An OpenVINO model of `graph` (a TensorFlow GraphDef) from its input to the tensors `outputs`, through
    OpenVINO's TensorFlow frontend (not `convert_model`, whose tool layer reports usage)."""
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("tf")
    with tempfile.TemporaryDirectory(prefix="dcf-detect-") as folder:
        frozen = Path(folder) / "graph.pb"  # the frontend reads GraphDefs from files
        frozen.write_bytes(graph.SerializeToString())
        model = frontend.load(str(frozen))
        model.override_all_outputs([model.get_place_by_tensor_name(name) for name in outputs])
        return frontend.convert(model)


def save_ir(model: Any, folder: Path) -> None:
    """Write `model` as OpenVINO IR into `folder`, atomically, as the SavedModel is: replicas starting together
    each either find a complete one or write their own."""
    openvino = import_openvino()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        openvino.save_model(model, str(staging / IR_NAME), compress_to_fp16=False)  # its default halves weights
        staging.rename(folder)
    except OSError:
        if not (folder / IR_NAME).exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load(folder: Path, graph: Callable[[], Any], outputs: list[str]) -> tuple[OpenVinoModel, str]:
    """The compiled model from the IR in `folder`, or, when there is none, converted from `graph()` and cached
    there; and how it was loaded. `graph` is called only when the IR must be made."""
    openvino = import_openvino()
    core = openvino.Core()
    started = time.perf_counter()
    ir = folder / IR_NAME
    if ir.exists():
        model, how = core.read_model(str(ir)), f"OpenVINO IR {folder}"
    else:
        model = convert(graph(), outputs)
        how = "converted from TF.js for OpenVINO"
        try:
            save_ir(model, folder)
            how += f", cached as IR {folder}"
        except OSError as exc:  # a read-only cache: run from the conversion, convert again next time
            how += f"; not cached ({exc.strerror}: {folder})"
    compiled = OpenVinoModel(core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"}))
    version = openvino.__version__.split("-")[0]
    return compiled, f"{how} (OpenVINO {version}, {compiled.precision}, {time.perf_counter() - started:.1f} s)"
