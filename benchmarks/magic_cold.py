"""Cold start in a notebook: fresh kernel, `%load_ext dcf_jupyter`, a new `%%dcf_function` hello, first reply.

    python benchmarks/magic_cold.py [--runs 5]

Each run starts a new kernel (so a new embedded gateway and worker too). Prints the median of
the %%dcf_function cell plus the first call, with and without the %load_ext cell. Target: < 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from jupyter_client.manager import KernelManager

HELLO = '%%dcf_function hello\nclass Handler:\n    def __call__(self, req):\n        return "Hello DCF"\n'


def run_once() -> tuple[float, float]:
    """(seconds for the %load_ext cell, seconds from the %%dcf_function cell to the first reply)."""
    with tempfile.TemporaryDirectory(prefix="dcf-cold-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "DCF_GATEWAY"}
        env["DCF_STATE_DIR"] = os.path.join(tmp, "state")
        manager = KernelManager(kernel_name="python3")
        manager.start_kernel(cwd=tmp, env=env)
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            outputs: list[str] = []

            def run(code: str) -> None:
                reply = client.execute_interactive(code, timeout=120, output_hook=lambda m: outputs.append(str(m)))
                if reply["content"]["status"] != "ok":
                    raise RuntimeError(f"{code!r} failed: {reply['content']}\n" + "\n".join(outputs))

            start = time.perf_counter()
            run("%load_ext dcf_jupyter")
            loaded = time.perf_counter()
            run(HELLO)
            run('assert hello(b"") == "Hello DCF"')
            replied = time.perf_counter()
            return loaded - start, replied - loaded
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = [run_once() for _ in range(args.runs)]
    load = statistics.median(r[0] for r in results)
    cell = statistics.median(r[1] for r in results)
    total = statistics.median(r[0] + r[1] for r in results)
    print(f"cold %%dcf_function hello, fresh kernel each run, median of {args.runs}:")
    print(f"  %load_ext cell                      {load:6.2f} s")
    print(f"  %%dcf_function cell -> first reply  {cell:6.2f} s   (target < 1.5 s)")
    print(f"  both together                       {total:6.2f} s")
    print("  runs: " + ", ".join(f"{a:.2f}+{b:.2f}" for a, b in results))
    sys.exit(0)


if __name__ == "__main__":
    main()
