"""Rounds of deploy -> load -> the gateway dies; afterwards no worker of that gateway may remain.

Used by tests/load/test_gateway_death.py (a few rounds) and benchmarks/orphans.py (20 rounds).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dcf_jupyter.client import Client
from dcf_jupyter.errors import DcfError
from dcf_jupyter.host.running import remove_left_socket_dir
from dcf_jupyter.launch import start_detached

ROOT = Path(__file__).resolve().parents[2]
WAYS = ("SIGTERM", "SIGTERM then SIGKILL", "SIGKILL")


def workers_of(state_dir: Path) -> list[int]:
    """Pids of worker processes serving a function of the gateway whose state dir is `state_dir`."""
    needle = str(state_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"dcf_jupyter.worker" in cmdline and needle in cmdline:
            found.append(int(entry.name))
    return found


def _unary(address: str, calls: int, stop: threading.Event) -> None:
    with Client(address) as client, contextlib.suppress(DcfError):  # the gateway dies under it
        for i in range(calls):
            if stop.is_set():
                return
            client.call("echo", str(i).encode(), timeout=10)


def _frames(address: str, frames: int) -> None:
    frame = os.urandom(60 * 1024)
    with Client(address) as client, contextlib.suppress(DcfError):
        for _ in client.stream("echo", (frame for _ in range(frames))):
            pass


@dataclass
class RoundResult:
    """One round: how the gateway died, how long its workers took to go, and any left behind."""

    way: str
    workers: int
    gone_after_s: float
    left: list[int]


def one_round(way: str, *, calls: int, frames: int, replicas: int = 2, within: float = 2.0,
              rng: random.Random | None = None) -> RoundResult:
    """Start a gateway, deploy echo, load it, end the gateway `way`; wait up to `within` s for its workers."""
    rng = rng or random.Random()
    with tempfile.TemporaryDirectory(prefix="dcf-death-") as tmp:
        state_dir = Path(tmp) / "state"
        running, process = start_detached(state_dir, "127.0.0.1", 0)
        try:
            with Client(running.address) as client:
                client.deploy(ROOT / "functions" / "echo", replicas=replicas)
            workers = workers_of(state_dir)
            # Load in flight while the gateway dies, as when a benchmark's clients are still connected.
            stop = threading.Event()
            load = [threading.Thread(target=_unary, args=(running.address, calls, stop), daemon=True),
                    threading.Thread(target=_frames, args=(running.address, frames), daemon=True)]
            for thread in load:
                thread.start()
            time.sleep(rng.uniform(0.05, 0.3))
            if way == "SIGKILL":
                process.kill()
            else:
                process.terminate()
                if way == "SIGTERM then SIGKILL":
                    time.sleep(rng.uniform(0.0, 1.0))
                    process.kill()
            process.wait(30)
            stop.set()
            start = time.monotonic()
            while (left := workers_of(state_dir)) and time.monotonic() - start < within:
                time.sleep(0.02)
            gone = time.monotonic() - start
            for pid in left:  # the test fails on these; don't let them live on
                os.kill(pid, signal.SIGKILL)
            return RoundResult(way, len(workers), gone, left)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            # A SIGKILLed gateway cannot remove its worker-socket dir (the next gateway of a state dir would):
            # remove the one this round made.
            remove_left_socket_dir(state_dir)


def rounds(count: int, *, calls: int, frames: int, seed: int = 0) -> list[RoundResult]:
    """`count` rounds cycling through the three ways a gateway can die."""
    rng = random.Random(seed)
    return [one_round(WAYS[i % len(WAYS)], calls=calls, frames=frames, rng=rng) for i in range(count)]


