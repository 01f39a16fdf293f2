"""Log files of functions and gateways: read their tail, add a line of the gateway's own."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def tail_text(path: Path, lines: int, max_bytes: int = 1 << 20) -> str:
    """The last `lines` lines of a text file (reading at most `max_bytes` from its end)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", "replace")
    return "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else text


def note(log_path: Path, message: str) -> None:
    """A gateway line in the function's log, so `dcf function log` explains restarts and installs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
        log.write(f"[dcf-gateway] {message}\n")
