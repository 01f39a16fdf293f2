"""An embedded gateway's announcement: a file in the user's runtime dir that lets the JupyterLab panel find it.

Like a kernel connection file it holds a secret (the gateway's token), so the folder is the owner's alone
(0700) and the file is written 0600. The gateway writes it once it listens and removes it when it stops;
a gateway that was killed leaves a file naming a dead pid, which readers ignore and remove
(`client.discovery`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..settings import ENV_ANNOUNCE, announce_dir

__all__ = ["ENV_ANNOUNCE", "announce", "announcement_path", "withdraw"]


def announcement_path(pid: int, folder: Path | None = None) -> Path:
    return (folder or announce_dir()) / f"gateway-{pid}.json"


def announce(address: str, token: str | None, state_dir: Path, about: dict[str, Any]) -> Path:
    """Write this gateway's announcement (atomically, owner-only); returns its path."""
    folder = announce_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)
    path = announcement_path(os.getpid(), folder)
    record = {**about, "pid": os.getpid(), "address": address, "token": token or "", "state_dir": str(state_dir),
              "started": time.time()}
    staging = path.with_suffix(".tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    staging.replace(path)
    return path


def withdraw(path: Path) -> None:
    """Remove the announcement (the gateway is stopping)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
