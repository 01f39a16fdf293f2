"""Whether a process is alive, for everything that keeps pids in files (gateways, kernels, announcements)."""

from __future__ import annotations

import os


def is_zombie(pid: int) -> bool:
    """True for a process that exited and waits for its parent to reap it (Linux; False where /proc is absent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def pid_alive(pid: int) -> bool:
    """True if a process with this pid runs (ours or another user's); an exited one not yet reaped does not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not is_zombie(pid)
