"""Batching: a NumPy MLP (four 4096-wide layers) behind one replica, 32 concurrent callers; the worker's batches
(`batching:`) vs one call at a time, and vs a batching Handler written by hand (a thread per call and a queue,
`concurrency: 32`); and what batching costs a lone call.

    python benchmarks/batching.py [--callers 32] [--seconds 8] [--batch 32]

Targets (issue "Batches and queues"): batched throughput >= 4x unbatched at a p95 no worse; a batch of one adds
<= 50 us. Each figure is a ratio within this run, on this machine (its CPU is printed beside them).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _harness import cpu, function, gateway_with, median_seconds, percentile

from dcf_jupyter.client import Client
from dcf_jupyter.definition.spec import Batching
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol.link import FORM_MESSAGES
from dcf_jupyter.worker.process import CallRunner

WIDTH = 4096
MODEL = f"""
import numpy as np

WIDTH = {WIDTH}


class Mlp:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.layers = [rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.sqrt(WIDTH) for _ in range(4)]

    def __call__(self, x):
        for w in self.layers:
            x = np.maximum(x @ w, 0)
        return x
"""
UNBATCHED = MODEL + """

class Handler:
    def __init__(self):
        self.mlp = Mlp()

    def __call__(self, req):
        return self.mlp(np.frombuffer(req.input, np.float32))[:16].tobytes()
"""
BATCHED = MODEL + """

class Handler:
    def __init__(self):
        self.mlp = Mlp()

    def __call__(self, reqs):
        out = self.mlp(np.stack([np.frombuffer(req.input, np.float32) for req in reqs]))
        return [row[:16].tobytes() for row in out]
"""
# What a user writes without `batching:` (the baseline, 3.1x here before the worker batched): every call
# waits on its own thread for a gathering thread to run the model on what has queued.
HANDMADE = MODEL + """
import queue
import threading


class Handler:
    def __init__(self):
        self.mlp = Mlp()
        self.calls = queue.Queue()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            batch = [self.calls.get()]
            while len(batch) < 32:
                try:
                    batch.append(self.calls.get_nowait())
                except queue.Empty:
                    break
            out = self.mlp(np.stack([x for x, _ in batch]))
            for (_, done), row in zip(batch, out):
                done.append(row[:16].tobytes())
                done.append(None)

    def __call__(self, req):
        done = []
        self.calls.put((np.frombuffer(req.input, np.float32), done))
        while len(done) < 2:
            time.sleep(0.0005)
        return done[0]
""".replace("import queue", "import queue\nimport time")
ECHO = """
class Handler:
    def __call__(self, req):
        return req.input
"""
ECHO_BATCHED = """
class Handler:
    def __call__(self, reqs):
        return [req.input for req in reqs]
"""


def load(address: str, name: str, callers: int, seconds: float, payload: bytes | None = None
         ) -> tuple[float, float, float]:
    """`callers` threads calling `name` with `payload` (default: a vector for the MLP) back to back for `seconds`:
    (calls/s, p50 s, p95 s), after a warm-up."""
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(callers)]
    x = payload if payload is not None else np.random.default_rng(1).standard_normal(WIDTH, dtype=np.float32).tobytes()

    def caller(i: int) -> None:
        with Client(address) as client:
            client.call_reply(name, x, timeout=120)
            while not stop.is_set():
                started = time.perf_counter()
                client.call_reply(name, x, timeout=120)
                latencies[i].append(time.perf_counter() - started)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 4)  # warm-up: connections, first batches
    for measured in latencies:
        measured.clear()
    started = time.perf_counter()
    time.sleep(seconds)
    count = sum(len(measured) for measured in latencies)
    took = time.perf_counter() - started
    all_latencies = [value for measured in latencies for value in measured]
    stop.set()
    for thread in threads:
        thread.join(120)
    return count / took, percentile(all_latencies, 50), percentile(all_latencies, 95)


def lone_overhead_in_the_worker(calls: int) -> float:
    """Seconds a batch of one adds in the worker: CallRunner.unary of an echo request, batched vs not."""
    raw = pb.InvokeServiceRequest(Service="echo", Input=b"x" * 100).SerializeToString()
    plain = CallRunner(lambda req: req.input, "echo")
    batched = CallRunner(lambda reqs: [req.input for req in reqs], "echo", batching=Batching(32, 10))
    return (median_seconds(lambda: batched.unary(FORM_MESSAGES, raw), calls)
            - median_seconds(lambda: plain.unary(FORM_MESSAGES, raw), calls))


def lone_calls(client: Client, calls: int, rounds: int) -> tuple[float, float]:
    """p50 seconds of a lone call to echo and to echo-batched, rounds alternating, the best round of each."""
    best = {"echo": float("inf"), "echo-batched": float("inf")}
    for _ in range(rounds):
        for name in best:
            best[name] = min(best[name], median_seconds(lambda n=name: client.call_reply(n, b"x" * 100), calls))
    return best["echo"], best["echo-batched"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size of the batched function")
    parser.add_argument("--lone-calls", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcf-batching-") as tmp, gateway_with() as address:
        parent = Path(tmp)
        with Client(address) as client:
            client.deploy(function(parent, "mlp", UNBATCHED))
            client.deploy(function(parent, "mlp-batched", BATCHED,
                                   batching={"max_batch_size": args.batch, "max_wait_ms": 10}))
            client.deploy(function(parent, "mlp-handmade", HANDMADE, concurrency=32))
            client.deploy(function(parent, "echo", ECHO))
            client.deploy(function(parent, "echo-batched", ECHO_BATCHED, batching={"max_batch_size": 32}))
            plain, lone = lone_calls(client, args.lone_calls, rounds=5)
        results = {name: load(address, name, args.callers, args.seconds)
                   for name in ("mlp", "mlp-handmade", "mlp-batched")}
    in_worker = lone_overhead_in_the_worker(50_000)
    print(f"MLP of four {WIDTH}-wide layers, one replica, {args.callers} callers, {args.seconds:g} s each "
          f"({cpu()}):")
    base = results["mlp"][0]
    for name, (rate, p50, p95) in results.items():
        print(f"  {name:13s} {rate:8.1f} calls/s ({rate / base:4.1f}x)  p50 {p50 * 1000:7.1f} ms  "
              f"p95 {p95 * 1000:7.1f} ms")
    rate, _, p95 = results["mlp-batched"]
    print(f"batched / unbatched: {rate / base:.1f}x calls/s (target >= 4x), p95 {p95 / results['mlp'][2]:.2f}x "
          "(target <= 1x)")
    print(f"a batch of one adds {in_worker * 1e6:.1f} us in the worker (target <= 50 us); a lone call through the "
          f"gateway, best p50 of 5 rounds x {args.lone_calls}: {plain * 1e6:.0f} us unbatched, {lone * 1e6:.0f} us "
          f"batched ({(lone - plain) * 1e6:+.0f} us, within this path's noise of tens of us)")


if __name__ == "__main__":
    main()
