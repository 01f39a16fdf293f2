"""HealthCheck latency while the gateway takes in hostile deploys: a 0.6 MB source of 99,990 empty files, and a
0.3 MB source that expands to a 300 MB file (a compression bomb), against the same gateway idle.

    python benchmarks/deploy_flood.py [--files 99990]

Target: HealthCheck p99 < 50 ms during the 100k-file deploy (the gateway unpacks off its event loop).
"""

from __future__ import annotations

import argparse
import io
import platform
import tarfile
import threading
import time
from pathlib import Path

import grpc
from _harness import gateway_process_with, percentile

from dcf_jupyter.host.credentials import read_owner_token
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc

HANDLER = b"class Handler:\n    def __call__(self, req):\n        return 'ok'\n"
CONFIG = b"functions:\n  flood:\n    runtime: python\n    handler: {dir: ./src, file: handler.py, name: Handler}\n"


def many_files(count: int) -> bytes:
    """A function folder with `count` empty files beside its handler, packed as a deploy carries it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("config.yaml", CONFIG), ("src/handler.py", HANDLER)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for index in range(count):
            tar.addfile(tarfile.TarInfo(f"data/{index // 1000}/{index}"))
    return buffer.getvalue()


class Zeros(io.RawIOBase):
    """`size` zero bytes, read without holding them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def bomb(size: int) -> bytes:
    """A source holding one file of `size` zero bytes (it packs to ~1/1000 of that)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("weights.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size), 1 << 20))
    return buffer.getvalue()


def health_latencies(stub: pb_grpc.GatewayStub, until: threading.Event, pause: float = 0.01) -> list[float]:
    """HealthCheck round trips (seconds), one every `pause`, until `until` is set."""
    latencies = []
    while not until.is_set():
        start = time.perf_counter()
        stub.HealthCheck(pb.Empty(), timeout=30)
        latencies.append(time.perf_counter() - start)
        time.sleep(pause)
    return latencies


def during(stub: pb_grpc.GatewayStub, source: bytes, metadata: tuple[tuple[str, str], ...]) -> tuple[list[float], str,
                                                                                                        float]:
    """HealthCheck latencies while `source` is deployed; what the deploy answered and how long it took."""
    done = threading.Event()
    outcome: list[str] = []

    def deploy() -> None:
        start = time.perf_counter()
        try:
            reply = stub.Deploy(pb.CreateFunctionRequest(Service="flood", Source=source), timeout=300,
                                metadata=metadata)
            outcome.append(reply.Msg)
            stub.Delete(pb.DeleteFunctionRequest(FunctionName="flood"), timeout=60, metadata=metadata)
        except grpc.RpcError as error:
            outcome.append(f"{error.code().name}: {error.details()}")
        outcome.append(str(time.perf_counter() - start))
        done.set()

    worker = threading.Thread(target=deploy)
    worker.start()
    latencies = health_latencies(stub, done)
    worker.join()
    return latencies, outcome[0], float(outcome[1])


def summary(latencies: list[float]) -> str:
    return (f"p50 {percentile(latencies, 50) * 1e3:6.2f} ms  p99 {percentile(latencies, 99) * 1e3:6.2f} ms  "
            f"max {max(latencies) * 1e3:6.2f} ms  ({len(latencies)} checks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=99_990)
    parser.add_argument("--bomb-mb", type=int, default=300)
    args = parser.parse_args()
    flood, zeros = many_files(args.files), bomb(args.bomb_mb * 1024 * 1024)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"CPU: {cpu}")
    print(f"sources: {args.files:,} empty files in {len(flood) / 1e6:.2f} MB; a {args.bomb_mb} MB file in "
          f"{len(zeros) / 1e6:.2f} MB")
    with gateway_process_with() as (address, _pid), grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        metadata = (("authorization", f"Bearer {read_owner_token()}"),)
        idle_done = threading.Event()
        threading.Timer(3.0, idle_done.set).start()
        idle = health_latencies(stub, idle_done)
        print(f"HealthCheck, idle:                   {summary(idle)}")
        for label, source in (("during the many-file deploy", flood), ("during the bomb deploy", zeros)):
            latencies, answer, took = during(stub, source, metadata)
            print(f"HealthCheck, {label + ':':27s} {summary(latencies)}")
            print(f"  the deploy took {took:.1f} s and answered: {answer[:160]}")
        flood_p99 = percentile(during(stub, flood, metadata)[0], 99)
    print(f"p99 during the many-file deploy (again): {flood_p99 * 1e3:.2f} ms  (target < 50 ms); "
          f"idle p99 {percentile(idle, 99) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
