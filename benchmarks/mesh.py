"""A function calling `echo` through dcf_jupyter.mesh vs a client calling `echo`, in one run.

    python benchmarks/mesh.py [--calls 2000] [--rounds 3]

The caller times its own mesh.call("echo", 100 bytes) inside its Handler (the replica's client over the gateway's
Unix socket: one gateway hop to echo's replica); the client's p50 is a Python client calling echo over the gateway's
loopback TCP port. Target: the mesh call <= 1.2x one client call. Rounds alternate; each side keeps its best.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _harness import cpu, gateway_with, percentile

from dcf_jupyter.client import Client
from dcf_jupyter.definition.scaffold import init_function

TIMES_MESH_CALLS = """
import time

from dcf_jupyter import mesh


class Handler:
    def __call__(self, req):
        calls = int(req.input)
        payload = b"x" * 100
        for _ in range(200):
            mesh.call("echo", payload)
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            assert mesh.call("echo", payload) == payload
            latencies.append(time.perf_counter() - started)
        return sorted(latencies)[len(latencies) // 2]
"""



def client_p50(client: Client, calls: int) -> float:
    payload = b"x" * 100
    for _ in range(200):
        client.call("echo", payload)
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        client.call("echo", payload)
        latencies.append(time.perf_counter() - started)
    return percentile(latencies, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    best = {"mesh": float("inf"), "client": float("inf")}
    with gateway_with("echo", extra=["--no-docker"]) as address, Client(address) as client, \
            tempfile.TemporaryDirectory() as tmp:
        client.deploy(init_function("calls-echo", parent=Path(tmp), handler_source=TIMES_MESH_CALLS))
        for _ in range(args.rounds):
            best["mesh"] = min(best["mesh"], float(client.call("calls-echo", str(args.calls), timeout=600)))
            best["client"] = min(best["client"], client_p50(client, args.calls))
    ratio = best["mesh"] / best["client"]
    print(f"echo, 100 bytes, {args.calls} calls x {args.rounds} rounds (best round p50): from a Handler through "
          f"mesh {best['mesh'] * 1e6:.0f} us, from a client {best['client'] * 1e6:.0f} us: {ratio:.2f}x "
          "(target <= 1.2x)")


if __name__ == "__main__":
    main()
