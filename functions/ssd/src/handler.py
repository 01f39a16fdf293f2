"""SSD object detection, as in the DCF example: an image in, a JSON list of boxes out.

Request: JPEG/PNG bytes or base64 of them (`cat 000001.jpg | base64 | dcf function run ssd`), or a
JSON batch (see images.py). Reply per image: [{"class", "label", "confidence", "xmin", "ymin", "xmax",
"ymax"}] with PASCAL VOC class ids (strings, as DCF's) and the confidence and pixel coordinates of the original
image as JSON numbers.

The model: the SSD300-VGG16 VOC network of the DCF example when $SSD_CHECKPOINT points at its
ssd_300_vgg.ckpt, otherwise an SSDLite-MobileNetV2 person detector whose weights come from PyPI.
TensorFlow uses a GPU when the function has one (memory grows as needed instead of taking it all).
"""

import os

import numpy as np
from images import decode_request
from voc import boxes_reply


def configure_gpus() -> None:
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


class Handler:
    def __init__(self):
        configure_gpus()
        checkpoint = os.environ.get("SSD_CHECKPOINT")
        if checkpoint:
            from ssd300 import VGGDetector

            self.detector = VGGDetector(checkpoint)
        else:
            from person import PersonDetector

            self.detector = PersonDetector()
        print(f"ssd: {self.detector.name} ready")

    def __call__(self, reqs):
        """One request, or with config.yaml's `batching:` a list of them (one network call for the images of all
        those with the same threshold): a reply each, and a request that cannot be read fails alone."""
        batched = isinstance(reqs, list)
        requests = []
        for req in reqs if batched else [reqs]:
            try:
                requests.append(decode_request(req.input, self.detector.input_size))
            except ValueError as exc:
                if not batched:
                    raise
                requests.append(exc)
        by_threshold = {}
        for i, request in enumerate(requests):
            if not isinstance(request, ValueError):
                by_threshold.setdefault(request.threshold, []).append(i)
        found = {}
        for threshold, indices in by_threshold.items():
            detections = iter(self.detector.detect(np.concatenate([requests[i].pixels for i in indices]), threshold))
            for i in indices:
                found[i] = [next(detections) for _ in requests[i].sizes]
        replies = []
        for i, request in enumerate(requests):
            if isinstance(request, ValueError):
                replies.append(request)
                continue
            boxes = [boxes_reply(*each, size) for each, size in zip(found[i], request.sizes, strict=True)]
            replies.append(boxes if request.batched else boxes[0])
        return replies if batched else replies[0]
