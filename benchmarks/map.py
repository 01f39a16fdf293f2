"""`.map`: a dataset through a function, against a loop of calls, in one run on this machine.

1. 10,000 inputs to a no-op function through `.map`, vs a loop of `call`s (inputs per second, overhead each).
2. 200 inputs to a 0.1 s function starting at zero replicas: `max_replicas: 8` vs `max_replicas: 1`.
3. This process's memory over a 100,000-input map of a generator (flat: inputs are streamed, not held).

    python benchmarks/map.py [--inputs 10000] [--slow 200] [--long 100000]

Targets (issue "A dataset, not a call"): >= 5,000 inputs/s (<= 0.2 ms overhead each); >= 7x faster with 8
replicas; memory flat. Figures are this machine's (its CPU is printed beside them).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _harness import cpu, function, gateway_with

from dcf_jupyter.client import Client

NOOP = """
class Handler:
    def __call__(self, req):
        return req.input
"""
SLEEPS = """
import time


class Handler:
    def __call__(self, req):
        time.sleep(0.1)
        return req.input
"""


def rss_mib() -> float:
    """This process's resident memory (Linux /proc), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def throughput(client: Client, inputs: int) -> None:
    started = time.perf_counter()
    results = list(client.map("noop", (b"%d" % i for i in range(inputs)), progress=False))
    mapped = time.perf_counter() - started
    assert results == [b"%d" % i for i in range(inputs)]
    loop_calls = max(1000, inputs // 10)
    started = time.perf_counter()
    for i in range(loop_calls):
        client.call("noop", b"%d" % i)
    looped = time.perf_counter() - started
    rate, loop_rate = inputs / mapped, loop_calls / looped
    print(f"no-op, {inputs} inputs: map {rate:,.0f} inputs/s ({1e6 / rate:.0f} us each), loop of calls "
          f"{loop_rate:,.0f} calls/s ({1e6 / loop_rate:.0f} us each): map {rate / loop_rate:.1f}x the loop "
          f"(target >= 5,000 inputs/s)")


def scale_out(client: Client, parent: Path, inputs: int) -> None:
    seconds = {}
    for most in (1, 8):
        name = f"sleeps-{most}"
        client.deploy(function(parent, name, SLEEPS, autoscaling={
            "min_replicas": 0, "max_replicas": most, "upscale_delay_s": 0, "downscale_delay_s": 1}))
        while client.get(name).replicas:  # the deploy's replica goes once idle for the downscale delay
            time.sleep(0.1)
        started = time.perf_counter()
        assert len(list(client.map(name, (b"x" for _ in range(inputs)), progress=False))) == inputs
        seconds[most] = time.perf_counter() - started
        print(f"0.1 s function, {inputs} inputs from zero replicas, max_replicas {most}: {seconds[most]:.2f} s "
              f"({client.get(name).replicas} replicas at the end)")
    print(f"max_replicas 8 vs 1: {seconds[1] / seconds[8]:.1f}x faster (target >= 7x)")


def memory(client: Client, inputs: int) -> None:
    marks = {}
    before = rss_mib()
    for done, _ in enumerate(client.map("noop", (b"%d" % i for i in range(inputs)), progress=False), 1):
        if done in (inputs // 10, inputs // 2, inputs):
            marks[done] = rss_mib()
    said = ", ".join(f"{done:,}: {mib:.1f} MiB" for done, mib in marks.items())
    growth = marks[inputs] - marks[inputs // 10]
    print(f"this process over a {inputs:,}-input map: before {before:.1f} MiB; after {said} "
          f"(+{growth:.1f} MiB from 10% to the end; flat is the target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--long", type=int, default=100_000)
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    with (tempfile.TemporaryDirectory(prefix="dcf-map-") as tmp, gateway_with() as address,
          Client(address) as client):
        client.deploy(function(Path(tmp), "noop", NOOP))
        client.call("noop", b"warm")
        throughput(client, args.inputs)
        memory(client, args.long)
        scale_out(client, Path(tmp), args.slow)


if __name__ == "__main__":
    main()
