"""Photos with published labels, and how a detector's boxes score against them: shared by
benchmarks/detect_threshold.py and tests/test_detect.py (the default threshold is the one the measurement chose).

Scoring as PASCAL VOC does: a box counts when it overlaps an unclaimed labelled box of its class by IoU >= 0.5,
most confident first; another box on a claimed object, or on nothing labelled, is a false positive. The labels are
VOC's 20 classes: a COCO class VOC has no counterpart for (a traffic light, a handbag) is neither right nor wrong
here and is left out, and a COCO "truck" may claim a VOC "car" (VOC's cars include vans and pick-ups)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent / "data" / "voc2007"
COCO_TO_VOC = {"airplane": "aeroplane", "bicycle": "bicycle", "bird": "bird", "boat": "boat", "bottle": "bottle",
               "bus": "bus", "car": "car", "truck": "car", "cat": "cat", "chair": "chair", "cow": "cow",
               "dining table": "diningtable", "dog": "dog", "horse": "horse", "motorcycle": "motorbike",
               "person": "person", "potted plant": "pottedplant", "sheep": "sheep", "couch": "sofa", "train": "train",
               "tv": "tvmonitor"}
Box = Sequence[float]


def labelled() -> dict[str, list[tuple[str, Box]]]:
    """Each photo's file name and its labelled objects (VOC class, box)."""
    images = json.loads((FOLDER / "labels.json").read_text())["images"]
    return {name: [(label, box) for label, box in objects] for name, objects in images.items()}


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (xmin, ymin, xmax, ymax) boxes."""
    wide = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    high = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - wide * high
    return wide * high / union if union else 0.0


@dataclass(frozen=True)
class Score:
    """Right boxes, wrong boxes and labelled objects missed, over a set of photos."""

    right: int
    wrong: int
    missed: int

    @property
    def precision(self) -> float:
        return self.right / (self.right + self.wrong) if self.right + self.wrong else 1.0

    @property
    def recall(self) -> float:
        return self.right / (self.right + self.missed) if self.right + self.missed else 1.0

    @property
    def f1(self) -> float:
        both = self.precision + self.recall
        return 2 * self.precision * self.recall / both if both else 0.0


def score(found: Mapping[str, Sequence[Mapping[str, Any]]], threshold: float) -> Score:
    """How the boxes `found` in each labelled photo (a detector's replies, at any lower threshold) score when those
    under `threshold` are dropped."""
    right = wrong = missed = 0
    for name, objects in labelled().items():
        claimed: set[int] = set()
        boxes = sorted((box for box in found[name] if box["confidence"] >= threshold and box["label"] in COCO_TO_VOC),
                       key=lambda box: -box["confidence"])
        for box in boxes:
            corners = (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
            overlaps = [(iou(corners, labelled_box), index) for index, (label, labelled_box) in enumerate(objects)
                        if label == COCO_TO_VOC[box["label"]] and index not in claimed]
            best, index = max(overlaps, default=(0.0, -1))
            if best >= 0.5:
                claimed.add(index)
                right += 1
            else:
                wrong += 1
        missed += len(objects) - len(claimed)
    return Score(right, wrong, missed)
