"""Where gateways book the GPUs they hand out, so that no two of them grant one device twice.

One folder for every user of the machine (`/run/dcf-jupyter/gpu-leases`, or `$DCF_GPU_LEASES`), made by root
once, sticky and open to all as /tmp is: each gateway keeps its grants in a file of its own there
(`gateway-UID-PID.json`), readable by every user and writable by its owner only; the sticky bit keeps anyone else
from removing or replacing it, and a file says whose it is by its owner, not by what it says. Gateways book under
a lock on the folder itself (which nobody can remove), waiting at most `LOCK_WAIT_S` for it. A gateway that is
gone (its pid dead, or reused by a process started later) counts for nothing; its owner's next gateway removes
its file.

Where that folder is missing and cannot be made (that takes root), or is not safe to share (not root's, not
sticky), a gateway books in its user's own folder instead, as before, and says so when it starts: its grants are
then kept from the user's other gateways only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...host.credentials import private_dir, write_private
from ...host.pids import pid_alive, process_started
from ...host.ports import describe_user

SHARED_FOLDER = Path("/run/dcf-jupyter/gpu-leases")
ENV_GPU_LEASES = "DCF_GPU_LEASES"
SHARED_MODE = 0o1777  # sticky, open to all: as /tmp
LOCK_WAIT_S = 10.0


class LeaseLockTimeout(Exception):
    """Another gateway held the booking lock for longer than LOCK_WAIT_S."""


@dataclass(frozen=True)
class Lease:
    """Another gateway's grants as its lease file says: `grants` are dicts (Grant's fields), `uid` its owner."""

    uid: int
    pid: int
    label: str
    grants: list[dict[str, Any]]

    @property
    def mine(self) -> bool:
        """Booked by a gateway of this user."""
        return self.uid == os.geteuid()

    @property
    def owner(self) -> str:
        """Its owner's name ('uid 1001' when it has none)."""
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid {self.uid}"


def shared_problem(folder: Path) -> str:
    """Why `folder` cannot be the machine's lease folder ('' when it can), making it when this process may."""
    try:
        info = folder.stat()
    except FileNotFoundError:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            folder.mkdir(mode=0o700)
            os.chmod(folder, SHARED_MODE)  # after mkdir: the umask would have taken the bits off
        except OSError as exc:
            return (f"{folder} does not exist, and making it takes root ({exc.strerror}): `sudo install -d -m "
                    f"1777 {folder}` once, or point ${ENV_GPU_LEASES} at such a folder")
        info = folder.stat()
    except OSError as exc:
        return f"cannot read {folder} ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is not a folder"
    if info.st_uid != 0:
        return f"{folder} belongs to {describe_user(info.st_uid)}, not root, who could remove others' leases"
    if stat.S_IMODE(info.st_mode) != SHARED_MODE:
        return (f"{folder} has mode {stat.S_IMODE(info.st_mode):04o}, not {SHARED_MODE:04o} (sticky, open to all): "
                "`sudo chmod 1777` it")
    return ""


class LeaseBook:
    """The lease files this gateway books its grants in: the machine's shared folder, or its user's own."""

    def __init__(self, folder: Path | None, shared: bool = False) -> None:
        self.folder = folder
        self.shared = shared
        self._started = process_started(os.getpid())

    @classmethod
    def for_this_machine(cls, own_folder: Path, shared_folder: Path | None = None) -> tuple[LeaseBook, str]:
        """The machine's book when its folder is usable, else the user's own; and why not, when it is not."""
        folder = shared_folder or Path(os.environ.get(ENV_GPU_LEASES) or SHARED_FOLDER)
        problem = shared_problem(folder)
        if problem:
            return cls(own_folder), problem
        return cls(folder, shared=True), ""

    @property
    def _path(self) -> Path:
        assert self.folder is not None
        name = f"gateway-{os.geteuid()}-{os.getpid()}.json" if self.shared else f"gateway-{os.getpid()}.json"
        return self.folder / name

    @contextlib.contextmanager
    def locked(self) -> Iterator[list[Lease]]:
        """The other live gateways' leases, read under the folder's lock (held until the block ends): blocking,
        at most LOCK_WAIT_S for the lock (LeaseLockTimeout past it)."""
        if self.folder is None:
            yield []
            return
        if not self.shared:
            private_dir(self.folder)
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)  # the folder: nobody can remove it or swap it
        try:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LeaseLockTimeout(f"another gateway has held the GPU booking lock on {self.folder} for "
                                               f"over {LOCK_WAIT_S:g}s") from None
                    time.sleep(0.01)
            yield list(self._others())
        finally:
            os.close(fd)  # closing lets the lock go

    def _others(self) -> Iterator[Lease]:
        assert self.folder is not None
        for path in self.folder.glob("gateway-*.json"):
            try:
                with open(path, "rb") as handle:
                    owner = os.fstat(handle.fileno()).st_uid  # whose it is: the file's owner, not what it says
                    data = json.loads(handle.read(1 << 20))
                pid = int(data["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if pid == os.getpid() and owner == os.geteuid():
                continue
            started = data.get("started")
            gone = not pid_alive(pid) or (started is not None and process_started(pid) not in (None, started))
            if gone:
                if owner == os.geteuid():
                    with contextlib.suppress(OSError):
                        path.unlink()
                continue
            grants = [g for g in data.get("grants", []) if isinstance(g, dict)]
            yield Lease(owner, pid, str(data.get("label", "")), grants)

    def save(self, label: str, grants: list[dict[str, Any]]) -> None:
        """Write this gateway's grants (none: remove its file)."""
        if self.folder is None:
            return
        path = self._path
        if not grants:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        record = json.dumps({"pid": os.getpid(), "uid": os.geteuid(), "started": self._started, "label": label,
                             "grants": grants})
        if not self.shared:
            private_dir(self.folder)
            write_private(path, record)
            return
        # Readable by every user (their gateways must see what this one holds), written by its owner only.
        staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o644)  # whatever the umask (a gateway runs with 077)
            out.write(record)
        staging.replace(path)
