"""Where a call's time goes: the gateway against the least a gateway with a worker process could do, in one run.

    python benchmarks/call_path.py [--calls 2000] [--frames 2000] [--rounds 4] [--before CHECKOUT]

Beside the gateway and the bare grpcio servers (the echo Handler in their own process) run two *floors*: servers
that do nothing but forward each call's bytes to a real echo worker process over the worker link, as the gateway
does, with none of its work (routing, auth, queues, timeouts, metrics):
- "aio + link": grpc.aio on uvloop, the gateway's AsyncLink (the gateway's own design, stripped);
- "sync + link": grpcio's synchronous server (C-core threads), each thread a blocking connection to the worker
  (the design #46 proposed measuring).
Unary p50 (100 B) and 60 KB frames/s over one Invokes stream; each target's best round. The gap between a floor
and a bare server is the worker hop (another process on the same cores); the gap between the gateway and the
"aio + link" floor is the gateway's own work. `--before` adds a gateway running an older checkout's code (`git
worktree add /tmp/before REV`) to the same run, with the gateway processes' CPU time per unary call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from _harness import BASELINES, bare_server, cpu, gateway_of_checkout, gateway_process_with, percentile, worker_process
from stream import FRAME_BYTES
from stream import measure as frames_per_second
from unary import measure as unary_latencies

from dcf_jupyter.protocol.link import CALL, FORM_MESSAGE, FORM_MESSAGES, HEADER
from dcf_jupyter.settings import DEFAULT_MAX_MESSAGE_SIZE, grpc_options

SERVICE = "pb.Gateway"
FLOORS = ("aio + link", "sync + link")


def serve_aio(port_file: Path, worker_socket: str) -> None:
    """The "aio + link" floor: Invoke and Invokes forwarded over one AsyncLink (32 frames in flight), on the
    gateway's loop."""
    from dcf_jupyter.backends.local.link import AsyncLink
    from dcf_jupyter.gateway.app import run_event_loop

    async def serve() -> None:
        link = await AsyncLink.connect(worker_socket, DEFAULT_MAX_MESSAGE_SIZE + 1024)

        async def invoke(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await link.call(FORM_MESSAGE, raw)

        async def invokes(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            window: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue(32)

            async def pump() -> None:
                async for raw in requests:
                    await window.put(link.submit(FORM_MESSAGES, raw)[1])
                await window.put(None)

            pumping = asyncio.create_task(pump())
            while (reply := await window.get()) is not None:
                yield await reply
            await pumping

        server = grpc.aio.server(options=grpc_options(DEFAULT_MAX_MESSAGE_SIZE))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Invoke": grpc.unary_unary_rpc_method_handler(invoke),
            "Invokes": grpc.stream_stream_rpc_method_handler(invokes)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_file.write_text(str(port))  # noqa: ASYNC240 - once, before the first call
        await server.wait_for_termination()

    run_event_loop(serve())


def serve_sync(port_file: Path, worker_socket: str) -> None:
    """The "sync + link" floor: grpcio's thread pool, each thread a blocking connection to the worker."""
    connections = threading.local()
    ids = itertools.count(1)

    def call(form: int, raw: bytes) -> bytes:
        if not hasattr(connections, "reader"):
            connection = socket.socket(socket.AF_UNIX)
            connection.connect(worker_socket)
            connections.socket, connections.reader = connection, connection.makefile("rb", buffering=1 << 18)
        connections.socket.sendmsg([HEADER.pack(len(raw), next(ids), CALL, form), raw])
        length = HEADER.unpack(connections.reader.read(HEADER.size))[0]
        return bytes(connections.reader.read(length))

    def invokes(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for raw in requests:  # one frame at a time: a thread has no cheaper way to keep several in flight
            yield call(FORM_MESSAGES, raw)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=grpc_options(DEFAULT_MAX_MESSAGE_SIZE))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Invoke": grpc.unary_unary_rpc_method_handler(lambda raw, context: call(FORM_MESSAGE, raw)),
        "Invokes": grpc.stream_stream_rpc_method_handler(invokes)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_file.write_text(str(port))
    server.wait_for_termination()


@contextlib.contextmanager
def floor(kind: str, worker_socket: str) -> Iterator[str]:
    """One floor server in its own process; yields its address."""
    with tempfile.TemporaryDirectory(prefix="dcf-floor-") as tmp:
        port_file = Path(tmp) / "port"
        process = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port_file), worker_socket])
        try:
            deadline = time.monotonic() + 20
            while not (port_file.exists() and port_file.read_text()):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {kind} floor did not start")
                time.sleep(0.02)
            yield f"127.0.0.1:{port_file.read_text()}"
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--before", type=Path, help="a checkout of an older commit: its gateway joins the run")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT_FILE", "WORKER_SOCKET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, port_file, worker_socket = args.serve
        (serve_aio if kind == FLOORS[0] else serve_sync)(Path(port_file), worker_socket)
        return
    frame = os.urandom(FRAME_BYTES)
    # --open-loopback: the clients measured are DCF's own plaintext stubs, which send no token (as the bare
    # servers need none).
    gateway_options = ["--open-loopback", "--no-docker"]
    with contextlib.ExitStack() as stack:
        targets = {BASELINES[0]: stack.enter_context(bare_server()),
                   BASELINES[1]: stack.enter_context(bare_server(aio=True))}
        pids: dict[str, int] = {}
        if args.before:
            targets["gateway before"], pids["gateway before"] = stack.enter_context(
                gateway_of_checkout(args.before.resolve(), "echo", extra=gateway_options))
        gateway = "gateway after" if args.before else "gateway"
        targets[gateway], pids[gateway] = stack.enter_context(gateway_process_with("echo", extra=gateway_options))
        worker_socket, _ = stack.enter_context(worker_process("echo"))
        for kind in FLOORS:
            targets[kind] = stack.enter_context(floor(kind, worker_socket))
        p50: dict[str, list[float]] = {label: [] for label in targets}
        fps: dict[str, list[float]] = {label: [] for label in targets}
        cpu_per_call: dict[str, list[float]] = {label: [] for label in pids}
        for _ in range(args.rounds):
            for label, address in targets.items():
                used = process_cpu(pids[label]) if label in pids else 0.0
                p50[label].append(percentile(unary_latencies(address, args.calls, b"x" * 100), 50))
                if label in pids:  # the calls and unary_latencies' 200 warm-up calls
                    cpu_per_call[label].append((process_cpu(pids[label]) - used) / (args.calls + 200))
                fps[label].append(frames_per_second(address, args.frames, frame))
    bare = min(min(p50["bare (sync server)"]), min(p50["bare (aio server)"]))
    bare_fps = max(max(fps["bare (sync server)"]), max(fps["bare (aio server)"]))
    print(f"{cpu()}; best of {args.rounds} rounds; ratios against the better bare server")
    print(f"  {'':20s} {'unary p50':>12s} {'':>6s} {'60 KB frames/s':>15s}")
    for label in targets:
        best_p50, best_fps = min(p50[label]), max(fps[label])
        spent = f"   CPU {min(cpu_per_call[label]) * 1e6:4.0f} us a call" if label in cpu_per_call else ""
        print(f"  {label:20s} {best_p50 * 1e6:9.0f} us {best_p50 / bare:5.2f}x {best_fps:12.0f} "
              f"{best_fps / bare_fps:6.2f}x{spent}")


def process_cpu(pid: int) -> float:
    """Seconds of CPU process `pid` has used (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
