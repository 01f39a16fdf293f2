"""Unary latency: a DCF client's Invoke through the gateway vs a bare grpcio server, same echo handler, same client.

    python benchmarks/unary.py [--calls 2000]

Target: gateway p50 <= 1.3x bare (#46). Also where the gateway's time goes, in the same run: the gRPC hop alone
(the bare grpc.aio server), the worker hop alone (the gateway's AsyncLink on uvloop to a real echo worker
process), and the worker's own gRPC server (grpcio's sync server in the worker: the same Handler with no gateway).
"""

from __future__ import annotations

import argparse
import time

import grpc
from _harness import compare, cpu, gateway_and_baselines, percentile, worker_process

from dcf_jupyter.backends.local.link import AsyncLink
from dcf_jupyter.gateway.app import run_event_loop
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc
from dcf_jupyter.protocol.link import FORM_MESSAGE
from dcf_jupyter.settings import DEFAULT_MAX_MESSAGE_SIZE


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


def link_latencies(socket_path: str, calls: int, payload: bytes) -> list[float]:
    """Latencies of `calls` sequential calls over a worker's framed link, made as the gateway makes them."""
    request = pb.InvokeServiceRequest(Service="echo", Input=payload).SerializeToString()

    async def run() -> list[float]:
        link = await AsyncLink.connect(socket_path, DEFAULT_MAX_MESSAGE_SIZE + 1024)
        try:
            for _ in range(200):
                await link.call(FORM_MESSAGE, request)
            latencies = []
            for _ in range(calls):
                start = time.perf_counter()
                await link.call(FORM_MESSAGE, request)
                latencies.append(time.perf_counter() - start)
            return latencies
        finally:
            link.close()

    return run_event_loop(run())  # on the loop the gateway runs on: uvloop when installed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="alternate targets this many times; best round counts")
    args = parser.parse_args()
    payload = b"x" * 100
    with gateway_and_baselines("echo") as targets, worker_process("echo") as (socket_path, worker_grpc):
        targets = {**targets, "worker's own gRPC": worker_grpc}
        p50, baseline, ratio = compare(
            targets, lambda address: percentile(measure(address, args.calls, payload), 50), args.rounds,
            higher_is_better=False,
        )
        link = min(percentile(link_latencies(socket_path, args.calls, payload), 50) for _ in range(args.rounds))
    print(f"unary Invoke, {len(payload)}-byte payload, {args.calls} calls x {args.rounds} rounds (best round p50), "
          f"{cpu()}:")
    for label, value in p50.items():
        print(f"  {label:20s} p50 {value * 1e6:8.1f} us")
    print(f"ratio gateway / {baseline}: {ratio:.2f}x  (target <= 1.3x)")
    grpc_hop = p50["bare (aio server)"]
    rest = p50["gateway"] - grpc_hop - link
    print("where the gateway's time goes (p50):")
    print(f"  gRPC hop (bare grpc.aio server, its echo in-process)  {grpc_hop * 1e6:7.1f} us")
    print(f"  worker hop (AsyncLink on the gateway's loop -> worker) {link * 1e6:7.1f} us")
    print(f"  the rest (the gateway's own work, two hops on one loop) {rest * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
