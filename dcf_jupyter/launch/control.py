"""Gateway processes seen from outside: start one in the background (with `gateway.options`' flags), wait until
it listens, find it, stop it. What kernels, the CLI and the JupyterLab panel share to start gateways; importable
without the gateway server (no grpc)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import GatewayStartError
from ..host.credentials import PRIVATE_FILE_MODE
from ..host.logfile import tail_text
from ..host.pids import pid_alive
from ..host.running import GATEWAY_LOG, RunningGateway, find_gateway, read_gateway_file
from ..settings import DEFAULT_HOST, DEFAULT_PORT, ENV_TOKEN, default_state_dir


def start_own_gateway(*, default_port_taken: bool = False) -> RunningGateway:
    """Start the user's gateway in the background, in their default state dir: on 127.0.0.1:32222, or on a free
    port when another user's process holds that one (clients find it through the state dir). GatewayStartError
    when the gateway of that state dir runs but does not answer."""
    state_dir = default_state_dir()
    running = find_gateway(state_dir)
    if running is not None:
        raise GatewayStartError(f"your gateway (pid {running.pid}) at {running.address} does not answer; see "
                                f"{state_dir / GATEWAY_LOG}, or restart it with `dcf gateway stop` and "
                                "`dcf gateway start --detach`")
    return start_detached(state_dir, DEFAULT_HOST, 0 if default_port_taken else DEFAULT_PORT)[0]


def gateway_command(state_dir: Path, host: str, port: int, extra: list[str] | None = None) -> list[str]:
    """The command line of a gateway process running in the background (its output: STATE_DIR/gateway.log)."""
    return [sys.executable, "-m", "dcf_jupyter.gateway", "--host", host, "--port", str(port),
            "--state-dir", str(state_dir), "--log-file", str(state_dir / GATEWAY_LOG), *(extra or [])]


class PendingGateway:
    """A gateway process that was spawned and may not be listening yet."""

    def __init__(self, process: subprocess.Popen[bytes], state_dir: Path, *, created: bool = False) -> None:
        self.process = process
        self.state_dir = state_dir
        self.created = created  # the state dir is new: a start that fails leaves nothing behind

    def wait(self, timeout: float = 30.0) -> RunningGateway:
        """Block until the gateway listens (it writes gateway.json) and return it; GatewayStartError otherwise."""
        log_path = self.state_dir / GATEWAY_LOG
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                tail = tail_text(log_path, 5).strip()
                last = tail.splitlines()[-1] if tail else "no output"
                self._forget()
                raise GatewayStartError(f"the gateway exited with code {code} while starting: "
                                        f"{last.removeprefix('Error: ')}")
            info = read_gateway_file(self.state_dir)
            if info and int(str(info.get("pid") or 0)) == self.process.pid:
                return RunningGateway.from_record(info, self.state_dir)
            time.sleep(0.02)
        self.process.terminate()
        raise GatewayStartError(f"the gateway did not start within {timeout:g}s; see {log_path}")

    def _forget(self) -> None:
        if self.created:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def spawn_gateway(
    state_dir: Path, host: str, port: int, *, extra: list[str] | None = None, new_session: bool = True,
    pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None, token: str | None = None,
) -> PendingGateway:
    """Start a gateway process (output in state_dir/gateway.log) without waiting for it. Its token (`token`, else
    $DCF_TOKEN of `env` or of this process; none: the gateway uses its owner's) goes over a pipe, never on its
    command line or in its environment, where the functions it runs could read it."""
    state_dir = state_dir.expanduser().resolve()
    running = find_gateway(state_dir)
    if running is not None:
        raise GatewayStartError(f"a gateway (pid {running.pid}) already serves {state_dir} at {running.address}")
    created = not state_dir.exists()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # an older, looser one: the gateway tightens and says so
    child_env = {**os.environ, **(env or {})}
    token = token or child_env.pop(ENV_TOKEN, None) or None
    child_env.pop(ENV_TOKEN, None)
    extra = list(extra or [])
    token_r = None
    if token:
        token_r, token_w = os.pipe()
        os.write(token_w, token.encode())  # a few bytes: fits the pipe's buffer, so this never blocks
        os.close(token_w)
        extra += ["--token-fd", str(token_r)]
    try:
        log_fd = os.open(state_dir / GATEWAY_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
        with os.fdopen(log_fd, "ab") as log:
            process = subprocess.Popen(
                gateway_command(state_dir, host, port, extra),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=new_session, close_fds=True,
                pass_fds=(*pass_fds, *([token_r] if token_r is not None else [])), env=child_env,
            )
    finally:
        if token_r is not None:
            os.close(token_r)
    return PendingGateway(process, state_dir, created=created)


def start_detached(
    state_dir: Path, host: str, port: int, *, extra: list[str] | None = None, timeout: float = 30.0,
    env: dict[str, str] | None = None, token: str | None = None,
) -> tuple[RunningGateway, subprocess.Popen[bytes]]:
    """Start a gateway in the background and wait until it listens (see `spawn_gateway` for `token`)."""
    pending = spawn_gateway(state_dir, host, port, extra=extra, env=env, token=token)
    return pending.wait(timeout), pending.process


def stop_gateway(state_dir: Path, timeout: float = 15.0) -> RunningGateway | None:
    """SIGTERM the gateway of `state_dir` and wait for it to exit (SIGKILL after `timeout`); None if none ran."""
    running = find_gateway(state_dir)
    if running is None:
        return None
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(running.pid):
            return running
        time.sleep(0.05)
    os.kill(running.pid, signal.SIGKILL)
    return running
