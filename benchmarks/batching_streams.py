"""Batching stream frames: four concurrent `Invokes` streams of ~60 KB camera-sized JPEG frames into one `detect`
replica, aggregate frames/s with the worker's batches (`batching:`) vs one frame at a time, in one run.

    python benchmarks/batching_streams.py [--streams 4] [--seconds 15] [--batch 8]

Needs TensorFlow (the [tf] extra). Each stream sends its next frame as a reply comes back, two in flight (as the
widgets do). The CPU is printed beside the figures: on a GPU the gain is larger.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import threading
import time
from pathlib import Path

import yaml
from _harness import ROOT, cpu, gateway_with
from PIL import Image

from dcf_jupyter.client import Client

WINDOW = 2  # frames in flight per stream


def camera_frame() -> bytes:
    """A 640x480 JPEG of the dog photo (what a webcam sends), about 60 KB."""
    picture = Image.open(ROOT / "notebooks" / "images" / "dog.jpg").convert("RGB").resize((640, 480))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=80)
    return out.getvalue()


def streams(address: str, name: str, count: int, seconds: float, frame: bytes) -> float:
    """Frames/s answered over `count` concurrent streams for `seconds` (after a warm-up of a few frames each)."""
    answered = [0] * count
    measuring = threading.Event()
    stop = threading.Event()

    def run(i: int) -> None:
        def frames():  # the next frame once fewer than WINDOW are unanswered
            sent = 0
            while not stop.is_set():
                while sent - answered[i] - warm[i] >= WINDOW and not stop.is_set():
                    time.sleep(0.001)
                sent += 1
                yield frame

        with Client(address) as client:
            for _ in client.stream(name, frames(), timeout=seconds * 4 + 120):
                if measuring.is_set():
                    answered[i] += 1
                else:
                    warm[i] += 1

    warm = [0] * count
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(min(5.0, seconds / 3))
    measuring.set()
    started = time.perf_counter()
    time.sleep(seconds)
    done = sum(answered)
    took = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join(120)
    return done / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    frame = camera_frame()
    results = {}
    with tempfile.TemporaryDirectory(prefix="dcf-batching-streams-") as tmp, gateway_with() as address, \
            Client(address) as client:
        for label, batching in (("one at a time", None), ("batched", {"max_batch_size": args.batch,
                                                                      "max_wait_ms": 10})):
            folder = shutil.copytree(ROOT / "functions" / "detect", Path(tmp) / label.replace(" ", "-"))
            config = folder / "config.yaml"
            data = yaml.safe_load(config.read_text())
            if batching:
                data["functions"]["detect"]["batching"] = batching
            config.write_text(yaml.safe_dump(data))
            client.deploy(folder)
            results[label] = streams(address, "detect", args.streams, args.seconds, frame)
            client.delete("detect")
    print(f"{args.streams} streams of {len(frame) // 1024} KB 640x480 JPEG frames into one detect replica, "
          f"{args.seconds:g} s each ({cpu()}):")
    for label, rate in results.items():
        print(f"  {label:14s} {rate:6.1f} frames/s")
    print(f"batched / one at a time: {results['batched'] / results['one at a time']:.2f}x")


if __name__ == "__main__":
    main()
