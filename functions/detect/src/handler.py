"""General object detection: an image in, JSON boxes of 80 COCO classes out (what the webcam sees).

Request: as ssd's (see image_request.py): JPEG/PNG bytes or base64 of them, or a JSON batch, with "threshold"
(default 0.3) and "size", the longer side the network sees (default 512, or $DETECT_SIZE: smaller is faster).
Reply per image: [{"class", "label", "confidence", "xmin", "ymin", "xmax", "ymax"}], COCO category ids and
names, the confidence and pixel coordinates of the original image as JSON numbers (ssd's shape).

The model, CenterNet-MobileNetV3 trained on COCO, ships in ../model (MIT, see model/SOURCE.md); nothing is
downloaded. It runs on TensorFlow when the function has a GPU (memory grows as needed instead of taking it all),
else on OpenVINO's CPU runtime when that is installed (1.3-2x as fast as TensorFlow there); $DETECT_RUNTIME
(auto, openvino or tensorflow) chooses.
"""

import os

# oneDNN's fused kernels: 100 -> 70 ms an image for this model on a 2-core x86 CPU (TensorFlow leaves them off
# on CPUs without AVX-512). Read when TensorFlow is imported, so set before that; an explicit setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from centernet import RUNTIME_VARIABLE, CenterNetDetector, boxes_reply
from image_request import default_size, parse_request


def configure_gpus() -> None:
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


class Handler:
    def __init__(self):
        configure_gpus()
        self.size = default_size(os.environ)
        self.detector = CenterNetDetector(runtime=os.environ.get(RUNTIME_VARIABLE, "auto"))
        print(f"detect: {self.detector.name} on {self.detector.runtime} ready ({self.detector.loaded}); images "
              f"fitted into {self.size} pixels")

    def __call__(self, reqs):
        """One request, or with config.yaml's `batching:` a list of them (one call of the model for the frames of
        them all): a reply each, and a request that cannot be read fails alone."""
        batched = isinstance(reqs, list)
        requests = []
        for req in reqs if batched else [reqs]:
            try:
                requests.append(parse_request(req.input, self.size))
            except ValueError as exc:
                if not batched:
                    raise
                requests.append(exc)
        readable = [request for request in requests if not isinstance(request, ValueError)]
        images = [(image, request.threshold) for request in readable for image in request.images]
        rows = iter(self.detector.detect_batch([image.pixels for image, _ in images], [t for _, t in images]))
        replies = []
        for request in requests:
            if isinstance(request, ValueError):
                replies.append(request)
                continue
            found = [boxes_reply(next(rows), image.width, image.height, image.scale) for image in request.images]
            replies.append(found if request.batched else found[0])
        return replies if batched else replies[0]
