"""The DCF example's model: SSD300-VGG16 for PASCAL VOC (21 classes), in Keras, loading the original
`ssd_300_vgg.ckpt` of balancap/SSD-Tensorflow (point $SSD_CHECKPOINT at it; nothing is downloaded).

Layers are named after the checkpoint's TF1 scopes (ssd_300_vgg/conv4/conv4_3/weights -> conv4_3.kernel,
see `checkpoint_variables`). Anchors, box decoding and NMS follow the original's numpy post-processing:
localisations are (x, y, w, h) offsets scaled by the prior variances, boxes (ymin, xmin, ymax, xmax)
normalised to the image, per-class greedy NMS at IoU 0.45.
"""

from __future__ import annotations

import math

import numpy as np

SCOPE = "ssd_300_vgg"
NUM_CLASSES = 21
IMAGE_SIZE = 300
FEATURE_LAYERS = ("block4", "block7", "block8", "block9", "block10", "block11")
FEATURE_SHAPES = ((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1))
ANCHOR_SIZES = ((21.0, 45.0), (45.0, 99.0), (99.0, 153.0), (153.0, 207.0), (207.0, 261.0), (261.0, 315.0))
ANCHOR_RATIOS = ((2, 0.5), (2, 0.5, 3, 1 / 3), (2, 0.5, 3, 1 / 3), (2, 0.5, 3, 1 / 3), (2, 0.5), (2, 0.5))
ANCHOR_STEPS = (8, 16, 32, 64, 100, 300)
ANCHOR_OFFSET = 0.5
PRIOR_SCALING = (0.1, 0.1, 0.2, 0.2)
RGB_MEANS = np.array([123.0, 117.0, 104.0], dtype=np.float32)
VGG_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))  # (block, convs, filters)
EXTRA_BLOCKS = (("block8", 256, 512, 2), ("block9", 128, 256, 2), ("block10", 128, 256, 1),
                ("block11", 128, 256, 1))  # (name, 1x1 filters, 3x3 filters, stride)


def anchors_per_location(layer: int) -> int:
    """Anchor boxes at each position of feature layer `layer`."""
    return len(ANCHOR_SIZES[layer]) + len(ANCHOR_RATIOS[layer])


# --- anchors, decoding, selection (numpy) ----------------------------------------------


def layer_anchors(layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y [H, W, 1], x [H, W, 1], h [A], w [A]) of a feature layer's anchors, relative to the image."""
    rows, cols = FEATURE_SHAPES[layer]
    step, sizes, ratios = ANCHOR_STEPS[layer], ANCHOR_SIZES[layer], ANCHOR_RATIOS[layer]
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y = ((y + ANCHOR_OFFSET) * step / IMAGE_SIZE)[..., None]
    x = ((x + ANCHOR_OFFSET) * step / IMAGE_SIZE)[..., None]
    h = [sizes[0], math.sqrt(sizes[0] * sizes[1])] + [sizes[0] / math.sqrt(r) for r in ratios]
    w = [sizes[0], math.sqrt(sizes[0] * sizes[1])] + [sizes[0] * math.sqrt(r) for r in ratios]
    return y, x, np.array(h, np.float32) / IMAGE_SIZE, np.array(w, np.float32) / IMAGE_SIZE


