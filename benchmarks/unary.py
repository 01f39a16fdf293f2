"""Unary latency: a DCF client's Invoke through the gateway vs a bare grpcio server, same echo handler, same client.

    python benchmarks/unary.py [--calls 2000]

Target: gateway p50 <= 1.5x bare (goal 1.3x).
"""

from __future__ import annotations

import argparse
import time

import grpc
from _harness import compare, gateway_and_baselines, percentile

from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc


def measure(address: str, calls: int, payload: bytes) -> list[float]:
    """Latencies (seconds) of `calls` sequential Invoke calls from a plain DCF stub."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        request = pb.InvokeServiceRequest(Service="echo", Input=payload)
        for _ in range(200):  # warm-up: connection, worker, caches
            stub.Invoke(request)
        latencies = []
        for _ in range(calls):
            start = time.perf_counter()
            reply = stub.Invoke(request)
            latencies.append(time.perf_counter() - start)
            assert reply.Msg == payload.decode()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="alternate targets this many times; best round counts")
    args = parser.parse_args()
    payload = b"x" * 100
    with gateway_and_baselines("echo") as targets:
        p50, baseline, ratio = compare(
            targets, lambda address: percentile(measure(address, args.calls, payload), 50), args.rounds,
            higher_is_better=False,
        )
    print(f"unary Invoke, {len(payload)}-byte payload, {args.calls} calls x {args.rounds} rounds (best round p50):")
    for label, value in p50.items():
        print(f"  {label:20s} p50 {value * 1e6:8.1f} us")
    print(f"ratio gateway / {baseline}: {ratio:.2f}x  (target <= 1.5x, goal 1.3x)")

if __name__ == "__main__":
    main()
