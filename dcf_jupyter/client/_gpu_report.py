"""The GPUs a gateway hands out, as lines for `dcf gateway status` and `%dcf status` (from its Info)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _size(value: Any) -> str:
    number = float(value or 0)
    return f"{number / 2**30:.1f} GiB" if number >= 2**30 else f"{number / 2**20:.0f} MiB"


def gpu_lines(info: Mapping[str, Any]) -> list[str]:
    """Each GPU with who holds it (function, replica, share, whose gateway; another user's grant as "another user"
    and its share) and the memory each uses."""
    devices: Sequence[Mapping[str, Any]] = info.get("gpus") or []
    if not devices:
        return ["GPUs: none (a local replica that asks for one runs on the CPU; `dcf gateway start --gpus` "
                "declares some)"]
    lines = [f"GPUs ({info.get('gpu_source', '?')}):"]
    for device in devices:
        total = f", {_size(device.get('memory_used'))} of {_size(device['memory_total'])} used" \
            if device.get("memory_total") else ""
        held = float(device.get("share_held") or 0)
        state = "free" if not held else "held" if held >= 0.9999 else f"{held:g} held"
        lines.append(f"  GPU {device['index']} {device.get('name', '')}: {state}{total}")
        for holder in device.get("holders") or []:
            share = f" ({holder['share']:g})" if float(holder.get("share", 1)) < 1 else ""
            whose = f" [{holder['gateway']}]" if holder.get("gateway") else ""
            memory = f": {_size(holder['memory_used'])}" if holder.get("memory_used") else ""
            who = "another user" if holder.get("another_user") else f"{holder['function']} replica {holder['replica']}"
            lines.append(f"    {who}{share}{whose}{memory}")
        for other in device.get("others") or []:
            who = f", {other['user']}" if other.get("user") else ""
            lines.append(f"    another process (pid {other['pid']}{who}): {_size(other.get('memory_used'))}")
    return lines
