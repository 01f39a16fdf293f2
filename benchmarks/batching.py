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
import yaml
from _harness import cpu, gateway_with, median_seconds, percentile

from dcf_jupyter.client import Client
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.worker.batcher import Batcher
from dcf_jupyter.worker.slots import Slots

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


def function(parent: Path, name: str, source: str, **keys: object) -> Path:
    folder = init_function(name, parent=parent, handler_source=source)
    config = folder / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["functions"][name].update(keys)
    config.write_text(yaml.safe_dump(data))
    return folder


def load(address: str, name: str, callers: int, seconds: float) -> tuple[float, float, float]:
    """`callers` threads calling `name` back to back for `seconds`: (calls/s, p50 s, p95 s), after a warm-up."""
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(callers)]
    x = np.random.default_rng(1).standard_normal(WIDTH, dtype=np.float32).tobytes()

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


def lone_overhead_in_process(calls: int) -> float:
    """Seconds a batch of one adds in the worker: Batcher.call of a lone call vs calling the function itself."""
    def run(items: list[bytes], batch_id: int) -> list[bytes]:
        return items

    ids = iter(range(1, 1 << 62))
    batcher: Batcher[bytes, bytes] = Batcher(run, max_size=32, max_wait_s=0.01, slots=Slots(1),
                                             new_id=lambda: next(ids))
    direct = median_seconds(lambda: run([b"x"], 0), calls)
    batched = median_seconds(lambda: batcher.call(b"x"), calls)
    return batched - direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size of the batched function")
    parser.add_argument("--lone-calls", type=int, default=2000)
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
            plain = median_seconds(lambda: client.call_reply("echo", b"x" * 100), args.lone_calls)
            lone = median_seconds(lambda: client.call_reply("echo-batched", b"x" * 100), args.lone_calls)
        results = {name: load(address, name, args.callers, args.seconds)
                   for name in ("mlp", "mlp-handmade", "mlp-batched")}
    in_process = lone_overhead_in_process(100_000)
    print(f"MLP of four {WIDTH}-wide layers, one replica, {args.callers} callers, {args.seconds:g} s each "
          f"({cpu()}):")
    base = results["mlp"][0]
    for name, (rate, p50, p95) in results.items():
        print(f"  {name:13s} {rate:8.1f} calls/s ({rate / base:4.1f}x)  p50 {p50 * 1000:7.1f} ms  "
              f"p95 {p95 * 1000:7.1f} ms")
    rate, _, p95 = results["mlp-batched"]
    print(f"batched / unbatched: {rate / base:.1f}x calls/s (target >= 4x), p95 {p95 / results['mlp'][2]:.2f}x "
          "(target <= 1x)")
    print(f"a lone call through the gateway, p50 of {args.lone_calls}: {plain * 1e6:.0f} us unbatched, "
          f"{lone * 1e6:.0f} us batched ({(lone - plain) * 1e6:+.0f} us); in the worker, a batch of one adds "
          f"{in_process * 1e6:.1f} us (target <= 50 us)")


if __name__ == "__main__":
    main()