def all_anchors() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The anchors of every feature layer (8,732 boxes in all)."""
    return [layer_anchors(i) for i in range(len(FEATURE_LAYERS))]


def decode_boxes(localisations: np.ndarray, anchors: tuple[np.ndarray, ...]) -> np.ndarray:
    """Boxes (ymin, xmin, ymax, xmax) from one layer's [..., H, W, A, 4] (x, y, w, h) offsets."""
    y, x, h, w = anchors
    cx = localisations[..., 0] * w * PRIOR_SCALING[0] + x
    cy = localisations[..., 1] * h * PRIOR_SCALING[1] + y
    width = w * np.exp(localisations[..., 2] * PRIOR_SCALING[2])
    height = h * np.exp(localisations[..., 3] * PRIOR_SCALING[3])
    return np.stack([cy - height / 2, cx - width / 2, cy + height / 2, cx + width / 2], axis=-1)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (ymin, xmin, ymax, xmax) box with each of `boxes`."""
    ymin = np.maximum(box[0], boxes[:, 0])
    xmin = np.maximum(box[1], boxes[:, 1])
    ymax = np.minimum(box[2], boxes[:, 2])
    xmax = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ymax - ymin, 0, None) * np.clip(xmax - xmin, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms(classes: np.ndarray, scores: np.ndarray, boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression (inputs sorted by score, descending)."""
    keep = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if keep[i]:
            later = np.arange(i + 1, len(scores))
            overlap = iou(boxes[i], boxes[later]) > threshold
            keep[later[overlap & (classes[later] == classes[i])]] = False
    return np.nonzero(keep)[0]


def select(probabilities: list[np.ndarray], boxes: list[np.ndarray], threshold: float, nms_threshold: float = 0.45,
           top_k: int = 400, keep_top: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes, scores, boxes) for one image from per-layer softmax [H, W, A, C] and boxes [H, W, A, 4]:
    every non-background class above `threshold`, the best `top_k`, clipped, NMS, the best `keep_top`."""
    found_classes, found_scores, found_boxes = [], [], []
    for probs, layer_boxes in zip(probabilities, boxes, strict=True):
        flat = probs.reshape(-1, probs.shape[-1])[:, 1:]  # column 0 is the background
        anchor, cls = np.nonzero(flat > threshold)
        found_classes.append(cls + 1)
        found_scores.append(flat[anchor, cls])
        found_boxes.append(layer_boxes.reshape(-1, 4)[anchor])
    classes, scores, kept = (np.concatenate(v) for v in (found_classes, found_scores, found_boxes))
    order = np.argsort(-scores, kind="stable")[:top_k]
    classes, scores, kept = classes[order], scores[order], np.clip(kept[order], 0.0, 1.0)
    survivors = nms(classes, scores, kept, nms_threshold)[:keep_top]
    return classes[survivors], scores[survivors], kept[survivors]


# --- the network (Keras) ------------------------------------------------------------------


def build_model(num_classes: int = NUM_CLASSES):  # keras.Model, imported lazily
    """SSD300-VGG16: input mean-subtracted RGB [n, 300, 300, 3]; outputs per feature layer the class
    probabilities [n, H, W, A, num_classes], then the localisations [n, H, W, A, 4]."""
    import keras
    from keras import layers, ops

    class L2Normalization(layers.Layer):
        """Normalise each position's channel vector, then scale per channel (learned `gamma`)."""

        def __init__(self, scale: float = 20.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def build(self, input_shape):
            self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],),
                                         initializer=keras.initializers.Constant(self.scale))

        def call(self, x):
            norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
            return x / norm * self.gamma

    def conv(filters: int, kernel: int, name: str, **options):
        return layers.Conv2D(filters, kernel, padding=options.pop("padding", "same"), activation="relu",
                             name=name, **options)

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = inputs
    features = {}
    for block, convs, filters in VGG_BLOCKS:
        for i in range(1, convs + 1):
            x = conv(filters, 3, f"conv{block}_{i}")(x)
        if block == 4:
            features["block4"] = L2Normalization(20.0, name="block4_box_l2norm")(x)
        if block < 5:
            x = layers.MaxPool2D(2, 2, padding="same", name=f"pool{block}")(x)
    x = layers.MaxPool2D(3, 1, padding="same", name="pool5")(x)
    x = conv(1024, 3, "conv6", dilation_rate=6)(x)
    x = features["block7"] = conv(1024, 1, "conv7")(x)
    for name, squeeze, filters, stride in EXTRA_BLOCKS:
        x = conv(squeeze, 1, f"{name}_conv1x1")(x)
        if stride == 2:  # the original pads by 1 then convolves VALID, as Caffe did
            x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        x = features[name] = conv(filters, 3, f"{name}_conv3x3", strides=stride, padding="valid")(x)
    probabilities, localisations = [], []
    for i, name in enumerate(FEATURE_LAYERS):
        rows, cols = FEATURE_SHAPES[i]
        count = anchors_per_location(i)
        loc = layers.Conv2D(count * 4, 3, padding="same", name=f"{name}_box_conv_loc")(features[name])
        cls = layers.Conv2D(count * num_classes, 3, padding="same", name=f"{name}_box_conv_cls")(features[name])
        localisations.append(layers.Reshape((rows, cols, count, 4), name=f"{name}_loc")(loc))
        logits = layers.Reshape((rows, cols, count, num_classes), name=f"{name}_logits")(cls)
        probabilities.append(layers.Softmax(axis=-1, name=f"{name}_probabilities")(logits))
    return keras.Model(inputs, probabilities + localisations, name=SCOPE)


