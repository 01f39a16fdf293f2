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

    def __call__(self, req):
        batch = decode_request(req.input, self.detector.input_size)
        detections = self.detector.detect(batch.pixels, batch.threshold)
        replies = [boxes_reply(*found, size) for found, size in zip(detections, batch.sizes, strict=True)]
        return replies if batch.batched else replies[0]
