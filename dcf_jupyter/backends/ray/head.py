"""A local Ray of the gateway's own: a head node in a child process (`ray start --head --block`), its pid kept.

Started in the gateway's own process, `ray.init()` times out now and then on a busy 2-core machine (the raylet
must register within a fixed 30 s) and leaves that process unable to try again. A child can simply be started
again; the gateway then joins it like any cluster, with a token of its own (Ray's token authentication), and
stops it by its pid when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ...errors import GatewayStartError
from ...host.pids import kill_session, session_members
from ...host.ports import free_port

log = logging.getLogger("dcf.gateway")

STARTED = "Ray runtime started"
RAY_TEMP = "r"  # Ray's temp dir, inside the head's private directory
START_TIMEOUT_S = 120.0
ATTEMPTS = 3
# `ray start --block` drains its node for up to 30 s on SIGTERM. Nothing but this gateway uses this Ray, and the
# gateway has released its replicas by now: a few seconds of grace, then every process of the head's session
# goes, so that `dcf gateway stop` returns with nothing of it left (and the head never outlives its gateway).
STOP_GRACE_S = 3.0


class LocalRayHead:
    """One Ray head node on this machine, owned by this gateway."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, token: str, output: Path, private: Path) -> None:
        self.process = process
        self.port = port
        self.token = token
        self.output = output
        self.private = private  # holds Ray's temp dir (its logs, sockets, spilled objects): only this user's

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def auth_env(self) -> dict[str, str]:
        """What a driver needs to join this head."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @classmethod
    def start(cls, *, attempts: int = ATTEMPTS, timeout: float = START_TIMEOUT_S) -> LocalRayHead:
        """Start a head and wait until it runs; GatewayStartError with Ray's last words after `attempts` tries."""
        last = ""
        for attempt in range(1, attempts + 1):
            head = cls._launch()
            why = head._wait_started(timeout)
            if not why:
                head.output.unlink(missing_ok=True)  # its words are needed only when it does not start
                log.info("local Ray head at %s (pid %d)", head.address, head.process.pid)
                return head
            head.stop()
            last = why
            log.warning("local Ray did not start (attempt %d of %d): %s", attempt, attempts, why)
        raise GatewayStartError(f"a local Ray did not start in {attempts} attempts: {last}")

    @classmethod
    def _launch(cls) -> LocalRayHead:
        port, token = free_port(), secrets.token_hex(16)
        fd, name = tempfile.mkstemp(prefix="dcf-ray-head-", suffix=".log")
        private = _private_dir()
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
               # The GCS waits longer for its port on a busy machine than Ray's default 30 s.
               "RAY_gcs_server_port_wait_time_s": "120", "RAY_USAGE_STATS_ENABLED": "0"}
        command = [sys.executable, "-m", __name__, sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
                   f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                   "--disable-usage-stats", f"--temp-dir={private / RAY_TEMP}", "--block"]
        with os.fdopen(fd, "wb") as output:
            # Its own session: the head's processes are stopped together, never anyone else's. Its stdin is a
            # pipe only this process holds: when this process ends, however it ends, the head stops (`_supervise`).
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
        return cls(process, port, token, Path(name), private)

    def _wait_started(self, timeout: float) -> str:
        """'' once the head runs; else why not (its last lines)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if STARTED in self._output():
                return ""
            if self.process.poll() is not None:
                return self._last_words() or f"`ray start` exited with {self.process.returncode}"
            time.sleep(0.2)
        return f"not running after {timeout:g} s" + (f": {self._last_words()}" if self._last_words() else "")

    def _output(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except OSError:
            return ""

    def _last_words(self) -> str:
        lines = [line.strip() for line in self._output().splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line or "timed out" in line]
        return (errors or lines or [""])[-1][:300]

    def stop(self) -> None:
        """Stop the head and every process it started (its session, workers in process groups of their own
        included), by pid; returns once none is left."""
        if self.process.poll() is None:
            if self.process.stdin is not None:
                self.process.stdin.close()  # the supervisor stops `ray start`, then whatever of its session is left
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_GRACE_S + 2)
        kill_session(self.process.pid)  # anything of its session still there
        self.process.wait()
        _gone(self.process.pid)
        self.output.unlink(missing_ok=True)
        shutil.rmtree(self.private, ignore_errors=True)


def _private_dir() -> Path:
    """A new directory only this user may enter, for Ray's temp dir. Ray makes its temp dir and everything in it
    open to all (0777: /tmp/ray is shared by default), so a stranger could read the replicas' logs and output or
    plant files in a session; inside this one (0700) they cannot reach any of it. Short, because Ray's Unix socket
    paths go under it (at most 107 bytes)."""
    parent = tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix="dcf-ray-", dir=parent if len(parent) <= 24 else "/tmp"))


def _supervise(command: list[str]) -> int:
    """Run `command` (`ray start --block`) until it exits, or until stdin ends (the gateway closed it, or died):
    then stop it."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def stop_at_end_of_input() -> None:
        sys.stdin.buffer.read()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_S)
        kill_session(os.getsid(0), but=os.getpid())  # the GCS, raylet, agents and workers `ray start` left
        _gone(os.getsid(0), but=os.getpid())

    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = process.wait()
    # `ray start` ended by itself: its node's processes go with it.
    kill_session(os.getsid(0), but=os.getpid())
    _gone(os.getsid(0), but=os.getpid())
    for argument in command:  # Ray's temp dir, and the private directory around it: nobody uses them now
        if argument.startswith("--temp-dir="):
            shutil.rmtree(Path(argument.split("=", 1)[1]).parent, ignore_errors=True)
    return code


def _gone(session: int, *, but: int | None = None, within: float = 5.0) -> None:
    """Wait (briefly) until every process of `session` (`but` one) has exited, killed ones included."""
    deadline = time.monotonic() + within
    while [pid for pid in session_members(session) if pid != but] and time.monotonic() < deadline:
        kill_session(session, but=but)
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(_supervise(sys.argv[1:]))
