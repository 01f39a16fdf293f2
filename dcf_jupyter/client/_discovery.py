"""Every gateway of this user: the shared one ($DCF_GATEWAY, else 127.0.0.1:32222) and each kernel's embedded
one, found by the announcements they write (`gateway.announce`). Announcements of dead gateways are removed."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..host.pids import pid_alive
from ..host.running import find_gateway
from ..settings import DEFAULT_ADDRESS, announce_dir, default_state_dir, named_address

SHARED_ID = "shared"


@dataclass(frozen=True)
class GatewayEntry:
    """One gateway the user can reach, and whose it is."""

    id: str  # "shared", or "kernel-<gateway pid>"
    address: str
    token: str | None  # never leaves the server: the browser sees `public()`
    label: str  # what the panel shows: "shared gateway", or the notebook of the kernel
    kind: str  # "shared" | "kernel"
    pid: int | None = None
    kernel_id: str = ""
    notebook: str = ""

    def public(self) -> dict[str, object]:
        """What may be shown in a browser: everything but the token."""
        return {"id": self.id, "address": self.address, "label": self.label, "kind": self.kind, "pid": self.pid,
                "kernel_id": self.kernel_id, "notebook": self.notebook}


def default_address() -> str:
    """Where a client goes when the user names no gateway: their own gateway of the default state dir when one
    runs (`dcf gateway start`, or the one `dcf function deploy` started, on a free port if another user holds
    127.0.0.1:32222), else 127.0.0.1:32222."""
    running = find_gateway(default_state_dir())
    return running.address if running is not None and running.address else DEFAULT_ADDRESS


def shared_gateway() -> GatewayEntry:
    """The gateway `dcf` and clients use by default (its token: $DCF_TOKEN, else the owner's, as any client)."""
    return GatewayEntry(id=SHARED_ID, address=named_address() or default_address(), token=None,
                        label="shared gateway", kind="shared")


def embedded_gateways(folder: Path | None = None) -> list[GatewayEntry]:
    """The kernels' gateways that announced themselves and still run; stale announcements are removed."""
    folder = folder or announce_dir()
    found = []
    for path in sorted(folder.glob("gateway-*.json")):
        try:
            if path.stat().st_uid != os.getuid():
                continue  # only this user's (the folder is theirs alone anyway)
            record = json.loads(path.read_text())
            pid = int(record["pid"])
            address = str(record["address"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written or foreign: not a gateway we can use
        if not pid_alive(pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        notebook = str(record.get("notebook") or "")
        label = notebook or f"kernel {str(record.get('kernel_id') or '')[:8] or pid}"
        found.append(GatewayEntry(id=f"kernel-{pid}", address=address, token=record.get("token") or None,
                                  label=label, kind="kernel", pid=pid, kernel_id=str(record.get("kernel_id") or ""),
                                  notebook=notebook))
    return found


def all_gateways(folder: Path | None = None) -> list[GatewayEntry]:
    """The shared gateway first, then each kernel's."""
    return [shared_gateway(), *embedded_gateways(folder)]
