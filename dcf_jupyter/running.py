"""Gateways running on this machine, as their state dirs record them (`gateway.json`, written once a gateway
listens): found by the CLI, kernels and the JupyterLab panel without loading any gateway code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .pids import pid_alive

GATEWAY_FILE = "gateway.json"


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


def find_gateway(state_dir: Path) -> RunningGateway | None:
    """The gateway serving `state_dir`, if one is running."""
    info = read_gateway_file(state_dir)
    if not info:
        return None
    pid = int(str(info.get("pid") or 0))
    if pid <= 0 or not pid_alive(pid):
        return None
    return RunningGateway(pid=pid, address=str(info.get("address", "")), state_dir=state_dir,
                          http_address=str(info.get("http_address") or ""))
