"""Load: 50 concurrent clients x 200 unary calls, and 8 concurrent streams x 1,250 frames, against echo.

    python benchmarks/load.py [--clients 50] [--calls 200] [--streams 8] [--frames 1250]

Target: zero errors, zero lost or reordered replies, gateway RSS growth < 10% (last vs first quarter).
Each load runs once unmeasured first (same counts, same connections for the streams), so the quarters compare
steady states. With `--flow-window 0` (gRPC's adaptive windows) the streams' buffers grow 20-35 % within a run,
plateau and are returned afterwards; the default fixed window keeps them flat.
Baseline, in the same run: the same unary load against the bare grpcio server, for the throughput ratio.
"""

from __future__ import annotations

import argparse
import sys

from _harness import BARE_PIDS, ROOT, bare_server, gateway_process_with

sys.path.insert(0, str(ROOT / "tests" / "load"))
from gateway_load import rss_kib, stream_load, unary_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--frames", type=int, default=1250)
    args = parser.parse_args()
    with gateway_process_with("echo") as (address, pid):
        unary = unary_load(address, pid, args.clients, args.calls, warm_up=1.0)
        streams = stream_load(address, pid, args.streams, args.frames, warm_up=1.0)
        settled = rss_kib(pid)
    print(unary.summary(f"unary {args.clients}x{args.calls}"))
    print(streams.summary(f"streams {args.streams}x{args.frames}"))
    print(f"gateway RSS once the load ended: {settled / 1024:.1f} MiB (before it: {unary.rss[0] / 1024:.1f} MiB)")
    with bare_server() as bare_address:
        bare = unary_load(bare_address, BARE_PIDS[bare_address], args.clients, args.calls)
    print(bare.summary("bare grpcio server, same unary load (baseline)"))
    print(f"unary throughput gateway/bare: {(unary.calls / unary.seconds) / (bare.calls / bare.seconds):.2f}x")
    ok = all(not r.errors and not r.wrong and r.rss_growth < 0.10 for r in (unary, streams))
    for result in (unary, streams):
        for error in result.errors[:5]:
            print("  error:", error)
    print(f"target (no errors, nothing lost or reordered, RSS growth < 10%): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
