"""Batching on a GPU: a PyTorch CNN of ResNet-18's size (random weights) behind one `gpu: 1` replica, 16 concurrent
callers of 224x224 images; the worker's batches vs one call at a time, in one run on one GPU.

    python benchmarks/batching_gpu.py [--callers 16] [--seconds 10] [--batch 16]

Target (issue "Batches and queues", 5c): batched >= 3x the calls/s of unbatched, at an equal or better p95.
Needs PyTorch; without CUDA it runs on the CPU and says so (the target is a GPU's).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _harness import cpu, gateway_with
from batching import function, load

from dcf_jupyter.client import Client

MODEL = '''
import numpy as np
import torch
from torch import nn


def block(inputs, outputs, stride):
    down = None if stride == 1 and inputs == outputs else nn.Sequential(
        nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    class Basic(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
                nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs))
            self.down = down

        def forward(self, x):
            return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))

    return Basic()


def resnet18_sized():
    """ResNet-18's layers (11.7 M parameters), random weights: what batching does to it, not what it sees."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    width = 64
    for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [block(width, outputs, stride), block(outputs, outputs, 1)]
        width = outputs
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers)


class Model:
    def __init__(self):
        torch.manual_seed(0)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = resnet18_sized().to(self.device).eval()

    def __call__(self, images):
        with torch.no_grad():
            x = torch.from_numpy(np.stack(images)).to(self.device)
            top = self.net(x).argmax(1).cpu().numpy()
        return [str(int(t)) for t in top]


def image(req):
    return np.frombuffer(req.input, np.float32).reshape(3, 224, 224)
'''
UNBATCHED = MODEL + '''

class Handler:
    def __init__(self):
        self.model = Model()

    def __call__(self, req):
        return self.model([image(req)])[0]
'''
BATCHED = MODEL + '''

class Handler:
    def __init__(self):
        self.model = Model()

    def __call__(self, reqs):
        return self.model([image(req) for req in reqs])
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    import numpy as np
    import torch

    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"no CUDA: the CPU ({cpu()})"
    picture = np.random.default_rng(0).standard_normal((3, 224, 224), dtype=np.float32).tobytes()
    results = {}
    with tempfile.TemporaryDirectory(prefix="dcf-batching-gpu-") as tmp, gateway_with() as address, \
            Client(address) as client:
        gpu = {"limits": {"gpu": "1"}} if torch.cuda.is_available() else {}
        # One at a time: each asks for the one GPU.
        for name, source, keys in (("cnn", UNBATCHED, {}),
                                   ("cnn-batched", BATCHED,
                                    {"batching": {"max_batch_size": args.batch, "max_wait_ms": 5}})):
            client.deploy(function(Path(tmp), name, source, **gpu, **keys))
            results[name] = load(address, name, args.callers, args.seconds, payload=picture)
            client.delete(name)
    print(f"ResNet-18-sized CNN, 224x224 images, one replica, {args.callers} callers, {args.seconds:g} s each, on "
          f"{where}:")
    for name, (rate, p50, p95) in results.items():
        print(f"  {name:12s} {rate:8.1f} calls/s  p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms")
    (base, _, base_p95), (rate, _, p95) = results["cnn"], results["cnn-batched"]
    print(f"batched / unbatched: {rate / base:.1f}x calls/s (target >= 3x), p95 {p95 / base_p95:.2f}x (target <= 1x)")


if __name__ == "__main__":
    main()
