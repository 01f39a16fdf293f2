"""Workers die with their gateway: 20 rounds of deploy -> load -> the gateway dies -> no worker left within 2 s.

    python benchmarks/orphans.py [--rounds 20] [--calls 1000] [--frames 300]

Each round starts a gateway, deploys echo with 2 replicas, puts unary calls and a stream of 60 KB frames
on it, and ends the gateway in turn with SIGTERM; SIGTERM then SIGKILL after a random 0-1 s; SIGKILL.
tests/load/test_gateway_death.py runs the same with a few rounds.
"""

from __future__ import annotations

import argparse
import sys

from _harness import ROOT, median

sys.path.insert(0, str(ROOT / "tests" / "load"))
from gateway_death import WAYS, rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    results = rounds(args.rounds, calls=args.calls, frames=args.frames, seed=7)
    for way in WAYS:
        mine = [r for r in results if r.way == way]
        left = sum(len(r.left) for r in mine)
        gone_p50 = median([r.gone_after_s for r in mine]) * 1000
        print(f"{way:22} {len(mine):3} rounds, workers gone after p50 {gone_p50:5.0f}"
              f" ms, max {max(r.gone_after_s for r in mine) * 1000:5.0f} ms, left behind: {left}")
    orphans = sum(len(r.left) for r in results)
    print(f"orphaned workers: {orphans} (target 0)")
    return 1 if orphans else 0


if __name__ == "__main__":
    sys.exit(main())
