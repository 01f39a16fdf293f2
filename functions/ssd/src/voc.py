"""Class numbering: the DCF example's PASCAL VOC ids (15 = person, 12 = dog), and the reply format."""

from __future__ import annotations

import numpy as np

VOC_LABELS = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# COCO ids (TensorFlow Object Detection API models) of the classes VOC also has.
COCO_TO_VOC = {5: 1, 2: 2, 16: 3, 9: 4, 44: 5, 6: 6, 3: 7, 17: 8, 62: 9, 21: 10, 67: 11, 18: 12, 19: 13,
               4: 14, 1: 15, 64: 16, 20: 17, 63: 18, 7: 19, 72: 20}
COCO_LABELS = {1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
               9: "boat", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 44: "bottle",
               62: "chair", 63: "couch", 64: "potted plant", 67: "dining table", 72: "tv"}


def boxes_reply(classes: np.ndarray, scores: np.ndarray, boxes: np.ndarray, size: tuple[int, int],
                labels: dict[int, str] | None = None) -> list[dict[str, str | int | float]]:
    """The DCF example's reply for one image, with its keys (plus "label"): the class id as a string as DCF's
    has it, the confidence and the box (pixels of the original image) as JSON numbers.

    `boxes` are normalised (ymin, xmin, ymax, xmax); `classes` are VOC ids unless `labels` maps them.
    """
    width, height = size
    reply = []
    for cls, score, (ymin, xmin, ymax, xmax) in zip(classes, scores, boxes, strict=True):
        cls = int(cls)
        label = labels.get(cls, str(cls)) if labels is not None else VOC_LABELS[cls]
        reply.append({
            "class": str(cls),
            "label": label,
            "confidence": round(float(score), 4),
            "xmin": int(np.rint(np.clip(xmin, 0.0, 1.0) * width)),
            "ymin": int(np.rint(np.clip(ymin, 0.0, 1.0) * height)),
            "xmax": int(np.rint(np.clip(xmax, 0.0, 1.0) * width)),
            "ymax": int(np.rint(np.clip(ymax, 0.0, 1.0) * height)),
        })
    return reply
