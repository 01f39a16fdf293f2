"""Unary latency: a DCF client's Invoke through the gateway vs a bare grpcio server, same echo handler, same client.

    python benchmarks/unary.py [--calls 2000]

Target: gateway p50 <= 1.5x bare (goal 1.3x).
"""

from __future__ import annotations

import argparse
import time

import grpc

from _harness import bare_server, gateway_with, percentile
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
    parser.add_argument("--rounds", type=int, default=3, help="alternate targets this many times; best round counts")
    args = parser.parse_args()
    payload = b"x" * 100
    results: dict[str, list[float]] = {"bare (sync server)": [], "bare (aio server)": [], "gateway": []}
    with gateway_with("echo") as gw, bare_server() as bare, bare_server(aio=True) as bare_aio:
        targets = {"bare (sync server)": bare, "bare (aio server)": bare_aio, "gateway": gw}
        for _ in range(args.rounds):
            for label, address in targets.items():
                results[label].append(percentile(measure(address, args.calls, payload), 50))
    p50 = {label: min(values) for label, values in results.items()}
    baseline_label = min(("bare (sync server)", "bare (aio server)"), key=lambda k: p50[k])
    print(f"unary Invoke, {len(payload)}-byte payload, {args.calls} calls x {args.rounds} rounds (best round p50):")
    for label, value in p50.items():
        print(f"  {label:20s} p50 {value * 1e6:8.1f} us")
    ratio = p50["gateway"] / p50[baseline_label]
    print(f"ratio gateway / {baseline_label}: {ratio:.2f}x  (target <= 1.5x, goal 1.3x)")


if __name__ == "__main__":
    main()
