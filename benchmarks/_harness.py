"""Shared set-up for the ratio benchmarks: a real gateway with echo deployed, and the bare baseline server."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcf_jupyter.client import Client  # noqa: E402 - after the sys.path or importorskip set-up above
from dcf_jupyter.launch import start_detached, stop_gateway  # noqa: E402 - after the sys.path or importorskip set-up above


def function(parent: Path, name: str, source: str, **keys: object) -> Path:
    """A function folder `parent/name` with `source` as its handler and these config.yaml keys set."""
    import yaml

    from dcf_jupyter.definition.scaffold import init_function

    folder = init_function(name, parent=parent, handler_source=source)
    config = folder / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["functions"][name].update(keys)
    config.write_text(yaml.safe_dump(data))
    return folder


def median_seconds(fn: Callable[[], object], calls: int) -> float:
    """Median seconds per call of `fn` over `calls` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def gateway_process_with(*functions: str, extra: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """A gateway on a free loopback port with functions/<name> deployed; yields its address and pid."""
    with tempfile.TemporaryDirectory(prefix="dcf-bench-") as tmp:
        running, _ = start_detached(Path(tmp) / "state", "127.0.0.1", 0, extra=extra)
        try:
            with Client(running.address) as client:
                for name in functions:
                    client.deploy(ROOT / "functions" / name)
            yield running.address, running.pid
        finally:
            stop_gateway(Path(tmp) / "state")


@contextlib.contextmanager
def gateway_of_checkout(checkout: Path, *functions: str, extra: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """A gateway running another checkout's code (an older commit, for before/after in one run: `git worktree add
    /tmp/before REV`), with that checkout's functions/<name> deployed; yields its address and pid."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}  # ahead of this checkout's editable install
    with tempfile.TemporaryDirectory(prefix="dcf-bench-before-") as tmp:
        state = Path(tmp) / "state"
        start = (
            "import json, sys\nfrom pathlib import Path\nfrom dcf_jupyter.client import Client\n"
            "from dcf_jupyter.launch import start_detached\n"
            "running, _ = start_detached(Path(sys.argv[1]), '127.0.0.1', 0, extra=json.loads(sys.argv[2]))\n"
            "with Client(running.address) as client:\n"
            "    for folder in sys.argv[3:]:\n"
            "        client.deploy(folder)\n"
            "print(json.dumps([running.address, running.pid]))\n")
        folders = [str(checkout / "functions" / name) for name in functions]
        said = subprocess.run([sys.executable, "-c", start, str(state), json.dumps(extra or []), *folders], env=env,
                              check=True, capture_output=True, text=True).stdout
        try:
            address, pid = json.loads(said.strip().splitlines()[-1])
            yield address, pid
        finally:
            stop = ("import sys\nfrom pathlib import Path\nfrom dcf_jupyter.launch import stop_gateway\n"
                    "stop_gateway(Path(sys.argv[1]))\n")
            subprocess.run([sys.executable, "-c", stop, str(state)], env=env, check=True)


@contextlib.contextmanager
def gateway_with(*functions: str, extra: list[str] | None = None) -> Iterator[str]:
    """A gateway on a free loopback port with functions/<name> deployed; yields its address."""
    with gateway_process_with(*functions, extra=extra) as (address, _):
        yield address


@contextlib.contextmanager
def bare_server(aio: bool = False) -> Iterator[str]:
    """The baseline grpcio server in its own process; yields its address."""
    with tempfile.TemporaryDirectory(prefix="dcf-bare-") as tmp:
        port_file = Path(tmp) / "port"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bare_server.py"), str(port_file)] + (["--aio"] if aio else [])
        process = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 20
            while not (port_file.exists() and port_file.read_text()):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare server did not start")
                time.sleep(0.02)
            address = f"127.0.0.1:{port_file.read_text()}"
            BARE_PIDS[address] = process.pid
            yield address
        finally:
            process.terminate()
            process.wait(10)


@contextlib.contextmanager
def worker_process(function: str) -> Iterator[tuple[str, str]]:
    """functions/<function>'s worker process alone, as the gateway starts one, serving its framed link on a Unix
    socket and DCF gRPC on a loopback port; yields (socket path, gRPC address)."""
    with tempfile.TemporaryDirectory(prefix="dcf-worker-") as tmp:
        socket_path = str(Path(tmp) / "worker.sock")
        status_read, status_write = os.pipe()
        cmd = [sys.executable, "-m", "dcf_jupyter.worker", str(ROOT / "functions" / function), "--socket",
               socket_path, "--grpc", "127.0.0.1:0", "--status-fd", str(status_write)]
        process = subprocess.Popen(cmd, pass_fds=(status_write,))
        os.close(status_write)
        try:
            with os.fdopen(status_read) as status:
                ready = json.loads(status.readline() or "{}")
            if not ready.get("ready"):
                raise RuntimeError(f"the {function} worker did not start: {ready}")
            yield socket_path, f"127.0.0.1:{ready['grpc_port']}"
        finally:
            process.terminate()
            process.wait(10)


BASELINES = ("bare (sync server)", "bare (aio server)")
BARE_PIDS: dict[str, int] = {}  # address -> pid of the running bare servers


@contextlib.contextmanager
def gateway_and_baselines(*functions: str) -> Iterator[dict[str, str]]:
    """Addresses of both bare baselines and of a gateway with `functions` deployed, labelled."""
    # --open-loopback: the clients measured are DCF's own plaintext stubs, which send no token (as the bare
    # servers need none).
    with gateway_with(*functions, extra=["--open-loopback"]) as gw, bare_server() as bare, \
            bare_server(aio=True) as bare_aio:
        yield {BASELINES[0]: bare, BASELINES[1]: bare_aio, "gateway": gw}


def compare(
    targets: dict[str, str], measure: Callable[[str], float], rounds: int, *, higher_is_better: bool
) -> tuple[dict[str, float], str, float]:
    """Measure every target `rounds` times, alternating (so drift hits all alike); keep each one's best round.

    Returns (best per label, the better baseline's label, gateway / that baseline).
    """
    results: dict[str, list[float]] = {label: [] for label in targets}
    for _ in range(rounds):
        for label, address in targets.items():
            results[label].append(measure(address))
    pick = max if higher_is_better else min
    best = {label: pick(values) for label, values in results.items()}
    baseline = pick(BASELINES, key=lambda label: best[label])
    return best, baseline, best["gateway"] / best[baseline]


def cpu() -> str:
    """This machine's CPU model and count, to print beside every figure."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []
    return f"{names[0] if names else platform.processor()} x{len(names) or os.cpu_count()}"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)