def checkpoint_variables(model) -> dict:
    """The original checkpoint's variable names, each with the model variable it loads into."""
    names = {}

    def conv(scope: str, layer: str) -> None:
        target = model.get_layer(layer)
        names[f"{SCOPE}/{scope}/weights"] = target.kernel
        names[f"{SCOPE}/{scope}/biases"] = target.bias

    for block, convs, _ in VGG_BLOCKS:
        for i in range(1, convs + 1):
            conv(f"conv{block}/conv{block}_{i}", f"conv{block}_{i}")
    conv("conv6", "conv6")
    conv("conv7", "conv7")
    for name, *_ in EXTRA_BLOCKS:
        conv(f"{name}/conv1x1", f"{name}_conv1x1")
        conv(f"{name}/conv3x3", f"{name}_conv3x3")
    for name in FEATURE_LAYERS:
        conv(f"{name}_box/conv_loc", f"{name}_box_conv_loc")
        conv(f"{name}_box/conv_cls", f"{name}_box_conv_cls")
    names[f"{SCOPE}/block4_box/L2Normalization/gamma"] = model.get_layer("block4_box_l2norm").gamma
    return names


def load_checkpoint(model, path: str) -> None:
    """Load a TF1 checkpoint with the original variable names; ValueError naming what is missing or misshapen."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
    except (ValueError, tf.errors.OpError) as exc:
        raise ValueError(f"cannot read the checkpoint {path!r}: {str(exc).splitlines()[0]}") from None
    shapes = reader.get_variable_to_shape_map()
    wanted = checkpoint_variables(model)
    missing = [name for name in wanted if name not in shapes]
    misshapen = [f"{name} is {tuple(shapes[name])}, the model wants {tuple(var.shape)}"
                 for name, var in wanted.items() if name in shapes and tuple(shapes[name]) != tuple(var.shape)]
    if missing or misshapen:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        problems = ([f"missing {', '.join(missing[:5])}{more}"] if missing else []) + misshapen[:5]
        raise ValueError(f"{path} is not an SSD300-VGG16 VOC checkpoint: " + "; ".join(problems))
    for name, variable in wanted.items():
        variable.assign(reader.get_tensor(name))


class VGGDetector:
    """The SSD300-VGG16 VOC detector, batched; boxes normalised (ymin, xmin, ymax, xmax)."""

    name = "ssd300-vgg16-voc"
    input_size = IMAGE_SIZE

    def __init__(self, checkpoint: str) -> None:
        self.model = build_model()
        load_checkpoint(self.model, checkpoint)
        self.anchors = all_anchors()

    def detect(self, pixels: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: (VOC class ids, scores, boxes) of detections scoring at least `threshold`."""
        outputs = [o.numpy() if hasattr(o, "numpy") else np.asarray(o)
                   for o in self.model(pixels.astype(np.float32) - RGB_MEANS, training=False)]
        count = len(FEATURE_LAYERS)
        probabilities, localisations = outputs[:count], outputs[count:]
        results = []
        for i in range(len(pixels)):
            boxes = [decode_boxes(loc[i], anchors) for loc, anchors in zip(localisations, self.anchors, strict=True)]
            results.append(select([p[i] for p in probabilities], boxes, threshold))
        return results
