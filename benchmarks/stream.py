"""Bidi stream throughput: 60 KB frames through the gateway's Invokes vs a bare grpcio server, same client.

    python benchmarks/stream.py [--frames 2000]

Target: gateway fps >= 0.7x bare (goal 0.9x).
"""

from __future__ import annotations

import argparse
import os
import time

import grpc

from _harness import bare_server, gateway_with
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

        for reply in stub.Invokes(requests(100)):  # warm-up
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
    parser.add_argument("--rounds", type=int, default=3, help="alternate targets this many times; best round counts")
    args = parser.parse_args()
    frame = os.urandom(FRAME_BYTES)
    results: dict[str, list[float]] = {"bare (sync server)": [], "bare (aio server)": [], "gateway": []}
    with gateway_with("echo") as gw, bare_server() as bare, bare_server(aio=True) as bare_aio:
        targets = {"bare (sync server)": bare, "bare (aio server)": bare_aio, "gateway": gw}
        for _ in range(args.rounds):
            for label, address in targets.items():
                results[label].append(measure(address, args.frames, frame))
    fps = {label: max(values) for label, values in results.items()}
    baseline_label = max(("bare (sync server)", "bare (aio server)"), key=lambda k: fps[k])
    print(f"bidi Invokes, {FRAME_BYTES // 1024} KB frames, {args.frames} frames x {args.rounds} rounds (best round):")
    for label, value in fps.items():
        print(f"  {label:20s} {value:8.0f} frames/s  ({value * FRAME_BYTES / 1e6:6.1f} MB/s each way)")
    ratio = fps["gateway"] / fps[baseline_label]
    print(f"ratio gateway / {baseline_label}: {ratio:.2f}x  (target >= 0.7x, goal 0.9x)")


if __name__ == "__main__":
    main()
