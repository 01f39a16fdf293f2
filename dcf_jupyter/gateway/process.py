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


class PendingGateway:
    """A gateway process that was spawned and may not be listening yet."""

    def __init__(self, process: subprocess.Popen[bytes], state_dir: Path) -> None:
        self.process = process
        self.state_dir = state_dir

    def wait(self, timeout: float = 30.0) -> RunningGateway:
        """Block until the gateway listens (it writes gateway.json) and return it; GatewayStartError otherwise."""
        log_path = self.state_dir / GATEWAY_LOG
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                tail = tail_text(log_path, 5).strip()
                last = tail.splitlines()[-1] if tail else "no output"
                raise GatewayStartError(f"the gateway exited with code {code} while starting: {last}")
            info = read_gateway_file(self.state_dir)
            if info and int(info.get("pid", 0) or 0) == self.process.pid:
                return RunningGateway(pid=self.process.pid, address=str(info["address"]), state_dir=self.state_dir)
            time.sleep(0.02)
        self.process.terminate()
        raise GatewayStartError(f"the gateway did not start within {timeout:g}s; see {log_path}")


def spawn_gateway(
    state_dir: Path, host: str, port: int, *, extra: list[str] | None = None, new_session: bool = True,
    pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None,
) -> PendingGateway:
    """Start a gateway process (output in state_dir/gateway.log) without waiting for it."""
    state_dir = state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    running = find_gateway(state_dir)
    if running is not None:
        raise GatewayStartError(f"a gateway (pid {running.pid}) already serves {state_dir} at {running.address}")
    with open(state_dir / GATEWAY_LOG, "ab") as log:
        process = subprocess.Popen(
            gateway_command(state_dir, host, port, extra),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=new_session, close_fds=True, pass_fds=pass_fds,
            env={**os.environ, **env} if env else None,  # secrets go by environment, never on the command line
        )
    return PendingGateway(process, state_dir)


def start_detached(
    state_dir: Path, host: str, port: int, *, extra: list[str] | None = None, timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> tuple[RunningGateway, subprocess.Popen[bytes]]:
    """Start a gateway in the background and wait until it listens."""
    pending = spawn_gateway(state_dir, host, port, extra=extra, env=env)
    return pending.wait(timeout), pending.process


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
