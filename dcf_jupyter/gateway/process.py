"""Gateway processes seen from outside: start one in the background, find it, stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..backends.local import tail_text
from .app import GatewayStartError, read_gateway_file

GATEWAY_LOG = "gateway.log"


@dataclass
class RunningGateway:
    """A gateway process: its pid, address and state dir."""

    pid: int
    address: str
    state_dir: Path


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_gateway(state_dir: Path) -> RunningGateway | None:
    """The gateway serving `state_dir`, if one is running."""
    info = read_gateway_file(state_dir)
    if not info:
        return None
    pid = int(info.get("pid", 0) or 0)
    if pid <= 0 or not pid_alive(pid):
        return None
    return RunningGateway(pid=pid, address=str(info.get("address", "")), state_dir=state_dir)


def gateway_command(state_dir: Path, host: str, port: int, extra: list[str] | None = None) -> list[str]:
    """The command line of a gateway process."""
    return [sys.executable, "-m", "dcf_jupyter.gateway", "--host", host, "--port", str(port),
            "--state-dir", str(state_dir), *(extra or [])]


def start_detached(
    state_dir: Path, host: str, port: int, *, extra: list[str] | None = None, timeout: float = 30.0,
    new_session: bool = True,
) -> tuple[RunningGateway, subprocess.Popen[bytes]]:
    """Start a gateway in the background (output in state_dir/gateway.log) and wait until it answers."""
    state_dir = state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    running = find_gateway(state_dir)
    if running is not None:
        raise GatewayStartError(f"a gateway (pid {running.pid}) already serves {state_dir} at {running.address}")
    log_path = state_dir / GATEWAY_LOG
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            gateway_command(state_dir, host, port, extra),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=new_session, close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = tail_text(log_path, 5).strip()
            raise GatewayStartError(f"the gateway exited with code {code} while starting: {tail.splitlines()[-1] if tail else 'no output'}")
        info = read_gateway_file(state_dir)
        if info and int(info.get("pid", 0) or 0) == process.pid:
            return RunningGateway(pid=process.pid, address=str(info["address"]), state_dir=state_dir), process
        time.sleep(0.05)
    process.terminate()
    raise GatewayStartError(f"the gateway did not start within {timeout:g}s; see {log_path}")


def stop_gateway(state_dir: Path, timeout: float = 15.0) -> RunningGateway | None:
    """SIGTERM the gateway of `state_dir` and wait for it to exit (SIGKILL after `timeout`); None if none ran."""
    running = find_gateway(state_dir)
    if running is None:
        return None
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(running.pid) or _is_zombie(running.pid):
            return running
        time.sleep(0.05)
    os.kill(running.pid, signal.SIGKILL)
    return running


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False
