"""The GPU path, end to end: a `gpu: 1` function using PyTorch on CUDA behind a real gateway (local backend).

Prints what the replica saw (CUDA_VISIBLE_DEVICES, torch.cuda device), and the latency of the same
handler in-process vs through the gateway (unary p50/p95, and frames over one `Invokes` stream).
Needs PyTorch; on a machine without CUDA it still runs and says the model ran on the CPU.

    python benchmarks/gpu.py [--calls 300] [--frames 500] [--json OUT.json] [--flow-window BYTES]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _harness import gateway_process_with, percentile

from dcf_jupyter.client import Client
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.definition.spec import GpuRequest, load_config, write_config

# A small conv net on a 3x224x224 float32 image (602 KB request): the model is built once, each call
# runs one forward pass on the GPU and synchronises, so the reply reports real GPU time.
HANDLER = '''import json, os, time
import numpy as np
import torch


class Handler:
    def __init__(self):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(64, 128, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 10),
        ).to(self.device).eval()

    def __call__(self, req):
        if req.input == b"info":
            return {
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "cuda_available": torch.cuda.is_available(),
                "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                "torch": torch.__version__,
                "pid": os.getpid(),
            }
        x = torch.from_numpy(np.frombuffer(req.input, dtype=np.float32).reshape(1, 3, 224, 224).copy())
        start = time.perf_counter()
        with torch.no_grad():
            y = self.model(x.to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        ms = (time.perf_counter() - start) * 1000
        return {"logits": [round(v, 5) for v in y[0].tolist()], "compute_ms": round(ms, 3)}
'''


class _Req:
    def __init__(self, data: bytes) -> None:
        self.input = data


def make_function(parent: Path) -> Path:
    """Write the gpu-net function folder with `limits.gpu: 1` and the python-gpu runtime."""
    folder = init_function("gpu-net", runtime="python-gpu", parent=parent, handler_source=HANDLER)
    (folder / "requirements.txt").write_text("")  # torch and numpy come from the gateway's Python
    config = load_config(folder / "config.yaml")
    config.functions["gpu-net"].limits.gpu = GpuRequest(1)
    write_config(config, folder / "config.yaml")
    return folder


def load_in_process(folder: Path):
    spec = importlib.util.spec_from_file_location("gpu_net_handler", folder / "src" / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Handler()


def timed(fn, calls: int) -> list[float]:
    fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    """Run the measurement and print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--flow-window", type=int, default=None,
                        help="the gateway's --flow-window (0: gRPC's adaptive windows)")
    args = parser.parse_args()

    import numpy as np

    image = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32).tobytes()
    results: dict[str, object] = {"request_bytes": len(image)}
    with tempfile.TemporaryDirectory(prefix="dcf-gpu-") as tmp:
        folder = make_function(Path(tmp))

        # In-process baseline first, then free its GPU memory before the gateway's worker starts.
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        handler = load_in_process(folder)
        local_info = handler(_Req(b"info"))
        results["in_process_info"] = local_info
        in_proc = timed(lambda: handler(_Req(image)), args.calls)
        reference = handler(_Req(image))["logits"]
        handler = None  # frees its GPU memory before the gateway's worker takes the GPU

        with gateway_process_with() as (address, gateway_pid), Client(address) as client:
            t0 = time.perf_counter()
            client.deploy(folder)
            results["deploy_s"] = round(time.perf_counter() - t0, 3)
            info = client.call("gpu-net", b"info")
            results["replica_info"] = info
            results["replica_is_not_gateway"] = info["pid"] != gateway_pid
            reply = client.call("gpu-net", image)
            results["same_logits_as_in_process"] = bool(
                np.allclose(reply["logits"], reference, atol=1e-3)
            )
            gw = timed(lambda: client.call("gpu-net", image), args.calls)
            # The fixed cost of a call, apart from moving 600 KB: the 4-byte "info" request.
            tiny = timed(lambda: client.call("gpu-net", b"info"), args.calls)
            compute = [client.call("gpu-net", image)["compute_ms"] for _ in range(50)]
            start = time.perf_counter()
            count = sum(1 for _ in client.stream("gpu-net", (image for _ in range(args.frames))))
            stream_s = time.perf_counter() - start
            assert count == args.frames, f"{count} of {args.frames} stream replies"
            client.delete("gpu-net")

    p50_in, p50_gw = percentile(in_proc, 50), percentile(gw, 50)
    results.update({
        "in_process_ms": {"p50": round(p50_in, 3), "p95": round(percentile(in_proc, 95), 3)},
        "gateway_ms": {"p50": round(p50_gw, 3), "p95": round(percentile(gw, 95), 3)},
        "gateway_tiny_call_ms_p50": round(percentile(tiny, 50), 3),
        "replica_compute_ms_p50": round(percentile(compute, 50), 3),
        "gateway_over_in_process_p50": round(p50_gw / p50_in, 2),
        "gateway_overhead_ms_p50": round(p50_gw - p50_in, 3),
        "stream_frames_per_s": round(args.frames / stream_s, 1),
        "in_process_frames_per_s": round(1000 / (sum(in_proc) / len(in_proc)), 1),
    })
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    if info.get("cuda_available") is not True:
        print("NOTE: no CUDA device was visible to the replica; the model ran on the CPU.", file=sys.stderr)


if __name__ == "__main__":
    main()
