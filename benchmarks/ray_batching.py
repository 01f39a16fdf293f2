"""Batching inside a Ray Serve replica: the worker's own gathering (worker/batcher.py, what the ray backend runs)
vs Serve's `@serve.batch`, the same NumPy MLP (four 4096-wide layers), one replica each, 32 concurrent callers
through Serve handles, on a Ray cluster this script starts (and stops).

    python benchmarks/ray_batching.py [--callers 32] [--seconds 8] [--batch 32]

Prints calls/s and p50/p95 of each, and the p50 of a lone call (what batching costs when nobody else calls).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# This folder holds ray.py (another benchmark): keep it off the path so `import ray` is Ray.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
try:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
except ImportError:
    sys.exit("benchmarks/ray_batching.py needs Ray: pip install -e '.[ray]'")

from dcf_jupyter.worker.batcher import Batcher  # noqa: E402 - after the path set-up above
from dcf_jupyter.worker.slots import Slots  # noqa: E402

WIDTH = 4096


class Mlp:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.layers = [rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.sqrt(WIDTH) for _ in range(4)]

    def batch(self, inputs: list[bytes], batch_id: int = 0) -> list[bytes]:
        x = np.stack([np.frombuffer(item, np.float32) for item in inputs])
        for w in self.layers:
            x = np.maximum(x @ w, 0)
        return [row[:16].tobytes() for row in x]


class SelfGathered:
    """The worker's way: each call's thread hands its input to the batcher, the first in line leads."""

    def __init__(self, max_size: int, max_wait_s: float) -> None:
        ids = itertools.count(1)
        self.batcher: Batcher[bytes, bytes] = Batcher(Mlp().batch, max_size=max_size, max_wait_s=max_wait_s,
                                                      slots=Slots(1), new_id=lambda: next(ids))
        self.threads = ThreadPoolExecutor(max_workers=2 * max_size + 4)

    async def __call__(self, x: bytes) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(self.threads, self.batcher.call, x)


class ServeBatched:
    """Serve's way: @serve.batch gathers on the replica's event loop; the model runs off it."""

    def __init__(self, max_size: int, max_wait_s: float) -> None:
        self.mlp = Mlp()
        self.handle_batch.set_max_batch_size(max_size)
        self.handle_batch.set_batch_wait_timeout_s(max_wait_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def handle_batch(self, xs: list[bytes]) -> list[bytes]:
        return await asyncio.get_running_loop().run_in_executor(None, self.mlp.batch, xs)

    async def __call__(self, x: bytes) -> bytes:
        return await self.handle_batch(x)


def load(handle: object, callers: int, seconds: float) -> tuple[float, float, float]:
    """(calls/s, p50 s, p95 s) of `callers` threads calling back to back for `seconds`, after a warm-up."""
    x = np.random.default_rng(1).standard_normal(WIDTH, dtype=np.float32).tobytes()
    stop, measuring = threading.Event(), threading.Event()
    latencies: list[list[float]] = [[] for _ in range(callers)]

    def caller(i: int) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            handle.remote(x).result()  # type: ignore[attr-defined]
            if measuring.is_set():
                latencies[i].append(time.perf_counter() - started)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 4)
    measuring.set()
    started = time.perf_counter()
    time.sleep(seconds)
    took = time.perf_counter() - started
    measured = sorted(value for values in latencies for value in values)
    stop.set()
    for thread in threads:
        thread.join(120)
    return len(measured) / took, measured[len(measured) // 2], measured[int(len(measured) * 0.95)]


def lone(handle: object, calls: int) -> float:
    """p50 seconds of sequential calls."""
    x = np.zeros(WIDTH, np.float32).tobytes()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        handle.remote(x).result()  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
    return sorted(times)[calls // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lone-calls", type=int, default=50)
    args = parser.parse_args()
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 2})
    try:
        results = {}
        for name, kind in (("worker's gathering", SelfGathered), ("@serve.batch", ServeBatched)):
            app = serve.deployment(kind, name=name.replace("'", "").replace(" ", "-").replace("@", ""),
                                   max_ongoing_requests=2 * args.callers, ray_actor_options={"num_cpus": 1})
            handle = serve.run(app.bind(args.batch, 0.01), name="bench", route_prefix=None)
            results[name] = (*load(handle, args.callers, args.seconds), lone(handle, args.lone_calls))
            serve.delete("bench")
        print(f"MLP of four {WIDTH}-wide layers in one Serve replica, {args.callers} callers through handles, "
              f"{args.seconds:g} s each:")
        for name, (rate, p50, p95, alone) in results.items():
            print(f"  {name:20s} {rate:7.1f} calls/s  p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms  "
                  f"lone call p50 {alone * 1000:6.2f} ms")
        ours, serves = results["worker's gathering"], results["@serve.batch"]
        print(f"worker's gathering / @serve.batch: {ours[0] / serves[0]:.2f}x calls/s, p95 {ours[2] / serves[2]:.2f}x, "
              f"lone call {ours[3] / serves[3]:.2f}x")
    finally:
        serve.shutdown()
        ray.shutdown()  # the driver leaves first: Cluster refuses to remove the node it is connected to
        cluster.shutdown()


if __name__ == "__main__":
    main()
