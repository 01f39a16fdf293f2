"""The HTTP face against its baselines, in one run.

    python benchmarks/http_face.py [--calls 2000] [--frames 2000] [--rounds 3]

1. Unary: POST /function/echo (100 bytes) through the gateway's HTTP face vs a bare aiohttp server answering
   the same bytes from the same echo Handler in a worker process over the gateway's own link (target <= 1.3x:
   what the face adds), one keep-alive connection each; beside them a bare server running the Handler
   in-process (what the worker hop costs: every gateway call, gRPC too, crosses it).
2. Streams: 60 KB frames/s over the HTTP face's WebSocket vs the gRPC `Invokes` stream of the same gateway
   (target >= 0.8x).
3. Metrics' cost: what they add to a call, timed in-process, against a gRPC unary Invoke's p50 (target <= 3%);
   beside it the p50 of a gateway counting metrics vs one started with --no-metrics (two processes: noisy).
Targets alternate within each round (drift hits all alike); each keeps its best round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
from _harness import ROOT, cpu, gateway_process_with, percentile

from dcf_jupyter.client import Client
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc

BARE = """
import sys
from pathlib import Path
from aiohttp import web
from dcf_jupyter.worker.handler import Request, load_handler

handler = load_handler(Path(sys.argv[2]))


async def echo(request):
    return web.Response(body=handler(Request(await request.read())), content_type="application/octet-stream")


