"""Shared by benchmarks/ssd.py and benchmarks/detect.py: a detector function through the gateway vs the same
handler in-process, on the same images; single and batched."""

from __future__ import annotations

import argparse
import base64
import io
import json

from _harness import ROOT, gateway_with, median_seconds

from dcf_jupyter.client import Client
from dcf_jupyter.worker.handler import Request, load_handler

SHARED = ROOT.parent / "shared" / "data" / "images"


def images() -> list[bytes]:
    """The shared demo photos, or generated ones when ../shared is absent."""
    found = sorted(SHARED.glob("*.jpg")) if SHARED.exists() else []
    if found:
        return [p.read_bytes() for p in found]
    from PIL import Image

    out = []
    for color in ("red", "green", "blue", "gray"):
        buffer = io.BytesIO()
        Image.new("RGB", (500, 375), color).save(buffer, "JPEG")
        out.append(buffer.getvalue())
    return out


def compare(function: str, description: str, in_process_target_ms: float | None = None) -> None:
    """Run the comparison for functions/<function> and print it (gateway target <= 1.10x in-process)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pictures = images()
    batch = json.dumps({"images": [base64.b64encode(pictures[i % len(pictures)]).decode()
                                   for i in range(args.batch)]}).encode()
    handler = load_handler(ROOT / "functions" / function / "src")
    with gateway_with(function) as address, Client(address) as client:
        cycle = {"i": 0}

        def next_image() -> bytes:
            cycle["i"] += 1
            return pictures[cycle["i"] % len(pictures)]

        local, remote, local_batch, remote_batch = [], [], [], []
        for _ in range(args.rounds):  # alternate, so drift hits both alike
            local.append(median_seconds(lambda: handler(Request(next_image())), args.calls))
            remote.append(median_seconds(lambda: client.call(function, next_image()), args.calls))
            local_batch.append(median_seconds(lambda: handler(Request(batch)), max(3, args.calls // 4)))
            remote_batch.append(median_seconds(lambda: client.call(function, batch), max(3, args.calls // 4)))
    best = {name: min(values) for name, values in
            (("local", local), ("remote", remote), ("local_batch", local_batch), ("remote_batch", remote_batch))}
    print(f"{function} ({handler.detector.name}) on {len(pictures)} images, median of {args.calls} calls, best of "
          f"{args.rounds} rounds:")
    target = f"  (target <= {in_process_target_ms:g} ms)" if in_process_target_ms else ""
    print(f"  in-process      {best['local'] * 1e3:7.1f} ms/image   {1 / best['local']:6.1f} images/s{target}")
    print(f"  via gateway     {best['remote'] * 1e3:7.1f} ms/image   {1 / best['remote']:6.1f} images/s")
    print(f"  ratio gateway / in-process: {best['remote'] / best['local']:.3f}x  (target <= 1.10x)")
    print(f"  batch of {args.batch}: in-process {args.batch / best['local_batch']:6.1f} images/s, via gateway "
          f"{args.batch / best['remote_batch']:6.1f} images/s")


