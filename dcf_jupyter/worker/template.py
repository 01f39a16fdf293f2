"""A warm template for worker processes: it imports once what a function's replicas need (the worker itself,
then NumPy, TensorFlow, PyTorch ... as the gateway lists them) and forks a replica when the gateway asks.

    python -m dcf_jupyter.worker.template --socket PATH --status-fd N --lifeline-fd N [--preload numpy,tensorflow]

A replica's start then costs its Handler() and not the interpreter's start and the framework's import: a
TensorFlow function answers its first call in ~0.7 s instead of ~3.5 s (benchmarks/scale_to_zero.py).

Forking is safe here because the template does nothing but import: it starts no thread of its own, opens no
connection and never touches a GPU. A CUDA context cannot cross a fork, so the template checks after its
imports that no GPU device is open (frameworks create their CUDA context on first use, not on import) and
says so in its status line when one is; the gateway then starts that function's replicas as fresh processes.
Each replica sets its own environment (CUDA_VISIBLE_DEVICES included) before its Handler runs, so CUDA starts
in the replica, on the replica's devices. Frameworks' native threads started at import (TensorFlow starts two)
are not copied by fork; the frameworks preloaded here create their pools again when first used.

One request per connection: a length-prefixed JSON {"argv", "env", "cwd"} with three descriptors (the status
pipe, the log file, the lifeline); the template answers {"pid"} and, when that replica ends, {"exit": code}.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HEADER = struct.Struct("!I")
MAX_REQUEST = 16 * 1024 * 1024
PASSED_FDS = 3  # status pipe, log file, lifeline


def send_message(connection: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """One length-prefixed JSON message, with descriptors riding along."""
    data = json.dumps(message).encode()
    payload = HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(connection, [payload], fds)
        payload = payload[sent:]
    if payload:
        connection.sendall(payload)


def receive_message(connection: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the descriptors that came with it; (None, []) at EOF."""
    buffer, fds = b"", []
    while len(buffer) < HEADER.size or len(buffer) < HEADER.size + HEADER.unpack_from(buffer)[0]:
        if len(buffer) >= HEADER.size and HEADER.unpack_from(buffer)[0] > MAX_REQUEST:
            raise ValueError("message too large")
        data, more, _, _ = socket.recv_fds(connection, 65536, PASSED_FDS)
        fds += more
        if not data:
            for fd in fds:
                os.close(fd)
            return None, []
        buffer += data
    size = HEADER.unpack_from(buffer)[0]
    return json.loads(buffer[HEADER.size:HEADER.size + size]), fds


def peer_uid(connection: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (-1 where the system does not say)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return os.getuid()  # macOS: the 0700 folder is the guard
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", credentials)[1])


def gpu_in_use() -> str:
    """An open GPU device of this process ('' when none): a CUDA context that a fork would break."""
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith(("/dev/nvidia", "/dev/dri")):
                    return target
    return ""


def preload(modules: list[str]) -> tuple[list[str], dict[str, str]]:
    """Import `modules` (the worker's own first); those imported, and why the others were not."""
    loaded, failed = [], {}
    for name in ["dcf_jupyter.worker.process", *modules]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - a module that does not import here is just not preloaded
            failed[name] = f"{type(exc).__name__}: {exc}"
    return loaded, failed


def _become_replica(request: dict[str, Any], fds: list[int], listener: socket.socket,
                    connections: list[socket.socket]) -> None:
    """In the forked child: take the replica's descriptors, environment and folder, then run the worker."""
    status_fd, log_fd, lifeline_fd = fds
    listener.close()
    for connection in connections:
        connection.close()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()  # signals to the template's group are not the replica's
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in (null, log_fd):
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    # Every replica draws its own random numbers (Python's `random` reseeds itself at fork; NumPy does not).
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        with contextlib.suppress(Exception):
            numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.argv = ["python -m dcf_jupyter.worker", *request["argv"]]
    from .process import main

    argv = [*request["argv"], "--status-fd", str(status_fd), "--lifeline-fd", str(lifeline_fd)]
    code = 1
    try:
        code = main(argv)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(listener: socket.socket, lifeline_fd: int) -> None:
    """Fork a replica for each request until the lifeline reaches EOF; report each replica's end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}  # pid -> the connection that asked for it
    open_connections: list[socket.socket] = []
    while True:
        ready, _, _ = select.select([listener.fileno(), lifeline_fd, wake_r], [], [])
        if lifeline_fd in ready:
            with contextlib.suppress(OSError):
                if not os.read(lifeline_fd, 1):
                    return
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            _reap(waiting, open_connections)
        if listener.fileno() in ready:
            connection, _ = listener.accept()
            fds: list[int] = []
            try:
                if peer_uid(connection) != os.getuid():  # its folder is the gateway's own (0700); and then
                    raise ValueError("only the gateway's own user may ask for replicas")
                connection.settimeout(10)
                request, fds = receive_message(connection)
                if request is None or len(fds) != PASSED_FDS:
                    raise ValueError("a request needs its three descriptors")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _become_replica(request, fds, listener, [*open_connections, connection])
                waiting[pid] = connection
                open_connections.append(connection)
                send_message(connection, {"pid": pid})
            except (OSError, ValueError) as exc:
                with contextlib.suppress(OSError):
                    send_message(connection, {"error": str(exc)})
                connection.close()
            finally:
                for fd in fds:
                    os.close(fd)
            _reap(waiting, open_connections)


def _reap(waiting: dict[int, socket.socket], open_connections: list[socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = waiting.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):
                send_message(connection, {"exit": os.waitstatus_to_exitcode(status)})
            connection.close()
            open_connections.remove(connection)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a template process."""
    parser = argparse.ArgumentParser(prog="python -m dcf_jupyter.worker.template",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, type=Path, help="take fork requests on this Unix socket")
    parser.add_argument("--status-fd", required=True, type=int, help="write one JSON readiness line here")
    parser.add_argument("--lifeline-fd", required=True, type=int, help="exit when this fd reaches EOF")
    parser.add_argument("--preload", default="", help="modules to import, comma-separated")
    args = parser.parse_args(argv)
    # Python 3.12 warns at every fork of a process with threads; the template's only threads are a framework's
    # idle import-time ones, which its replicas start again when they need them (see the module docstring).
    warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning)
    started = time.monotonic()
    from .process import use_extra_site

    use_extra_site()
    loaded, failed = preload([name for name in args.preload.split(",") if name])
    gpu = gpu_in_use()
    with contextlib.suppress(FileNotFoundError):
        args.socket.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(args.socket))
    listener.listen(64)
    status = {"ready": not gpu, "pid": os.getpid(), "preloaded": loaded, "failed": failed,
              "seconds": round(time.monotonic() - started, 3),
              "error": f"a preloaded module opened {gpu}: replicas cannot be forked from it" if gpu else ""}
    with contextlib.suppress(OSError):
        os.write(args.status_fd, (json.dumps(status) + "\n").encode())
        os.close(args.status_fd)
    if gpu:
        return 5
    serve(listener, args.lifeline_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
