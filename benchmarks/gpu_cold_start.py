"""Cold starts of a PyTorch GPU function that scales to zero, forked from a warm template vs fresh processes.

Run on a machine with an NVIDIA GPU and PyTorch (no Docker, no TensorFlow needed):

    python benchmarks/gpu_cold_start.py [--rounds 5] [--out DIR]

A `gpu: 1` function with `min_replicas: 0` whose Handler puts a matrix on the GPU: each round waits until the
function is idle, then times a call (arrival at zero replicas to the reply). Checks that every replica forked
from the template runs CUDA on its granted device, that the template itself never opened a GPU device (a CUDA
context cannot cross a fork, so none may exist before it) and that the driver lists replicas only; then the same
rounds on a gateway with DCF_TEMPLATES=0 (every replica a fresh process), the baseline of the same run. Writes
the figures to DIR/gpu_cold_start.json. `--dry` runs the same steps without a GPU (a declared one, a handler
without torch), to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcf_jupyter.client import Client  # noqa: E402
from dcf_jupyter.definition.scaffold import init_function  # noqa: E402
from dcf_jupyter.launch import start_detached, stop_gateway  # noqa: E402

TORCH_HANDLER = """
import os, sys, time
PRELOADED = "torch" in sys.modules  # the template imported it before the fork
import torch


class Handler:
    def __init__(self):
        self.x = torch.randn(2048, 2048, device="cuda")
        (self.x @ self.x).sum().item()  # CUDA and cuBLAS start here, in the replica

    def __call__(self, req):
        started = time.perf_counter()
        total = (self.x @ self.x).sum().item()
        return {"pid": os.getpid(), "parent": os.getppid(), "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "device": torch.cuda.get_device_name(0), "preloaded": PRELOADED, "finite": total == total,
                "matmul_ms": (time.perf_counter() - started) * 1000}
"""

DRY_HANDLER = """
import os, sys


class Handler:
    def __call__(self, req):
        return {"pid": os.getpid(), "parent": os.getppid(), "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "device": "dry run", "preloaded": "numpy" in sys.modules, "finite": True, "matmul_ms": 0.0}
"""


def function(parent: Path, dry: bool) -> Path:
    folder = init_function("gpu-cold", parent=parent, handler_source=textwrap.dedent(DRY_HANDLER if dry
                                                                                      else TORCH_HANDLER))
    config = folder / "config.yaml"
    text = config.read_text().replace("gpu: ''", "gpu: '1'")
    config.write_text(text.replace("    build_args:", "    autoscaling: {min_replicas: 0, max_replicas: 1, "
                                                      "downscale_delay_s: 0.5}\n    build_args:"))
    (folder / "requirements.txt").write_text("numpy\n" if dry else "torch\n")
    return folder


def gpu_files(pid: int) -> list[str]:
    """GPU device files a process has open."""
    found = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/dev/nvidia"):
                found.append(target)
    except OSError as exc:
        return [f"unreadable: {exc}"]
    return sorted(set(found))


def driver_pids() -> list[int]:
    """Processes the driver says use a GPU."""
    result = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                            capture_output=True, text=True)
    return [int(line) for line in result.stdout.split() if line.strip().isdigit()]


def idle(client: Client, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not next(f for f in client.list() if f.name == "gpu-cold").idle:
        if time.monotonic() > deadline:
            raise RuntimeError("gpu-cold did not go idle")
        time.sleep(0.05)


def rounds_on(work: Path, label: str, rounds: int, dry: bool, env: dict[str, str]) -> dict[str, Any]:
    """Deploy on a fresh gateway, then `rounds` cold calls; what they showed."""
    os.environ.update(env)
    state = work / f"state-{label}"
    extra = ["--no-docker"] + (["--gpus", "1"] if dry else [])
    running, _ = start_detached(state, "127.0.0.1", 0, extra=extra)
    out: dict[str, Any] = {"gateway_pid": running.pid}
    try:
        with Client(running.address) as client:
            started = time.perf_counter()
            out["deploy"] = client.deploy(function(work / label, dry), timeout=600).message
            out["deploy_s"] = round(time.perf_counter() - started, 2)
            first = client.call("gpu-cold", timeout=120)
            assert isinstance(first, dict)
            out["first"] = first
            out["template_gpu_files"] = gpu_files(int(first["parent"])) if first["parent"] != running.pid else None
            out["replica_gpu_files"] = gpu_files(int(first["pid"]))
            if not dry:
                out["driver_pids"] = driver_pids()
            cold, replies = [], []
            for _ in range(rounds):
                idle(client)
                started = time.perf_counter()
                reply = client.call("gpu-cold", timeout=120)
                cold.append(time.perf_counter() - started)
                replies.append(reply)
            out["cold_s"] = [round(c, 3) for c in cold]
            out["cold_p50_s"] = round(statistics.median(cold), 3)
            out["replies"] = replies
            out["listing"] = [(f.name, f.status, f.cold_starts, round(f.last_cold_start_s, 3)) for f in client.list()]
            out["log"] = client.logs("gpu-cold", 40)
    finally:
        stop_gateway(state)
    print(f"{label}: deploy {out['deploy_s']} s; cold p50 {out['cold_p50_s']} s {out['cold_s']}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dry", action="store_true", help="no GPU: a declared one, a handler without torch")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcf-gpu-cold-"))
    os.environ["DCF_CONFIG_DIR"] = str(work / "config")
    os.environ["DCF_CACHE_DIR"] = str(work / "cache")
    results: dict[str, Any] = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}",
                               "cpus": os.cpu_count()}
    if not args.dry:
        results["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
        print(results["nvidia_smi"], flush=True)
    results["template"] = rounds_on(work, "template", args.rounds, args.dry, {"DCF_TEMPLATES": "1"})
    results["fresh"] = rounds_on(work, "fresh", args.rounds, args.dry, {"DCF_TEMPLATES": "0"})
    forked, fresh = results["template"], results["fresh"]
    results["ratio_template_to_fresh"] = round(forked["cold_p50_s"] / fresh["cold_p50_s"], 3)
    print(f"a cold start from the template takes {results['ratio_template_to_fresh']}x a fresh process's", flush=True)
    replies = [forked["first"], *forked["replies"]]
    checks = {
        "forked_from_template": all(r["parent"] != forked["gateway_pid"] for r in replies),
        "fresh_are_gateway_children": all(r["parent"] == fresh["gateway_pid"]
                                          for r in [fresh["first"], *fresh["replies"]]),
        "framework_preloaded": all(r["preloaded"] for r in replies),
        "cuda_on_granted_device": all(r["cuda_visible"] == "0" and r["finite"] for r in replies),
        "template_opened_no_gpu": forked["template_gpu_files"] == [],
        "new_replica_each_cold_start": len({r["pid"] for r in replies}) == len(replies),
        "cold_starts_counted": forked["listing"][0][2] == args.rounds,
    }
    if not args.dry:
        checks["driver_lists_no_template"] = int(forked["first"]["parent"]) not in forked["driver_pids"]
    results["checks"] = checks
    print(json.dumps(checks, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_cold_start.json").write_text(json.dumps(results, indent=1, default=str))
    good = all(checks.values())
    print("ALL AS EXPECTED" if good else "NOT AS EXPECTED", flush=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
