"""The gateway's unary Invoke vs Ray Serve's own gRPC ingress, same proto, same echo, same client.

    python benchmarks/ray_serve_grpc.py [--calls 1000] [--rounds 5]

Ray Serve serves DCF's `Gateway` service through its gRPC proxy (`grpc_servicer_functions` names our generated
`add_GatewayServicer_to_server`): a Serve deployment with an `Invoke` method runs functions/echo's Handler, and
the client's stub sends Serve's `application` metadata (the gateway ignores it). The gateway runs the same echo
on the local backend. Rounds alternate between the two, each keeps its best round; p50 at 100 B and at 60 KB.

Target (#46): the gateway's p50 >= 8x lower than Ray Serve's at both sizes.
Ray Serve's gRPC proxy listens on every interface (`[::]`, not configurable in Ray 2.60) for the length of the
run; its HTTP proxy is kept on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from _harness import ROOT, cpu, gateway_with, percentile

from dcf_jupyter.host.ports import free_port
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc
from dcf_jupyter.settings import DEFAULT_MAX_MESSAGE_SIZE, grpc_options

# benchmarks/ray.py is another script in this folder, which Python puts first on the path: without removing
# the folder, `import ray` would import that script instead of Ray.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
try:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.serve.config import gRPCOptions
except ImportError:
    sys.exit("benchmarks/ray_serve_grpc.py needs Ray Serve: pip install -e '.[ray]'")

APPLICATION = "echo"
SIZES = {"100 B": 100, "60 KB": 60 * 1024}
ECHO = ROOT / "functions" / "echo" / "src"


@serve.deployment(max_ongoing_requests=64)
class ServeEcho:
    """functions/echo's Handler behind Serve's gRPC proxy: each RPC of `Gateway` is a method of this name."""

    def __init__(self, source: str) -> None:
        from dcf_jupyter.worker.handler import load_handler

        self.handler = load_handler(Path(source))

    def Invoke(self, request: pb.InvokeServiceRequest) -> pb.Message:
        from dcf_jupyter.worker.handler import Request

        return pb.Message(Msg=self.handler(Request(request.Input)).decode())


def measure(address: str, calls: int, payload: bytes) -> float:
    """p50 seconds of `calls` sequential Invoke calls of echo from a plain DCF stub (after a warm-up)."""
    metadata = (("application", APPLICATION),)
    with grpc.insecure_channel(address, options=grpc_options(DEFAULT_MAX_MESSAGE_SIZE)) as channel:
        stub = pb_grpc.GatewayStub(channel)
        request = pb.InvokeServiceRequest(Service="echo", Input=payload)
        for _ in range(100):
            stub.Invoke(request, metadata=metadata)
        latencies = []
        for _ in range(calls):
            start = time.perf_counter()
            reply = stub.Invoke(request, metadata=metadata)
            latencies.append(time.perf_counter() - start)
            assert reply.Msg == payload.decode()
    return percentile(latencies, 50)


def best_rounds(targets: dict[str, str], measure_one: Callable[[str], float], rounds: int) -> dict[str, float]:
    """Each target's best p50 over `rounds` alternating rounds."""
    results: dict[str, list[float]] = {label: [] for label in targets}
    for _ in range(rounds):
        for label, address in targets.items():
            results[label].append(measure_one(address))
    return {label: min(values) for label, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # Serve's proxy pickles each request to hand it to a replica, and protoc names our messages' module
    # `gateway_pb2` (not its package path): the cluster's processes must be able to import it under that name.
    protocol = str(ROOT / "dcf_jupyter" / "protocol")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [protocol, os.environ.get("PYTHONPATH")]))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        ray.init(address=cluster.address, include_dashboard=False, logging_level="ERROR")
        grpc_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()},
                    grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=[
                        "dcf_jupyter.protocol.gateway_pb2_grpc.add_GatewayServicer_to_server"]))
        serve.run(ServeEcho.bind(str(ECHO)), name=APPLICATION, route_prefix=f"/{APPLICATION}")
        with gateway_with("echo", extra=["--open-loopback"]) as gateway:
            targets = {"Ray Serve gRPC": f"127.0.0.1:{grpc_port}", "gateway": gateway}
            print(f"unary Invoke of echo, {args.calls} calls x {args.rounds} rounds (best round p50), {cpu()}:")
            for size_label, size in SIZES.items():
                payload = b"x" * size
                best = best_rounds(targets, functools.partial(measure, calls=args.calls, payload=payload),
                                   args.rounds)
                ratio = best["Ray Serve gRPC"] / best["gateway"]
                figures = ", ".join(f"{label} {value * 1e6:,.0f} us" for label, value in best.items())
                print(f"  {size_label:>6}: {figures}; gateway {ratio:.1f}x lower (target >= 8x)")
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