app = web.Application()
app.router.add_post("/function/echo", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

# The same bare server, its Handler in a worker process behind the gateway's own link (what the gateway's
# architecture costs before its HTTP face adds anything): the face's own overhead is the ratio against this one.
BARE_HOP = """
import asyncio, subprocess, sys, tempfile, time
from pathlib import Path
from aiohttp import web
from dcf_jupyter.backends.local.link import AsyncLink
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol.link import FORM_MESSAGES

folder = tempfile.mkdtemp()
path = f"{folder}/worker.sock"
worker = subprocess.Popen([sys.executable, "-m", "dcf_jupyter.worker", sys.argv[2], "--socket", path])


async def links(app):
    for _ in range(400):
        if Path(path).exists():
            break
        await asyncio.sleep(0.05)
    app["link"] = await AsyncLink.connect(path, 1 << 26)
    yield
    app["link"].close()
    worker.terminate()
    worker.wait(10)


async def echo(request):
    raw = pb.InvokeServiceRequest(Service="echo", Input=await request.read()).SerializeToString()
    reply = pb.Messages.FromString(await request.app["link"].call(FORM_MESSAGES, raw))
    return web.Response(body=reply.Output, content_type="application/octet-stream")


app = web.Application()
app.cleanup_ctx.append(links)
app.router.add_post("/function/echo", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""



@contextlib.contextmanager
def bare_http(source: str, function: Path) -> Iterator[str]:
    """A baseline aiohttp server (`source`, serving `function`) in its own process; yields its address."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(source)
    process = subprocess.Popen([sys.executable, script.name, str(port), str(function)],
                               env={"PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the bare HTTP server did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        Path(script.name).unlink()


async def http_unary(address: str, calls: int, payload: bytes) -> float:
    """p50 seconds of `calls` sequential POSTs on one keep-alive connection."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        url = f"http://{address}/function/echo"
        for _ in range(200):
            async with session.post(url, data=payload) as response:
                await response.read()
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            async with session.post(url, data=payload) as response:
                body = await response.read()
            latencies.append(time.perf_counter() - started)
            assert body == payload
    return percentile(latencies, 50)


async def websocket_fps(address: str, frames: int, frame: bytes) -> float:
    """Frames per second echoed over the HTTP face's WebSocket, sending while receiving."""
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"http://{address}/function/echo/stream", max_msg_size=0) as ws:
        async def send() -> None:
            for _ in range(frames):
                await ws.send_bytes(frame)

        started = time.perf_counter()
        sending = asyncio.create_task(send())
        for _ in range(frames):
            await ws.receive_bytes(timeout=60)
        await sending
        return frames / (time.perf_counter() - started)


def grpc_fps(address: str, frames: int, frame: bytes) -> float:
    """Frames per second echoed over the gateway's gRPC Invokes stream."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        requests = (pb.InvokeServiceRequest(Service="echo", Input=frame) for _ in range(frames))
        started = time.perf_counter()
        count = sum(1 for _ in stub.Invokes(requests))
        assert count == frames
        return frames / (time.perf_counter() - started)


def grpc_unary(address: str, calls: int, payload: bytes) -> float:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        request = pb.InvokeServiceRequest(Service="echo", Input=payload)
        for _ in range(200):
            stub.Invoke(request)
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            stub.Invoke(request)
            latencies.append(time.perf_counter() - started)
    return percentile(latencies, 50)


def metrics_hot_path(calls: int = 200_000) -> float:
    """Seconds the gateway's metrics add to one call: call_started + call_done, as the invoker runs them."""
    from dcf_jupyter.gateway.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    started = time.perf_counter()
    for _ in range(calls):
        metrics.call_started("echo")
        metrics.call_done("echo", "local", "OK", 0.0009)
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu()}; Python {platform.python_version()}")
    payload, frame = b"x" * 100, bytes(60 * 1024)
    best: dict[str, float] = {}

    def keep(label: str, value: float, higher_is_better: bool = False) -> None:
        if label not in best or (value > best[label] if higher_is_better else value < best[label]):
            best[label] = value

    # --open-loopback: the clients measured send no token, as the bare servers need none.
    with gateway_process_with("echo", extra=["--no-docker", "--open-loopback"]) as (address, _), \
            gateway_process_with("echo", extra=["--no-docker", "--no-metrics", "--open-loopback"]) as (quiet, _), \
            bare_http(BARE, ROOT / "functions" / "echo" / "src") as bare, \
            bare_http(BARE_HOP, ROOT / "functions" / "echo") as hop:
        with Client(address) as client:
            http_address = client.info()["http_address"]
        for _ in range(args.rounds):
            keep("http gateway", asyncio.run(http_unary(http_address, args.calls, payload)))
            keep("http bare", asyncio.run(http_unary(bare, args.calls, payload)))
            keep("http hop", asyncio.run(http_unary(hop, args.calls, payload)))
            keep("ws fps", asyncio.run(websocket_fps(http_address, args.frames, frame)), higher_is_better=True)
            keep("grpc fps", grpc_fps(address, args.frames, frame), higher_is_better=True)
            keep("grpc metrics", grpc_unary(address, args.calls, payload))
            keep("grpc no metrics", grpc_unary(quiet, args.calls, payload))
    print(f"unary POST, {len(payload)} bytes, {args.calls} calls x {args.rounds} rounds (best round p50):")
    gateway, hop, bare = best["http gateway"], best["http hop"], best["http bare"]
    print(f"  gateway HTTP face {gateway * 1e6:.0f} us vs bare aiohttp forwarding to the same worker process over "
          f"the same link {hop * 1e6:.0f} us: {gateway / hop:.2f}x (target <= 1.3x: what the face adds)")
    print(f"  bare aiohttp with the Handler in its own process {bare * 1e6:.0f} us: gateway {gateway / bare:.2f}x, "
          f"forwarding {hop / bare:.2f}x (the worker hop every gateway call pays, gRPC too); the same gateway's "
          f"gRPC Invoke {best['grpc metrics'] * 1e6:.0f} us: HTTP/gRPC {gateway / best['grpc metrics']:.2f}x")
    streams = best["ws fps"] / best["grpc fps"]
    print(f"60 KB frames: WebSocket {best['ws fps']:.0f}/s, gRPC Invokes {best['grpc fps']:.0f}/s: {streams:.2f}x "
          "(target >= 0.8x)")
    cost = best["grpc metrics"] / best["grpc no metrics"] - 1
    print(f"gRPC unary p50 with metrics {best['grpc metrics'] * 1e6:.0f} us, without "
          f"{best['grpc no metrics'] * 1e6:.0f} us: {cost * 100:+.1f}% (two gateway processes: mostly where the "
          "scheduler put them)")
    per_call = metrics_hot_path()
    print(f"  what the metrics do per call, timed in-process: {per_call * 1e6:.2f} us = "
          f"{per_call / best['grpc no metrics'] * 100:.2f}% of a call (target <= 3%)")


if __name__ == "__main__":
    main()
