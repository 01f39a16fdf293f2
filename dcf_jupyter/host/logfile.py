"""Log files of functions and gateways, kept under a size: write them, pipe a process's output into them, read
their tail across rotations.

A log grows to `max_bytes`, then becomes NAME.1 (NAME.1 becomes NAME.2, and so on) and a new one starts; at most
`backups` old ones are kept, so a log takes at most (backups + 1) x max_bytes however much its function prints.
Each file has one writer in the gateway process (`log_for`): the replicas' output reaches it through a pipe each
(`RotatingLog.pipe`), copied by a thread in whole lines, so two replicas never interleave mid-line and a rotation
never leaves a process writing into a file that was renamed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3
LINE_BUFFER = 64 * 1024  # a line longer than this is written in parts
_settings = {"max_bytes": DEFAULT_MAX_BYTES, "backups": DEFAULT_BACKUPS}


def configure(max_bytes: int, backups: int) -> None:
    """Set the size and the number of old files of every log this process writes from now on."""
    _settings.update(max_bytes=max_bytes, backups=backups)


def size_limits() -> tuple[int, int]:
    """(max_bytes, backups) of the logs this process writes."""
    return _settings["max_bytes"], _settings["backups"]


def rotations(path: Path, backups: int | None = None) -> list[Path]:
    """`path` and its old files, newest first: NAME, NAME.1, NAME.2 ..."""
    count = _settings["backups"] if backups is None else backups
    return [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, count + 1))]


class RotatingLog:
    """One log file under its size limit; thread-safe. Get it with `log_for(path)`: one per file per process."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max(1024, max_bytes)
        self.backups = max(0, backups)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        files = rotations(self.path, self.backups)
        with contextlib.suppress(OSError):
            files[-1].unlink()  # the oldest kept (the file itself when none are kept)
        for older, newer in zip(reversed(files[1:]), reversed(files[:-1]), strict=True):
            with contextlib.suppress(OSError):
                newer.replace(older)

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first when it would not fit (data larger than a whole file is split)."""
        with self._lock:
            view = memoryview(data)
            while view:
                fd = self._open()
                if self._size and self._size + len(view) > self.max_bytes:
                    self._rotate()
                    continue
                piece = view[: self.max_bytes - self._size]
                try:
                    written = os.write(fd, piece)
                except OSError:
                    return  # a full disk: the log loses lines, the function goes on
                self._size += written
                view = view[written:]

    def note(self, message: str) -> None:
        """A gateway line in the log, so `dcf function logs` explains restarts and installs."""
        self.write(f"[dcf-gateway] {message}\n".encode("utf-8", "replace"))

    @contextlib.contextmanager
    def pipe(self) -> Iterator[int]:
        """A descriptor to give a process as its stdout and stderr: what it writes comes into this log, in whole
        lines, copied by a thread until every process holding it has closed it. Closed here when the block ends
        (the process keeps its own copy)."""
        read_end, write_end = os.pipe()
        threading.Thread(target=self._copy_from, args=(read_end,), name=f"dcf-log-{self.path.stem}",
                         daemon=True).start()
        try:
            yield write_end
        finally:
            os.close(write_end)

    def _copy_from(self, fd: int) -> None:
        partial = b""
        try:
            while chunk := os.read(fd, LINE_BUFFER):
                data = partial + chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0 and len(data) < LINE_BUFFER:
                    partial = data
                    continue
                cut = cut or len(data)
                self.write(data[:cut])
                partial = data[cut:]
        except OSError:
            pass
        finally:
            if partial:
                self.write(partial + b"\n")
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


_logs: dict[Path, RotatingLog] = {}
_logs_lock = threading.Lock()


def log_for(path: Path) -> RotatingLog:
    """The one writer of the log at `path` in this process."""
    with _logs_lock:
        log = _logs.get(path)
        if log is None:
            log = _logs[path] = RotatingLog(path, _settings["max_bytes"], _settings["backups"])
        return log


def capture_output(path: Path) -> Callable[[], None]:
    """From now on, this process's stdout and stderr (descriptors 1 and 2, so also what C libraries and child
    processes print) go into the log at `path`, rotated; returns what to call before exiting, which waits (a
    moment at most) until the last lines are in."""
    log = log_for(path)
    read_end, write_end = os.pipe()
    copying = threading.Thread(target=log._copy_from, args=(read_end,), name="dcf-log-self", daemon=True)
    copying.start()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def finish() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        copying.join(2.0)  # a child that inherited the pipe may hold it open: not waited for longer

    return finish


def remove(path: Path) -> None:
    """Delete a log and its old files (its function was deleted)."""
    with _logs_lock:
        log = _logs.pop(path, None)
    if log is not None:
        log.close()
    for file in rotations(path, max(_settings["backups"], 1)):
        with contextlib.suppress(FileNotFoundError):
            file.unlink()


def note(log_path: Path, message: str) -> None:
    """A gateway line in the function's log, so `dcf function log` explains restarts and installs."""
    log_for(log_path).note(message)


def tail_text(path: Path, lines: int, max_bytes: int = 1 << 20) -> str:
    """The last `lines` lines of a log (all of it, within `max_bytes`, for 0), read across its rotations: when
    the current file holds fewer, the older ones fill in. At most `max_bytes` are read."""
    chunks: list[bytes] = []
    found = 0
    budget = max_bytes
    for file in rotations(path):
        try:
            with open(file, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - budget))
                data = fh.read()
        except FileNotFoundError:
            if file == path:
                continue
            break
        chunks.insert(0, data)
        budget -= len(data)
        found += data.count(b"\n")
        if budget <= 0 or (lines > 0 and found >= lines):
            break
    text = b"".join(chunks).decode("utf-8", "replace")
    return "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else text
