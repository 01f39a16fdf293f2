"""Two PyTorch functions sharing one real GPU (`gpu: "0.5"` each), on the local backend of a real gateway.

Run on a machine with an NVIDIA GPU and PyTorch (no Docker, no TensorFlow needed):

    python benchmarks/gpu_share_check.py [--out DIR]

It deploys two `gpu: "0.5"` functions that each keep a block of GPU memory, calls both, reads the gateway's GPU
status (who holds the device, memory per replica from the driver), checks that a third share and a scale-up
that do not fit are refused with a sentence, that each replica's PyTorch is capped at its share (an allocation
past it fails in that function alone, while the other keeps answering), and that a delete gives the share back.
Prints every figure and writes them to DIR/gpu_share.json. `--dry` runs the same steps without a GPU (a declared
one, handlers without torch), to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from dcf_jupyter.errors import DcfError  # noqa: E402
from dcf_jupyter.launch import start_detached, stop_gateway  # noqa: E402

TORCH_HANDLER = """
import json, os, time
import torch


class Handler:
    def __init__(self):
        self.device = torch.device("cuda")
        self.block = torch.empty(int(float(os.environ["HOLD_GIB"]) * 2**30), dtype=torch.uint8, device=self.device)

    def __call__(self, req):
        ask = req.input.decode() or "status"
        if ask.startswith("alloc:"):
            extra = torch.empty(int(float(ask[6:]) * 2**30), dtype=torch.uint8, device=self.device)
            del extra
        x = torch.randn(4096, 4096, device=self.device)
        started = time.perf_counter()
        (x @ x).sum().item()
        return {"cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "share": os.environ.get("DCF_GPU_SHARE"),
                "device": torch.cuda.get_device_name(0), "pid": os.getpid(),
                "total_gib": torch.cuda.get_device_properties(0).total_memory / 2**30,
                "reserved_gib": torch.cuda.memory_reserved() / 2**30,
                "matmul_ms": (time.perf_counter() - started) * 1000}
"""

DRY_HANDLER = """
import os


class Handler:
    def __call__(self, req):
        ask = req.input.decode() or "status"
        if ask.startswith("alloc:") and float(ask[6:]) > 40:
            raise MemoryError("CUDA out of memory (dry run)")
        return {"cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "share": os.environ.get("DCF_GPU_SHARE"),
                "pid": os.getpid()}
"""


def function(parent: Path, name: str, handler: str, hold_gib: float) -> Path:
    folder = init_function(name, parent=parent, handler_source=textwrap.dedent(handler))
    config = folder / "config.yaml"
    text = config.read_text().replace("gpu: ''", "gpu: '0.5'")
    config.write_text(text.replace("    build_args:", f"    environment: [HOLD_GIB={hold_gib}]\n    build_args:"))
    (folder / "requirements.txt").write_text("")
    return folder


def step(results: dict[str, Any], key: str, action: Any) -> Any:
    started = time.perf_counter()
    try:
        value = action()
        ok = True
    except DcfError as exc:
        value, ok = str(exc).splitlines()[0], False
    results[key] = {"ok": ok, "value": value, "seconds": round(time.perf_counter() - started, 2)}
    print(f"{key}: {'ok' if ok else 'refused/failed'} in {results[key]['seconds']}s: {value}", flush=True)
    return value if ok else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--dry", action="store_true", help="no GPU: a declared one, handlers without torch")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcf-gpu-check-"))
    os.environ["DCF_CONFIG_DIR"] = str(work / "config")
    os.environ["DCF_CACHE_DIR"] = str(work / "cache")
    results: dict[str, Any] = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}"}
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True) if not args.dry else None
    results["nvidia_smi"] = smi.stdout.strip() if smi else "dry run"
    print(results["nvidia_smi"], flush=True)
    handler = DRY_HANDLER if args.dry else TORCH_HANDLER
    a = function(work, "share-a", handler, 20)
    b = function(work, "share-b", handler, 30)
    c = function(work, "share-c", handler, 1)
    extra = ["--no-docker"] + (["--gpus", "1"] if args.dry else [])
    running, _ = start_detached(work / "state", "127.0.0.1", 0, extra=extra)
    try:
        with Client(running.address) as client:
            results["inventory"] = client.info()["gpu_source"]
            step(results, "deploy_a", lambda: client.deploy(a, timeout=600))
            step(results, "deploy_b", lambda: client.deploy(b, timeout=600))
            step(results, "call_a", lambda: client.call("share-a", "status"))
            step(results, "call_b", lambda: client.call("share-b", "status"))
            results["gpus"] = client.info()["gpus"]
            print(json.dumps(results["gpus"], indent=1), flush=True)
            step(results, "listing", lambda: [(f.name, [g.describe() for g in f.gpus]) for f in client.list()])
            step(results, "deploy_c_refused", lambda: client.deploy(c, timeout=600))
            step(results, "scale_a_refused", lambda: client.scale("share-a", 2, timeout=600))
            # 20 GiB held + 60 GiB more is past half of the device: a's own OOM, b unaffected.
            step(results, "a_past_its_share", lambda: client.call("share-a", "alloc:60"))
            step(results, "a_after_oom", lambda: client.call("share-a", "status"))
            step(results, "b_within_its_share", lambda: client.call("share-b", "alloc:30"))
            step(results, "delete_b", lambda: client.delete("share-b"))
            step(results, "scale_a_to_2", lambda: client.scale("share-a", 2, timeout=600))
            step(results, "listing_after", lambda: [(f.name, [g.describe() for g in f.gpus]) for f in client.list()])
            results["log_a"] = client.logs("share-a", 30)
    finally:
        stop_gateway(work / "state")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_share.json").write_text(json.dumps(results, indent=1, default=str))
    gateway_log = work / "state" / "gateway.log"
    if gateway_log.exists():
        (args.out / "gateway.log").write_text(gateway_log.read_text())
    expected_ok = ["deploy_a", "deploy_b", "call_a", "call_b", "a_after_oom", "b_within_its_share", "scale_a_to_2"]
    expected_refused = ["deploy_c_refused", "scale_a_refused", "a_past_its_share"]
    good = all(results[k]["ok"] for k in expected_ok) and not any(results[k]["ok"] for k in expected_refused)
    print("ALL AS EXPECTED" if good else "NOT AS EXPECTED", flush=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
