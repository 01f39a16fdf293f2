"""Bidi stream throughput: 60 KB frames through the gateway's Invokes vs a bare grpcio server, same client.

    python benchmarks/stream.py [--frames 2000]

Target: gateway fps >= 0.7x bare (goal 0.9x).
"""

from __future__ import annotations

import argparse
import os
import time

import grpc
from _harness import compare, gateway_and_baselines

from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc
from dcf_jupyter.settings import DEFAULT_MAX_MESSAGE_SIZE, grpc_options

FRAME_BYTES = 60 * 1024


def measure(address: str, frames: int, frame: bytes) -> float:
    """Frames per second of one bidi stream sending `frames` frames as fast as the stream takes them."""
    with grpc.insecure_channel(address, options=grpc_options(DEFAULT_MAX_MESSAGE_SIZE)) as channel:
        stub = pb_grpc.GatewayStub(channel)

        def requests(count: int):
            for _ in range(count):
                yield pb.InvokeServiceRequest(Service="echo", Input=frame)

        for _ in stub.Invokes(requests(100)):  # warm-up
            pass
        received = 0
        start = time.perf_counter()
        for reply in stub.Invokes(requests(frames)):
            received += 1
            assert len(reply.Output) == len(frame)
        elapsed = time.perf_counter() - start
    assert received == frames
    return frames / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="alternate targets this many times; best round counts")
    args = parser.parse_args()
    frame = os.urandom(FRAME_BYTES)
    with gateway_and_baselines("echo") as targets:
        fps, baseline, ratio = compare(
            targets, lambda address: measure(address, args.frames, frame), args.rounds, higher_is_better=True
        )
    print(f"bidi Invokes, {FRAME_BYTES // 1024} KB frames, {args.frames} frames x {args.rounds} rounds (best round):")
    for label, value in fps.items():
        print(f"  {label:20s} {value:8.0f} frames/s  ({value * FRAME_BYTES / 1e6:6.1f} MB/s each way)")
    print(f"ratio gateway / {baseline}: {ratio:.2f}x  (target >= 0.7x, goal 0.9x)")

if __name__ == "__main__":
    main()
