"""A gateway that lives as long as this Python process (a notebook kernel): loopback, free port, temp state."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ..host.pids import pid_alive
from ..host.running import LOCK_FILE, remove_left_socket_dir
from ..launch import PendingGateway, RunningGateway, spawn_gateway
from ..settings import ENV_ANNOUNCE

STATE_PREFIX = "dcf-kernel-"
OWNER_FILE = "kernel.pid"  # the pid of the process (kernel) the gateway belongs to
STALE_AFTER_S = 600.0  # a folder without OWNER_FILE (older versions) counts as stale after this long


def _gateway_running(state_dir: Path) -> bool:
    """Whether a gateway holds the state dir's lock (it holds it for as long as it runs)."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False  # no lock file: no gateway ever ran there
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def remove_stale_state_dirs(tmp: Path | None = None) -> list[Path]:
    """Remove the temp state dirs of embedded gateways whose kernel and gateway are both gone (both were
    SIGKILLed, so neither cleaned up); returns what was removed."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(STATE_PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            owner = folder / OWNER_FILE
            if owner.exists():
                stale = not pid_alive(int(owner.read_text().strip() or 0))
            else:  # an older layout kept the state in ./state and named no owner
                stale = time.time() - folder.stat().st_mtime > STALE_AFTER_S
            if stale and not _gateway_running(folder) and not _gateway_running(folder / "state"):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except (OSError, ValueError):
            continue
    return removed


def _announce_env() -> dict[str, str]:
    """In a Jupyter kernel: $DCF_ANNOUNCE for the gateway, so the JupyterLab panel lists it under this kernel's
    notebook (Jupyter Server gives kernels $JPY_SESSION_NAME, the notebook's path). Elsewhere nothing."""
    try:
        from ipykernel.connect import get_connection_file

        connection = Path(get_connection_file())
    except Exception:  # noqa: BLE001 - not in a kernel (a script, a test): nothing to announce
        return {}
    kernel_id = connection.stem.removeprefix("kernel-")
    about = {"kernel_pid": os.getpid(), "kernel_id": kernel_id, "notebook": os.environ.get("JPY_SESSION_NAME", "")}
    return {ENV_ANNOUNCE: json.dumps(about)}


class EmbeddedGateway:
    """Spawned at once, waited for on first use, stopped at exit; it also exits if this process dies.

    Its state dir is a temp dir that always goes: this process removes it when it stops the gateway, or when
    the gateway dies on its own (a thread reaps it, so it never lingers as a zombie); the gateway removes it when
    it stops because this process died; and should both die at once, the next embedded gateway on the machine
    removes it. Its token is the owner's, as for any gateway of the user's (credentials.py).
    """

    def __init__(self) -> None:
        remove_stale_state_dirs()
        self._tmp = Path(tempfile.mkdtemp(prefix=STATE_PREFIX))
        (self._tmp / OWNER_FILE).write_text(str(os.getpid()))
        # The gateway holds the read end; when this process dies the pipe closes and it stops.
        life_r, self._lifeline = os.pipe()
        try:
            self._pending: PendingGateway | None = spawn_gateway(
                self._tmp, "127.0.0.1", 0, extra=["--lifeline-fd", str(life_r), "--ephemeral"], pass_fds=(life_r,),
                env=_announce_env(),
            )
        finally:
            os.close(life_r)
        self.running: RunningGateway | None = None
        self._lock = threading.Lock()
        self.exited = threading.Event()
        threading.Thread(target=self._reap, args=(self._pending.process,), name="dcf-embedded-gateway-reaper",
                         daemon=True).start()
        atexit.register(self.stop)

    @property
    def state_dir(self) -> Path:
        """Where this gateway keeps functions and logs (removed when it stops)."""
        return self._tmp

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """Wait for the gateway's exit, whoever caused it, and remove what a killed one left."""
        process.wait()
        self.exited.set()
        remove_left_socket_dir(self._tmp)  # a SIGKILLed gateway could not remove its worker sockets
        shutil.rmtree(self._tmp, ignore_errors=True)

    def wait(self, timeout: float = 30.0) -> str:
        """The gateway's address once it listens."""
        with self._lock:
            if self.running is None:
                if self._pending is None:
                    raise RuntimeError("the embedded gateway was stopped")
                self.running = self._pending.wait(timeout)
            return self.running.address

    def stop(self) -> None:
        """Stop the gateway (its functions stop with it) and remove its state."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return
            with contextlib.suppress(OSError):
                os.close(self._lifeline)
            process = pending.process
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                if not self.exited.wait(10):
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    self.exited.wait(10)
            self.exited.wait(10)  # the reaper removes the state dir
            shutil.rmtree(self._tmp, ignore_errors=True)
            atexit.unregister(self.stop)
