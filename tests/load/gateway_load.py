"""Load on a gateway: many unary clients and many streams against echo; every reply checked, gateway RSS sampled.

Used by tests/load/test_gateway_load.py (small counts) and benchmarks/load.py (full counts).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dcf_jupyter.client import Client


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` in KiB (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@dataclass
class LoadResult:
    """What a load run saw: calls made, failures (with examples), timing and the gateway's RSS over time."""

    calls: int = 0
    errors: list[str] = field(default_factory=list)
    wrong: int = 0  # replies that were not the request echoed back (lost, swapped or reordered)
    seconds: float = 0.0
    rss: list[int] = field(default_factory=list)

    @property
    def rss_growth(self) -> float:
        """Mean RSS of the last quarter of samples over the first quarter's, minus 1."""
        quarter = max(1, len(self.rss) // 4)
        first, last = self.rss[:quarter], self.rss[-quarter:]
        return (sum(last) / len(last)) / (sum(first) / len(first)) - 1

    def summary(self, what: str) -> str:
        return (f"{what}: {self.calls} replies in {self.seconds:.1f} s ({self.calls / self.seconds:.0f}/s), "
                f"{len(self.errors)} errors, {self.wrong} wrong or reordered; gateway RSS "
                f"{self.rss[0] / 1024:.1f} -> {self.rss[-1] / 1024:.1f} MiB (last vs first quarter "
                f"{self.rss_growth:+.1%})")


def _sampled(pid: int, result: LoadResult, work: Callable[[], None], every: float = 0.05) -> None:
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result.rss.append(rss_kib(pid))
            stop.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    try:
        work()
    finally:
        stop.set()
        sampler.join()
        result.rss.append(rss_kib(pid))
        result.seconds = time.perf_counter() - start


def unary_load(address: str, pid: int, clients: int, calls: int, size: int = 256, warm_up: float = 0.1) -> LoadResult:
    """`clients` threads, each with its own channel, making `calls` sequential echo calls.

    An unmeasured round first (`warm_up` x the calls) lets the gateway reach its steady state
    (connections, buffers), so the RSS samples show growth, not start-up.
    """
    if warm_up:
        unary_load(address, pid, clients, max(1, int(calls * warm_up)), size, warm_up=0)
    result = LoadResult()
    lock = threading.Lock()

    def client_run(index: int) -> None:
        with Client(address) as client:
            for call in range(calls):
                payload = f"{index}:{call}:".encode().ljust(size, b".")
                try:
                    reply = client.call("echo", payload, timeout=30)
                except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                    with lock:
                        result.errors.append(f"client {index} call {call}: {exc}")
                    continue
                with lock:
                    result.calls += 1
                    result.wrong += reply != payload

    def work() -> None:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client_run, range(clients)))

    _sampled(pid, result, work)
    return result


def stream_load(address: str, pid: int, streams: int, frames: int, size: int = 4096,
                warm_up: float = 0.1) -> LoadResult:
    """`streams` concurrent Invokes streams of `frames` numbered frames each, one connection per stream;
    replies must match in order.

    The warm-up round runs on the same connections as the measured one, as a long-lived streaming client
    (the camera widget) would: gRPC grows each connection's flow-control window (BDP probing) during its
    first seconds, and that is a connection's steady state, not growth.
    """
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(Client(address)) for _ in range(streams)]
        if warm_up:
            _streams_on(clients, pid, max(1, int(frames * warm_up)), size)
        return _streams_on(clients, pid, frames, size)


def _streams_on(clients: list[Client], pid: int, frames: int, size: int) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()

    def stream_run(index: int) -> None:
        sent = (f"{index}:{n}:".encode().ljust(size, b"#") for n in range(frames))
        expected = 0
        try:
            for reply in clients[index].stream("echo", sent):
                want = f"{index}:{expected}:".encode().ljust(size, b"#")
                with lock:
                    result.calls += 1
                    result.wrong += reply != want
                expected += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                result.errors.append(f"stream {index} after {expected} frames: {exc}")
        if expected != frames:
            with lock:
                result.errors.append(f"stream {index}: {expected} of {frames} replies")

    def work() -> None:
        with ThreadPoolExecutor(len(clients)) as pool:
            list(pool.map(stream_run, range(len(clients))))

    _sampled(pid, result, work)
    return result
