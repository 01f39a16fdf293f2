"""Redeploy: re-running a changed `%%dcf_function` cell, and `dcf function deploy` of a changed folder.

    python benchmarks/redeploy.py [--runs 20]

The cell runs in a real kernel (jupyter_client) against a gateway of this run; each re-run changes the
handler, so every run really deploys a new revision, and is timed until the cell has finished (the new
revision serves). `dcf function deploy` runs as a user's shell runs it (a new process each time); the same
run measures `dcf --version` alone, the CLI's start-up, as its baseline. Target: p95 < 0.3 s for the cell;
the CLI's figure is reported beside its start-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import gateway_with, median, percentile
from jupyter_client.manager import KernelManager

from dcf_jupyter.definition.scaffold import init_function

CELL = '%%dcf_function again\nclass Handler:\n    def __call__(self, req):\n        return "v{n}"\n'


def cell_reruns(address: str, runs: int, workdir: Path) -> list[float]:
    """Seconds per re-run of a changed %%dcf_function cell, in one kernel."""
    env = {**os.environ, "DCF_GATEWAY": address}
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(workdir), env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)

        def run(code: str) -> float:
            start = time.perf_counter()
            reply = client.execute_interactive(code, timeout=120, output_hook=lambda message: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"{code!r} failed: {reply['content']}")
            return time.perf_counter() - start

        run("%load_ext dcf_jupyter")
        run(CELL.format(n=-1))  # the first deploy is not a redeploy
        times = [run(CELL.format(n=n)) for n in range(runs)]
        run(f'assert again(b"") == "v{runs - 1}"')
        return times
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)


def cli_redeploys(address: str, runs: int, workdir: Path) -> tuple[list[float], list[float]]:
    """(seconds per `dcf function deploy` of a changed folder, seconds per `dcf --version`)."""
    folder = init_function("again-cli", parent=workdir)
    handler = folder / "src" / "handler.py"
    dcf = [sys.executable, "-m", "dcf_jupyter.cli"]

    def timed(command: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start

    timed([*dcf, "-g", address, "function", "deploy", "-f", str(folder / "config.yaml")])
    deploys, startups = [], []
    for n in range(runs):
        handler.write_text(f"class Handler:\n    def __call__(self, req):\n        return 'v{n}'\n")
        deploys.append(timed([*dcf, "-g", address, "function", "deploy", "-f", str(folder / "config.yaml")]))
        startups.append(timed([*dcf, "--version"]))
    return deploys, startups


def report(label: str, values: list[float]) -> None:
    print(f"{label:38} p50 {median(values) * 1000:6.0f} ms   p95 {percentile(values, 95) * 1000:6.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with gateway_with() as address, tempfile.TemporaryDirectory(prefix="dcf-redeploy-") as tmp:
        cells = cell_reruns(address, args.runs, Path(tmp))
        deploys, startups = cli_redeploys(address, args.runs, Path(tmp))
    report("%%dcf_function re-run (changed)", cells)
    report("dcf function deploy (changed)", deploys)
    report("dcf --version (CLI start-up, baseline)", startups)
    print(f"deploy minus start-up, p50: {(median(deploys) - median(startups)) * 1000:.0f} ms")
    print(f"target: cell p95 < 300 ms: {'met' if percentile(cells, 95) < 0.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
