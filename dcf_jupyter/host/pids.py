"""Whether a process is alive, for everything that keeps pids in files (gateways, kernels, announcements)."""

from __future__ import annotations

import contextlib
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


def process_started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat's 22nd field), to tell it from a later
    process given the same pid; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def session_members(session: int) -> list[int]:
    """Pids of the live processes in session `session` (Linux /proc; [] elsewhere): everything a process started
    with `start_new_session` left running, whatever process groups they made."""
    from pathlib import Path

    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # after the name: state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


def kill_session(session: int, *, but: int | None = None) -> list[int]:
    """SIGKILL every live process of `session` (`but` one); returns their pids."""
    import signal

    killed = [pid for pid in session_members(session) if pid != but]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return killed
