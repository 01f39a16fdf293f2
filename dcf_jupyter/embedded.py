"""A gateway that lives as long as this Python process (a notebook kernel): loopback, free port, temp state."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from .gateway import PendingGateway, RunningGateway, spawn_gateway
from .settings import ENV_TOKEN


class EmbeddedGateway:
    """Spawned at once, waited for on first use, stopped at exit; it also exits if this process dies."""

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="dcf-kernel-"))
        # Loopback is shared by every user of the machine: deploying (running code) needs this kernel's token.
        self.token = secrets.token_urlsafe(32)
        # The gateway holds the read end; when this process dies the pipe closes and it stops.
        life_r, self._lifeline = os.pipe()
        try:
            self._pending: PendingGateway | None = spawn_gateway(
                self._tmp / "state", "127.0.0.1", 0, extra=["--lifeline-fd", str(life_r)], pass_fds=(life_r,),
                env={ENV_TOKEN: self.token},
            )
        finally:
            os.close(life_r)
        self.running: RunningGateway | None = None
        self._lock = threading.Lock()
        atexit.register(self.stop)

    @property
    def state_dir(self) -> Path:
        """Where this gateway keeps functions and logs (removed when it stops)."""
        return self._tmp / "state"

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
                try:
                    process.wait(10)
                except Exception:  # noqa: BLE001 - it must not outlive us
                    process.kill()
                    process.wait()
            shutil.rmtree(self._tmp, ignore_errors=True)
            atexit.unregister(self.stop)
