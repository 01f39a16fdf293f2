"""Gateways running on this machine: what each state dir records (`gateway.json`, written once its gateway
listens), and every gateway of this user, each of which leaves a record in the user's owner-only config dir
(`run/gateway-PID.json`). Read by the CLI, kernels and the JupyterLab panel without loading any gateway code.

The records are how the owner's tools reach their own gateways over the gateway's Unix socket, whatever TCP address
the user names (`own_socket`): nobody else can stand on that path, as the folder it lives in is the owner's alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .credentials import config_dir, private_dir, write_private
from .pids import pid_alive
from .ports import reaches, split_address

# What a gateway keeps in its state dir beside its functions' (and its worker sockets' folder in the temp dir).
GATEWAY_FILE = "gateway.json"  # pid, address, socket... once it listens
GATEWAY_LOG = "gateway.log"
LOCK_FILE = "gateway.lock"  # held while it runs: one gateway per state dir
SOCKET_DIR_FILE = "sockets.path"  # where its worker sockets are
SOCKET_DIR_PREFIX = "dcf-"
RECORDS_DIR = "run"  # in the user's config dir


def read_gateway_file(state_dir: Path) -> dict[str, object] | None:
    """What a running gateway wrote about itself (pid, address...), or None."""
    try:
        return json.loads((state_dir / GATEWAY_FILE).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class RunningGateway:
    """A gateway process: its pid, address and state dir."""

    pid: int
    address: str
    state_dir: Path
    http_address: str = ""  # its HTTP face ('' for none)
    socket: str = ""  # its Unix socket, for its owner's tools ('' where it has none)

    @classmethod
    def from_record(cls, info: dict[str, object], state_dir: Path | None = None) -> RunningGateway:
        """From what a gateway wrote about itself."""
        return cls(pid=int(str(info.get("pid") or 0)), address=str(info.get("address") or ""),
                   state_dir=state_dir or Path(str(info.get("state_dir") or ".")),
                   http_address=str(info.get("http_address") or ""), socket=str(info.get("socket") or ""))


def find_gateway(state_dir: Path) -> RunningGateway | None:
    """The gateway serving `state_dir`, if one is running."""
    info = read_gateway_file(state_dir)
    if not info:
        return None
    running = RunningGateway.from_record(info, state_dir)
    return running if running.pid > 0 and pid_alive(running.pid) else None


def remove_left_socket_dir(state_dir: Path) -> None:
    """Remove the worker-socket temp dir the gateway of `state_dir` recorded and did not remove itself (it was
    SIGKILLed); call it only when that gateway is gone. Only a dir of ours in the temp dir is touched."""
    record = state_dir / SOCKET_DIR_FILE
    with contextlib.suppress(OSError):
        left = Path(record.read_text().strip())
        if left.parent == Path(tempfile.gettempdir()) and left.name.startswith(SOCKET_DIR_PREFIX):
            shutil.rmtree(left, ignore_errors=True)
        record.unlink()


def records_dir() -> Path:
    """Where this user's gateways leave their records."""
    return config_dir() / RECORDS_DIR


def record_gateway(info: dict[str, object]) -> Path:
    """Leave this gateway's record (owner-only); returns its path, for `withdraw_record`."""
    folder = records_dir()
    private_dir(folder)
    path = folder / f"gateway-{os.getpid()}.json"
    write_private(path, json.dumps(info))
    return path


def withdraw_record(path: Path) -> None:
    """Remove a gateway's record (it is stopping)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def own_gateways() -> list[RunningGateway]:
    """This user's running gateways, as their records say; the records of gateways that are gone are removed."""
    folder = records_dir()
    try:
        paths = sorted(folder.glob("gateway-*.json")) if folder.is_dir() else []
    except OSError:  # a config dir this user cannot read (not theirs): no gateway of theirs is recorded there
        return []
    found = []
    for path in paths:
        try:
            if path.stat().st_uid != os.geteuid():
                continue
            running = RunningGateway.from_record(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # half-written: its gateway is still starting, or it is not a record
        if running.pid <= 0 or not pid_alive(running.pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        found.append(running)
    return found


def is_own_socket(path: str) -> bool:
    """True for a Unix socket of this user's in a folder only this user may enter (so nobody else could have put
    it there)."""
    try:
        info, folder = os.lstat(path), os.lstat(os.path.dirname(path) or ".")
    except OSError:
        return False
    me = os.geteuid()
    return (stat.S_ISSOCK(info.st_mode) and info.st_uid == me and folder.st_uid == me
            and stat.S_ISDIR(folder.st_mode) and not folder.st_mode & 0o077)


def own_socket(address: str) -> str | None:
    """The Unix socket of this user's gateway that listens at TCP `address` (any spelling of it: 0.0.0.0,
    localhost, IPv4-mapped...), or None when no gateway of theirs does."""
    where = split_address(address)
    if where is None:
        return None
    host, port = where
    for running in own_gateways():
        listening = split_address(running.address)
        if (listening is not None and listening[1] == port and running.socket and reaches(listening[0], host)
                and is_own_socket(running.socket)):
            return running.socket
    return None
