"""A folder for what a notebook makes on the way (generated clips, sounds): one per kernel, removed when the kernel
exits, so runs of a tutorial do not pile folders up in /tmp."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

_folders: dict[str, tempfile.TemporaryDirectory[str]] = {}
_lock = threading.Lock()


def scratch_dir(name: str = "media") -> Path:
    """This kernel's scratch folder `name` (made on first use, the same folder afterwards), removed with everything
    in it when the Python process exits normally (a kernel shut down or restarted from Jupyter)."""
    with _lock:
        folder = _folders.get(name)
        if folder is None:
            # TemporaryDirectory's finalizer runs at interpreter exit: the kernel's own cleanup.
            folder = _folders[name] = tempfile.TemporaryDirectory(prefix=f"dcf-{name}-")
        return Path(folder.name)
